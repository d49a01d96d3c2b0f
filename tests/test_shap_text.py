"""Stock shap explainers over prompt words through shap_adapters.text."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import shap  # noqa: E402

from captum_diffusion.words.attribution import shapley_from_values  # noqa: E402
from captum_diffusion.metrics import check_efficiency, check_null_player, check_symmetry  # noqa: E402
from captum_diffusion.words import WordGame  # noqa: E402
from shap_adapters import (  # noqa: E402
    WordMasker,
    WordPartitionMasker,
    explain_prompt,
    word_clustering,
    word_explanation,
)
from shap_adapters.text import AUTO_EXACT_WORDS, MAX_EXACT_WORDS, resolve_algorithm  # noqa: E402

PROMPT = "a big red circle on grass"
WEIGHTS = {"a": 0.05, "big": 0.3, "red": 0.6, "circle": 1.0, "on": 0.0, "grass": 0.3}


class BagOfWords:
    """Deterministic black box: weighted bag of words + interactions (red&circle +0.5, big&grass -0.2),
    plus a constant 0.1 so that f("") != 0. Records every prompt it is asked about."""

    def __init__(self, weights=WEIGHTS, interactions=True):
        self.weights, self.interactions, self.seen = weights, interactions, []

    def value(self, prompt):
        words = prompt.split()
        v = 0.1 + sum(self.weights.get(w, 0.0) for w in words)
        if self.interactions:
            v += 0.5 * ("red" in words and "circle" in words) - 0.2 * ("big" in words and "grass" in words)
        return v

    def __call__(self, prompts):
        self.seen.extend(prompts)
        return np.array([self.value(p) for p in prompts])


def brute_force_shapley(f, prompt):
    return shapley_from_values(*WordGame(f, prompt).all_coalitions())


def test_exact_equals_brute_force_shapley_and_calls_f_on_each_subset_once():
    f = BagOfWords()
    expl = explain_prompt(PROMPT, f, algorithm="exact", progress=False)
    d = len(PROMPT.split())
    assert len(f.seen) == 2**d and len(set(f.seen)) == 2**d and "" in f.seen  # 64 distinct, none repeated
    np.testing.assert_allclose(expl.values, brute_force_shapley(BagOfWords(), PROMPT), atol=1e-12)
    assert expl.values.shape == (d,)
    assert expl.base_values == pytest.approx(f.value(""))
    assert list(expl.data) == PROMPT.split() and list(expl.feature_names) == PROMPT.split()
    assert expl.values.sum() == pytest.approx(f.value(PROMPT) - f.value(""), abs=1e-6)  # efficiency
    # the interaction is shared: red and circle each get half of +0.5; "on" is a null player
    np.testing.assert_allclose(expl.values[[2, 3]], [0.6 + 0.25, 1.0 + 0.25])
    assert check_efficiency(expl, f, PROMPT, atol=1e-6).passed
    assert check_null_player(expl, f, PROMPT).players == (4,)
    assert check_null_player(expl, f, PROMPT, atol=1e-9).passed


def test_symmetric_words_get_equal_exact_values():
    f = BagOfWords({"big": 0.4, "small": 0.4, "square": 1.0}, interactions=False)
    expl = explain_prompt("big small square", f, algorithm="exact", progress=False)
    result = check_symmetry(expl, f, "big small square", atol=1e-9)
    assert result.players == ((0, 1),) and result.passed


def test_stock_shap_explainer_with_the_word_masker():
    f = BagOfWords()
    game = WordGame(f, PROMPT)
    explainer = shap.Explainer(game, WordMasker(game.words), algorithm="exact")
    expl = explainer(np.ones((1, game.n_words)))[0]
    np.testing.assert_allclose(expl.values, brute_force_shapley(BagOfWords(), PROMPT), atol=1e-12)
    assert list(expl.feature_names) == game.words and expl.base_values == pytest.approx(0.1)
    # shap's own "auto" picks exact for a short prompt with this masker
    assert type(shap.Explainer(game, WordMasker(game.words))).__name__ == "ExactExplainer"


def test_permutation_is_efficient_and_close_to_exact():
    f = BagOfWords()
    exact = brute_force_shapley(BagOfWords(), PROMPT)
    expl = explain_prompt(PROMPT, f, algorithm="permutation", max_evals=26 * 13, progress=False)
    assert list(expl.feature_names) == PROMPT.split() and expl.base_values == pytest.approx(0.1)
    assert expl.values.sum() == pytest.approx(f.value(PROMPT) - 0.1, abs=1e-9)  # every permutation telescopes
    np.testing.assert_allclose(expl.values, exact, atol=0.1)
    assert np.argmax(expl.values) == 3  # "circle"
    few = [explain_prompt(PROMPT, f, algorithm="permutation", max_evals=39, seed=7, progress=False).values for _ in "ab"]
    np.testing.assert_array_equal(few[0], few[1])  # seeded: reproducible


def test_permutation_and_partition_are_exact_on_an_additive_game():
    f = BagOfWords(interactions=False)
    expected = [WEIGHTS[w] for w in PROMPT.split()]
    for algorithm in ("permutation", "partition"):
        expl = explain_prompt(PROMPT, f, algorithm=algorithm, progress=False)
        np.testing.assert_allclose(expl.values, expected, atol=1e-9, err_msg=algorithm)
        assert expl.base_values == pytest.approx(0.1)
        assert list(expl.data) == PROMPT.split()


def test_partition_gives_owen_values_over_the_word_tree():
    f = BagOfWords()
    expl = explain_prompt(PROMPT, f, algorithm="partition", max_evals=500, progress=False)
    assert expl.values.sum() == pytest.approx(f.value(PROMPT) - 0.1, abs=1e-9)
    # red (2) and circle (3) sit in one leaf pair of the tree: they split their interaction as Shapley does
    np.testing.assert_allclose(expl.values[[2, 3]], [0.85, 1.25], atol=1e-9)
    tree = word_clustering(6)
    assert tree.shape == (5, 4) and tree[-1, 3] == 6 and tree[:3, :2].tolist() == [[0, 1], [2, 3], [4, 5]]
    game = WordGame(f, PROMPT)
    partition = shap.Explainer(game, WordPartitionMasker(game.words), algorithm="partition")
    assert type(partition).__name__ == "PartitionExplainer"


def test_auto_is_exact_for_short_prompts_and_samples_long_ones():
    f = BagOfWords()
    expl = explain_prompt(PROMPT, f, progress=False)
    np.testing.assert_allclose(expl.values, brute_force_shapley(BagOfWords(), PROMPT), atol=1e-12)
    # the rule measured by benchmarks/estimators.py: exact up to 12 words, sampling above
    assert resolve_algorithm("auto", 12) == "exact" and resolve_algorithm("auto", 13) == "permutation"
    assert resolve_algorithm("auto", 1) == "exact" and AUTO_EXACT_WORDS == MAX_EXACT_WORDS == 12
    long_prompt = "a big red circle on green grass next to a small blue square"  # 13 words
    f = BagOfWords(interactions=False)
    expl = explain_prompt(long_prompt, f, algorithm="auto", progress=False)
    assert len(set(f.seen)) < 2**12 and list(expl.data) == long_prompt.split()
    labels = list(expl.feature_names)                       # repeated words named as everywhere: a#0, a#1
    assert labels[0] == "a#0" and labels[9] == "a#1" and labels[1:9] == long_prompt.split()[1:9]
    np.testing.assert_allclose(expl.values, [WEIGHTS.get(w, 0.0) for w in long_prompt.split()], atol=1e-9)


def test_stock_plots_draw_the_words():
    expl = explain_prompt(PROMPT, BagOfWords(), algorithm="exact", progress=False)
    html = shap.plots.text(expl, display=False)
    assert isinstance(html, str) and all(w in html for w in PROMPT.split())
    assert f"{expl.values[3]:.3f}"[:4] in html or f"{expl.values[3]:+.3f}"[:5] in html
    plt.close("all")
    shap.plots.bar(expl, show=False)
    labels = " ".join(t.get_text() for t in plt.gcf().axes[0].get_yticklabels())
    assert all(w in labels for w in ("circle", "red", "big", "grass"))
    plt.close("all")
    shap.plots.waterfall(expl, show=False)
    fig = plt.gcf()
    labels = " ".join(t.get_text() for ax in fig.axes for t in ax.get_yticklabels())
    assert "circle" in labels and "red" in labels
    ticks = " ".join(t.get_text() for ax in fig.axes for t in ax.get_xticklabels())
    assert "= 0.1$" in ticks and "= 2.65$" in ticks  # E[f(X)] = f("") and f(x) = f(prompt) are annotated
    plt.close("all")


def test_exact_refuses_more_than_twelve_words():
    prompt = " ".join(["word"] * 13)
    f = BagOfWords()
    with pytest.raises(ValueError, match=r"algorithm='permutation'.*max_evals="):
        explain_prompt(prompt, f, algorithm="exact", progress=False)
    assert f.seen == []  # refused before any evaluation


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"prompt": "  "}, ValueError, "empty"),
        ({"algorithm": "kernel"}, ValueError, "algorithm must be one of"),
        ({"max_evals": 0}, ValueError, "max_evals"),
        ({"batch_size": -1}, ValueError, "batch_size"),
        ({"f": "f"}, TypeError, "f must be callable"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = {"prompt": PROMPT, "f": BagOfWords(), "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        explain_prompt(**args)


def test_nan_and_wrong_shapes_from_f():
    def nan_without_circle(prompts):
        return np.array([1.0 if "circle" in p else np.nan for p in prompts])

    with pytest.raises(ValueError, match="non-finite score"):
        explain_prompt("red circle", nan_without_circle, algorithm="exact", progress=False)
    with pytest.raises(ValueError, match=r"shape \(n,\)"):
        explain_prompt("red circle", lambda ps: np.zeros((len(ps), 2)), progress=False)


def test_word_explanation_lets_shap_plots_draw_captum_results():
    import torch

    from captum_diffusion.words.attribution import WordAttribution

    f = BagOfWords()
    phi = WordAttribution(f, "feature_ablation", progress=False).attribute(PROMPT)
    expl = word_explanation(phi, PROMPT, base_value=f.value(""))
    np.testing.assert_allclose(expl.values, phi.seq_attr.numpy())
    assert list(expl.data) == PROMPT.split() and expl.base_values == pytest.approx(0.1)
    plt.close("all")
    shap.plots.bar(expl, show=False)
    labels = " ".join(t.get_text() for t in plt.gcf().axes[0].get_yticklabels())
    assert "circle" in labels
    plt.close("all")
    with pytest.raises(ValueError, match="6 words"):
        word_explanation(torch.zeros(3), PROMPT)
