"""Word interactions (shapiq over the word game) and faithfulness checks of word attributions."""
from __future__ import annotations

import zlib
from math import factorial

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
import pytest  # noqa: E402
import shap  # noqa: E402
import shapiq  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from shapiq.interaction_values import aggregate_interaction_values  # noqa: E402

import shap_adapters.text as shap_text  # noqa: E402
from captum_diffusion import metrics  # noqa: E402
from captum_diffusion.generation import TextToImage  # noqa: E402
from captum_diffusion.metrics import (FaithfulnessScore, aopc, comprehensiveness, deletion_curve,  # noqa: E402
                                      faithfulness_scores, insertion_curve, random_order_curves, sufficiency)
from captum_diffusion.scoring import PromptScore  # noqa: E402
from captum_diffusion.words import (WordAttribution, WordGame, explain_interactions, split_words,  # noqa: E402
                                    strongest_pairs, word_labels)
from captum_diffusion.words.interactions import minimum_budget  # noqa: E402

AND_PROMPT = "a red circle today"  # d = 4; red = 1, circle = 2


def and_game(prompts):
    """0.3 + 1 when both "red" and "circle" are present: the unanimity game of T = {red, circle} plus a constant."""
    return np.array([0.3 + float({"red", "circle"} <= set(p.split())) for p in prompts])


def pairs_of(iv, d):
    return {(i, j): iv[(i, j)] for i in range(d) for j in range(i + 1, d)}


# ------------------------------------------------------------------------------------------ closed forms

# For the unanimity game u_T, T = {i, j} (Moebius coefficient 1 on T, 0 elsewhere):
#   SII(S) = sum_{R >= S} m(R) / (|R| - |S| + 1): the pair gets 1, each of i and j gets 1/2;
#   k-SII (order 2) = the Moebius transform truncated at order 2 (exact for a game of degree 2): pair 1, words 0;
#   STII (order 2): top order sum_{R >= S} m(R) / C(|R|, 2) = 1, lower orders = Moebius = 0;
#   FSII (order 2): the best degree-2 fit, the game itself: pair 1, words 0;
#   the Shapley value: 1/2 for i and j.
CLOSED_FORM_WORDS = {"k-SII": (0, 0, 0, 0), "STII": (0, 0, 0, 0), "FSII": (0, 0, 0, 0), "SII": (0, 0.5, 0.5, 0)}


@pytest.mark.parametrize("index", ["k-SII", "STII", "FSII", "SII"])
def test_pure_and_of_two_words_has_the_closed_form_interaction(index):
    iv = explain_interactions(AND_PROMPT, and_game, index)
    assert isinstance(iv, shapiq.InteractionValues) and not iv.estimated
    assert (iv.index, iv.n_players, iv.max_order) == (index, 4, 2)
    assert len(iv.interaction_lookup) == 1 + 4 + 6  # every interaction listed, zeros too (plots draw listed words)
    assert iv.baseline_value == pytest.approx(0.3)  # f(""): the empty prompt is the empty coalition
    assert iv[(1, 2)] == pytest.approx(1.0, abs=1e-9)  # red x circle
    others = {pair: value for pair, value in pairs_of(iv, 4).items() if pair != (1, 2)}
    assert np.allclose(list(others.values()), 0.0, atol=1e-9), others
    assert np.allclose([iv[(i,)] for i in range(4)], CLOSED_FORM_WORDS[index], atol=1e-9)
    if index != "SII":  # efficient indices: orders 1..2 sum to v(all) - v(none) = 1
        assert sum(v for key, v in iv.dict_values.items() if key) == pytest.approx(1.0, abs=1e-9)
    sv = explain_interactions(AND_PROMPT, and_game, "SV")
    assert (sv.index, sv.max_order) == ("SV", 1)
    assert np.allclose([sv[(i,)] for i in range(4)], [0, 0.5, 0.5, 0], atol=1e-9)


def test_indices_are_linear_in_the_payoff_so_seed_averages_are_means_of_values():
    """A seed-averaged f (mean of per-seed payoffs) has the mean of the per-seed values, for every index."""
    rng = np.random.default_rng(0)
    prompt = "a big red circle on grass"
    weights = [rng.normal(size=(6, 6)) for _ in range(3)]

    def payoff(w):
        def f(prompts):
            masks = np.array([[word in p.split() for word in prompt.split()] for p in prompts], dtype=float)
            return np.einsum("ni,ij,nj->n", masks, w, masks) + masks @ np.diag(w)
        return f

    def mean_f(prompts):
        return np.mean([payoff(w)(prompts) for w in weights], axis=0)

    for index in ("k-SII", "STII", "FSII", "SII", "SV"):
        per_seed = [explain_interactions(prompt, payoff(w), index) for w in weights]
        averaged = explain_interactions(prompt, mean_f, index)
        expected = aggregate_interaction_values(per_seed, "mean")
        keys = averaged.interaction_lookup
        assert np.allclose([averaged[key] for key in keys], [expected[key] for key in keys], atol=1e-9), index


def test_order_one_equals_exact_shap_on_the_same_game():
    def f(prompts):  # a non-additive game: "red circle" is worth more than its words, "a" is nearly null
        out = []
        for p in prompts:
            words = set(p.split())
            out.append(0.1 + 0.3 * ("red" in words) + 0.2 * ("circle" in words) + 0.4 * ({"red", "circle"} <= words)
                       - 0.25 * ({"blue", "circle"} <= words) + 0.05 * ("blue" in words) + 0.01 * ("a" in words))
        return np.array(out)

    prompt = "a red circle blue square"
    exact = shap_text.explain_prompt(prompt, f, algorithm="exact", progress=False)
    for index in ("k-SII", "SV"):
        iv = explain_interactions(prompt, f, index, order=1)
        assert iv.index == "SV" and iv.max_order == 1
        assert np.allclose([iv[(i,)] for i in range(5)], exact.values, atol=1e-12)
        assert iv.baseline_value == pytest.approx(exact.base_values)
    # order 2: the k-SII words and pairs share f(prompt) - f("") like the Shapley values do (efficiency)
    iv2 = explain_interactions(prompt, f, "k-SII", order=2)
    assert sum(v for key, v in iv2.dict_values.items() if key) == pytest.approx(exact.values.sum(), abs=1e-12)
    assert iv2[(1, 2)] == pytest.approx(0.4) and iv2[(2, 3)] == pytest.approx(-0.25)


# ------------------------------------------------------------------------------------ shared image cache

def word_paint(prompts):
    """A deterministic text-to-image callable: one 8x8 stripe per known word present, the rest noise per prompt."""
    vocabulary = ["a", "red", "circle", "and", "blue", "square"]
    images = []
    for prompt in prompts:
        words = prompt.split()
        pixels = np.random.default_rng(zlib.crc32(prompt.encode())).integers(0, 40, (8, 8, 3), dtype=np.uint8)
        for k, word in enumerate(vocabulary):
            if word in words:
                pixels[k] = 200 + 9 * k
        images.append(PIL.Image.fromarray(pixels))
    return images


def pixel_similarity(images, reference):
    ref = np.asarray(reference, dtype=float)
    return np.array([1 - np.abs(np.asarray(im, dtype=float) - ref).mean() / 255 for im in images])


def test_no_new_image_after_exact_shap_on_the_same_prompt_score():
    prompt = "a red circle and a blue square"  # 7 words, "a" twice: 124 distinct sub-prompts of 128 coalitions
    generator = TextToImage(word_paint, cache_key="word-paint", progress=False)
    f = PromptScore(generator, pixel_similarity, prompt)
    exact = shap_text.explain_prompt(prompt, f, algorithm="exact", progress=False)
    made = generator.n_generated
    assert made == len({" ".join(w for w, keep in zip(prompt.split(), m) if keep)
                        for m in WordGame(lambda p: np.zeros(len(p)), prompt).all_coalitions()[0]})
    for index in ("k-SII", "STII", "FSII", "SII", "SV"):
        explain_interactions(prompt, f, index)
    iv = explain_interactions(prompt, PromptScore(generator, pixel_similarity, prompt), "k-SII", order=1)
    assert generator.n_generated == made  # the same 2**7 coalitions: all cached (PromptScore and TextToImage)
    assert np.allclose([iv[(i,)] for i in range(7)], exact.values, atol=1e-9)
    # faithfulness on the same PromptScore: nothing generated either
    scores = faithfulness_scores(f, prompt, exact, k=2)
    assert generator.n_generated == made and scores["aopc_deletion"].value > scores["aopc_deletion"].random_mean


# ------------------------------------------------------------------------------------------- ShapesWorld

def _weights_available() -> bool:
    from captum_diffusion.shapes_world import weights_available

    return weights_available()


@pytest.fixture(scope="module")
def shapes_world():
    """The shipped model on one torch thread (two threads spin-wait under load on this shared machine)."""
    import torch

    from captum_diffusion.shapes_world import load_shapes_world

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_shapes_world()
    torch.set_num_threads(threads)


@pytest.mark.skipif(not _weights_available(), reason="ShapesWorld weights not shipped")
def test_shapes_world_interactions_are_free_after_exact_shap_and_average_over_seeds(shapes_world):
    """On the shipped model and CLIP payoff, "a red circle" at seeds 0-3 (8 sub-prompts per seed): exact SHAP
    generates every sub-prompt, then every interaction index and the faithfulness scores generate nothing; order-1
    values are exact SHAP's; k-SII is efficient; the seed-averaged game's values are the mean of the per-seed values.

    Not asserted: that the colour-shape pairs of one object interact more than cross pairs, because on this model
    they do not. Binding margin = mean k-SII of (c1-s1, c2-s2) minus mean of (c1-s2, c2-s1) on 7-word two-object
    prompts (124 distinct sub-prompts per seed, ~25-30 s per seed here: too slow for the suite), measured with
    ``python benchmarks/faithfulness.py [--prompts "a red circle and a blue square" --seeds 0 1 2 3 4 5 6 7]``:
    "a red circle and a blue square", seeds 0-7: -0.180 +0.051 -0.156 -0.161 -0.050 -0.050 -0.072 -0.034 (mean
    -0.082, positive at 1 seed of 8; STII mean -0.033, FSII -0.082; blue-square is a redundant pair, k-SII -0.10);
    4 prompts x seeds 0-1 (the benchmark's default): mean -0.023 (std 0.103), positive in 3 of 8, only "a green
    triangle and a yellow circle" positive at both seeds (+0.157, +0.074). In single objects ("a {colour}
    {shape}", 12 prompts x seeds 0-3) the colour x shape k-SII averages +0.037 and is positive in 29 of 48 games."""
    from captum_diffusion.shapes_world import DEFAULT_GENERATION

    pipe, scorer = shapes_world
    prompt = "a red circle"
    scores, generators = [], []
    for seed in range(4):
        generators.append(TextToImage(pipe, seed=seed, progress=False, **DEFAULT_GENERATION.pipeline_kwargs()))
        scores.append(PromptScore(generators[-1], scorer, prompt))
    shap_values = [shap_text.explain_prompt(prompt, f, algorithm="exact", progress=False).values for f in scores]
    made = [g.n_generated for g in generators]
    assert made == [8] * 4  # 2**3 sub-prompts, the empty prompt and the full one included

    per_seed = [explain_interactions(prompt, f, "k-SII") for f in scores]
    mean_iv = explain_interactions(prompt, lambda prompts: np.mean([f(prompts) for f in scores], axis=0), "k-SII")
    expected = aggregate_interaction_values(per_seed, "mean")
    keys = list(mean_iv.interaction_lookup)
    assert np.allclose([mean_iv[key] for key in keys], [expected[key] for key in keys], atol=1e-12)
    assert mean_iv[(1, 2)] == pytest.approx(np.mean([iv[(1, 2)] for iv in per_seed]), abs=1e-12)
    for f, phi, iv in zip(scores, shap_values, per_seed):
        first = explain_interactions(prompt, f, "SV")
        assert np.allclose([first[(i,)] for i in range(3)], phi, atol=1e-9)
        assert sum(v for key, v in iv.dict_values.items() if key) == pytest.approx(phi.sum(), abs=1e-9)  # efficient
        for index in ("STII", "FSII", "SII"):
            explain_interactions(prompt, f, index)
        faithfulness_scores(f, prompt, phi, k=1)
    assert [g.n_generated for g in generators] == made  # nothing generated after exact SHAP


# ----------------------------------------------------------------------------------------- approximation

def long_game(prompts):
    """16 words w0..w15, additive plus a synergy (w3, w7) = +2 and a redundancy (w10, w12) = -1."""
    out = []
    for p in prompts:
        present = {int(w[1:]) for w in p.split()}
        out.append(0.2 + sum(0.1 * ((i % 5) - 2) for i in present) + 2.0 * ({3, 7} <= present)
                   - 1.0 * ({10, 12} <= present))
    return np.array(out)


LONG_PROMPT = " ".join(f"w{i}" for i in range(16))


@pytest.mark.parametrize("index", ["k-SII", "STII", "FSII", "SII"])
def test_long_prompts_are_approximated_with_a_seeded_budget(index):
    calls = []

    def f(prompts):
        calls.append(len(prompts))
        return long_game(prompts)

    iv = explain_interactions(LONG_PROMPT, f, index, budget=1500, seed=3)
    assert iv.estimated and iv.n_players == 16 and sum(calls) <= 1500
    assert iv[(3, 7)] == pytest.approx(2.0, abs=0.1) and iv[(10, 12)] == pytest.approx(-1.0, abs=0.1)
    assert strongest_pairs(iv, split_words(LONG_PROMPT), k=2)[0][:2] == ("w3", "w7")
    again = explain_interactions(LONG_PROMPT, long_game, index, budget=1500, seed=3)
    assert np.array_equal(iv.values, again.values)  # seeded
    sv = explain_interactions(LONG_PROMPT, long_game, "SV", budget=600, seed=0)
    assert sv.estimated and sv[(3,)] == pytest.approx(0.1 + 1.0, abs=0.1)


def test_default_budget_is_exact_up_to_twelve_words():
    calls = []

    def f(prompts):
        calls.append(len(prompts))
        return long_game(prompts)

    twelve = " ".join(f"w{i}" for i in range(12))
    iv = explain_interactions(twelve, f)
    assert not iv.estimated and calls == [2**12]  # one batched call, every sub-prompt
    assert iv[(3, 7)] == pytest.approx(2.0) and iv[(10, 11)] == pytest.approx(0.0, abs=1e-9)
    iv = explain_interactions(" ".join(f"w{i}" for i in range(13)), long_game, "SII")
    assert iv.estimated and iv.estimation_budget <= 2**12


# ---------------------------------------------------------------------------------- helpers, plots, errors

def test_strongest_pairs_lists_labelled_pairs_by_magnitude():
    prompt = "a red circle a"
    iv = explain_interactions(prompt, and_game)
    labels = word_labels(split_words(prompt))
    top = strongest_pairs(iv, labels, k=2)
    assert top[0] == ("red", "circle", pytest.approx(1.0)) and len(top) == 2
    assert all(isinstance(v, float) for _, _, v in top)
    everything = strongest_pairs(iv, labels, k=50)
    assert len(everything) == 6 and {(a, b) for a, b, _ in everything} >= {("a#0", "a#1"), ("red", "a#1")}
    with pytest.raises(ValueError, match="labels"):
        strongest_pairs(iv, labels[:3])
    with pytest.raises(ValueError, match="k must"):
        strongest_pairs(iv, labels, k=0)
    with pytest.raises(ValueError, match="no pairs"):
        strongest_pairs(explain_interactions(prompt, and_game, "SV"), labels)
    with pytest.raises(TypeError, match="interaction_values"):
        strongest_pairs({(1, 2): 1.0}, labels)


def test_network_plot_draws_the_words():
    import matplotlib.pyplot as plt

    iv = explain_interactions(AND_PROMPT, and_game, "k-SII")
    labels = word_labels(split_words(AND_PROMPT))
    fig, ax = shapiq.network_plot(iv, feature_names=labels)
    assert isinstance(fig, Figure)
    drawn = {t.get_text() for t in ax.texts}
    assert set(labels) <= drawn, drawn
    plt.close(fig)
    fig, ax = iv.plot_network(feature_names=labels, show=False)
    assert isinstance(fig, Figure)
    plt.close(fig)
    force = iv.plot_force(feature_names=np.array(labels), show=False)
    assert isinstance(force, Figure)
    plt.close("all")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(index="Banzhaf"), ValueError, "index"),
    (dict(index=2), TypeError, "index"),
    (dict(order=0), ValueError, "order"),
    (dict(order=5), ValueError, "order"),
    (dict(index="SV", order=2), ValueError, "order"),
    (dict(budget=0), ValueError, "budget"),
    (dict(budget=100.0), TypeError, "budget"),
    (dict(budget="all"), TypeError, "budget"),
    (dict(budget=True), TypeError, "budget"),
    (dict(budget=8), ValueError, "budget=8 is too small"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(progress="yes"), TypeError, "progress"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        explain_interactions(AND_PROMPT, and_game, **kwargs)


def test_bad_prompt_and_f():
    with pytest.raises(TypeError, match="f must be callable"):
        explain_interactions(AND_PROMPT, "f")
    with pytest.raises(ValueError, match="prompt"):
        explain_interactions("   ", and_game)
    with pytest.raises(ValueError, match="does not match"):
        explain_interactions("a blue square", WordGame(and_game, AND_PROMPT))
    game = WordGame(and_game, AND_PROMPT)  # a game is accepted as f, and its memo reused
    explain_interactions(AND_PROMPT, game)
    explain_interactions(AND_PROMPT, game, "STII", progress=True)
    assert game.n_calls == 1
    assert minimum_budget("k-SII", 2, 4) == 2 * (1 + 4 + 6) and minimum_budget("STII", 2, 4) == 1 + 4 + 1 + 6 * 4


# ------------------------------------------------------------------------------------------- faithfulness

WEIGHTS = {"a": 0.01, "big": 0.1, "red": 0.5, "circle": 0.8, "on": 0.05, "grass": 0.3, "today": -0.2}
ADD_PROMPT = "a big red circle on grass today"  # d = 7: 5040 orderings


def additive(prompts):
    return np.array([0.1 + sum(WEIGHTS[w] for w in p.split()) for p in prompts])


TRUE = np.array([WEIGHTS[w] for w in ADD_PROMPT.split()])


def test_deletion_in_the_true_order_beats_random_orderings_on_an_additive_game():
    game = WordGame(additive, ADD_PROMPT)
    curve = deletion_curve(game, None, TRUE)
    assert curve.shape == (8,) and curve.dtype == np.float64
    assert curve[0] == pytest.approx(additive([ADD_PROMPT])[0]) and curve[-1] == pytest.approx(0.1)
    randoms = random_order_curves(game, None, "deletion", n_random=300, seed=0)
    assert randoms.shape == (300, 8)
    assert (curve <= randoms + 1e-12).all()  # the true order deletes the most value at every step
    insertion = insertion_curve(game, None, TRUE)
    assert insertion[0] == pytest.approx(0.1)
    assert (insertion >= random_order_curves(game, None, "insertion") - 1e-12).all()
    for kind in ("deletion", "insertion"):
        score = aopc(game, None, TRUE, kind=kind, n_random=300)
        assert isinstance(score, FaithfulnessScore) and score.n_random == 300
        assert score.value >= score.random_values.max() - 1e-12 and score.beats_random > 0.99
        assert score.margin > 2 * score.random_std
        reversed_score = aopc(game, None, -TRUE, kind=kind, n_random=300)
        assert reversed_score.value <= reversed_score.random_values.min() + 1e-12  # the worst order
    # AOPC by its definition: mean over t = 0..d of v(all) - deletion[t]
    assert aopc(game, None, TRUE).value == pytest.approx(np.mean(curve[0] - curve))
    comp, suff = comprehensiveness(game, None, TRUE, k=2), sufficiency(game, None, TRUE, k=2)
    assert comp.value == pytest.approx(1.3) and comp.higher_is_better and comp.k == 2
    assert suff.value == pytest.approx(curve[0] - 1.4) and not suff.higher_is_better
    assert comp.margin > 0 and suff.margin > 0 and comp.beats_random > 0.9 and suff.beats_random > 0.9


def test_aopc_of_exact_shapley_order_beats_random_on_a_game_with_interactions():
    prompt = "a red circle and a blue square"

    def f(prompts):
        out = []
        for p in prompts:
            w = p.split()
            out.append(0.2 * ("red" in w) + 0.15 * ("blue" in w) + 0.1 * ("circle" in w) + 0.1 * ("square" in w)
                       + 0.3 * ({"red", "circle"} <= set(w)) + 0.2 * ({"blue", "square"} <= set(w))
                       + 0.02 * w.count("a") - 0.05 * ("and" in w))
        return np.array(out)

    game = WordGame(f, prompt)
    exact = shap_text.explain_prompt(prompt, game.f, algorithm="exact", progress=False)
    game.all_coalitions()
    calls = game.n_calls
    scores = faithfulness_scores(game, None, exact, k=2, n_random=500, seed=1)
    assert game.n_calls == calls  # every coalition was in the game's memo
    assert set(scores) == {"aopc_deletion", "aopc_insertion", "comprehensiveness", "sufficiency"}
    for name, score in scores.items():
        assert score.margin > 0, (name, score)
    assert scores["aopc_deletion"].value >= scores["aopc_deletion"].random_mean
    # the same through captum's result and shapiq's order-1 values, and seeded random orderings
    captum = WordAttribution(f, "shapley_values", progress=False).attribute(prompt)
    sv = explain_interactions(prompt, game, "SV")
    for other in (captum, sv, np.asarray(exact.values)):
        assert aopc(game, None, other, n_random=500, seed=1).value == pytest.approx(scores["aopc_deletion"].value)
    a, b = aopc(game, None, exact, seed=4), aopc(game, None, exact, seed=4)
    assert np.array_equal(a.random_values, b.random_values)
    assert not np.array_equal(a.random_values, aopc(game, None, exact, seed=5).random_values)


def test_attribution_order_breaks_ties_by_word_order_and_ignores_rounding_noise():
    from captum_diffusion.metrics import attribution_order

    assert attribution_order([0.1, 0.5, -0.3, 0.5]).tolist() == [1, 3, 0, 2]
    assert attribution_order([0.25, 0.35, 0.25 + 2e-6, 0.2]).tolist() == [1, 0, 2, 3]  # float32-level noise: a tie
    assert attribution_order([0.25, 0.35, 0.25 + 2e-6, 0.2], rtol=0).tolist() == [1, 2, 0, 3]
    assert attribution_order(np.zeros(3)).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="rtol"):
        attribution_order([1.0, 2.0], rtol=-1)


def test_every_ordering_is_used_when_there_are_few():
    prompt = "red circle today"
    score = aopc(additive, prompt, [0.5, 0.8, -0.2], n_random=200)
    assert score.n_random == factorial(3)
    assert random_order_curves(additive, prompt, n_random=6).shape == (6, 4)
    assert random_order_curves(additive, prompt, n_random=5).shape == (5, 4)


def test_faithfulness_inputs_and_bad_input():
    game = WordGame(additive, ADD_PROMPT)
    explanation = shap_text.explain_prompt(ADD_PROMPT, additive, algorithm="exact", progress=False)
    assert np.allclose(deletion_curve(game, None, explanation), deletion_curve(game, None, TRUE))
    assert np.allclose(deletion_curve(additive, ADD_PROMPT, list(TRUE)), deletion_curve(game, None, TRUE))
    assert metrics.aopc is aopc and "faithfulness_scores" in metrics.__all__
    with pytest.raises(ValueError, match="prompt has 7 words"):
        aopc(game, None, TRUE[:6])
    with pytest.raises(ValueError, match="prompt is required"):
        deletion_curve(additive, None, TRUE)
    with pytest.raises(ValueError, match="does not match"):
        deletion_curve(game, "a red circle", TRUE)
    with pytest.raises(ValueError, match="kind"):
        aopc(game, None, TRUE, kind="area")
    with pytest.raises(ValueError, match="n_random"):
        aopc(game, None, TRUE, n_random=0)
    with pytest.raises(ValueError, match="seed"):
        aopc(game, None, TRUE, seed=-2)
    with pytest.raises(ValueError, match="k=8 exceeds"):
        comprehensiveness(game, None, TRUE, k=8)
    with pytest.raises(ValueError, match="k must"):
        sufficiency(game, None, TRUE, k=0)
    with pytest.raises(ValueError, match="NaN"):
        insertion_curve(game, None, np.r_[TRUE[:6], np.nan])
    with pytest.raises(TypeError, match="numbers"):
        deletion_curve(game, None, ["a"] * 7)
    other = shap.Explanation(values=TRUE, feature_names=[f"x{i}" for i in range(7)], base_values=0.0)
    with pytest.raises(ValueError, match="words"):
        deletion_curve(game, None, other)
    with pytest.raises(ValueError, match="has 4 values"):
        aopc(game, None, explain_interactions(AND_PROMPT, and_game, "SV"))
