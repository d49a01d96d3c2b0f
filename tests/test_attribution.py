"""captum's perturbation algorithms over prompt words (captum_diffusion.words.attribution.WordAttribution)."""
import itertools
import math
import random
import warnings

import numpy as np
import pytest
import captum.attr
import torch
from captum._utils.models.linear_model import SkLearnLinearRegression
from captum.attr import (FeatureAblation, KernelShap, Lime, LLMAttributionResult, Saliency, ShapleyValues,
                         ShapleyValueSampling)

from captum_diffusion.words.attribution import METHODS, WordAttribution, WordAttributionResult, shapley_from_values
from captum_diffusion.words import WordGame, subprompt

PROMPT = "a big red circle on grass"
WEIGHTS = {"a": 0.05, "big": 0.3, "red": 0.6, "circle": 1.0, "on": 0.0, "grass": 0.3}


class BagOfWords:
    """0.1 + weighted bag of words (+0.5 for red & circle, -0.2 for big & grass when interactions)."""

    def __init__(self, interactions=True):
        self.interactions, self.seen = interactions, []

    def __call__(self, prompts):
        self.seen.extend(prompts)
        out = []
        for p in prompts:
            w = p.split()
            v = 0.1 + sum(WEIGHTS.get(x, 0.0) for x in w)
            if self.interactions:
                v += 0.5 * ("red" in w and "circle" in w) - 0.2 * ("big" in w and "grass" in w)
            out.append(v)
        return np.array(out)


def shapley_by_permutations(f, prompt):
    """Independent reference: average marginal contribution over all d! orderings."""
    words = prompt.split()
    d = len(words)
    phi = np.zeros(d)
    for order in itertools.permutations(range(d)):
        mask = np.zeros(d, dtype=bool)
        before = f([subprompt(words, mask)])[0]
        for i in order:
            mask[i] = True
            after = f([subprompt(words, mask)])[0]
            phi[i] += after - before
            before = after
    return phi / math.factorial(d)


EXACT = shapley_by_permutations(BagOfWords(), PROMPT)


def test_reference_shapley_formula_matches_permutation_definition():
    np.testing.assert_allclose(shapley_from_values(*WordGame(BagOfWords(), PROMPT).all_coalitions()), EXACT, atol=1e-12)
    np.testing.assert_allclose(EXACT[[2, 3, 1, 5, 4]], [0.85, 1.25, 0.2, 0.2, 0.0], atol=1e-12)


def test_shapley_values_equal_brute_force_and_each_sub_prompt_is_scored_once():
    f = BagOfWords()
    attribution = WordAttribution(ShapleyValues(f))
    phi = attribution.attribute(PROMPT)
    assert isinstance(phi, torch.Tensor) and phi.shape == (6,) and phi.dtype == torch.float64
    # captum 0.9 accumulates Shapley sums in float32 whatever the input dtype: agreement to ~1e-6
    np.testing.assert_allclose(phi.numpy(), EXACT, atol=1e-5)
    assert phi.sum().item() == pytest.approx(BagOfWords()([PROMPT])[0] - 0.1, abs=1e-5)
    assert len(f.seen) == len(set(f.seen)) == 2**6  # 720 permutations, 64 distinct sub-prompts, each once
    assert attribution.last_game.n_evaluated == 64


def test_feature_ablation_is_leave_one_out():
    f = BagOfWords()
    phi = WordAttribution(FeatureAblation(f)).attribute(PROMPT).numpy()
    full = f([PROMPT])[0]
    words = PROMPT.split()
    expected = [full - f([" ".join(words[:i] + words[i + 1:])])[0] for i in range(6)]
    np.testing.assert_allclose(phi, expected, atol=1e-12)
    np.testing.assert_allclose(phi[[2, 3]], [1.1, 1.5])  # each gets the whole interaction: not efficient


def test_shapley_sampling_is_efficient_and_exact_when_additive():
    f = BagOfWords()
    phi = WordAttribution(ShapleyValueSampling(f)).attribute(PROMPT, n_samples=30)
    assert phi.sum().item() == pytest.approx(f([PROMPT])[0] - 0.1, abs=1e-5)  # float32 sums in captum
    np.testing.assert_allclose(phi.numpy(), EXACT, atol=0.15)
    additive = WordAttribution(ShapleyValueSampling(BagOfWords(interactions=False))).attribute(PROMPT, n_samples=3)
    np.testing.assert_allclose(additive.numpy(), [WEIGHTS[w] for w in PROMPT.split()], atol=1e-6)


@pytest.mark.parametrize(
    "method, init_kwargs",
    [(KernelShap, {}), (Lime, {"interpretable_model": SkLearnLinearRegression()})],
)
def test_regression_methods_recover_an_additive_game(method, init_kwargs):
    torch.manual_seed(0)
    f = BagOfWords(interactions=False)
    phi = WordAttribution(method(f, **init_kwargs)).attribute(PROMPT, n_samples=200)
    np.testing.assert_allclose(phi.numpy(), [WEIGHTS[w] for w in PROMPT.split()], atol=1e-6)
    assert len(f.seen) == len(set(f.seen)) <= 64


def test_lime_default_lasso_keeps_the_ranking():
    torch.manual_seed(0)
    phi = WordAttribution(Lime(BagOfWords(interactions=False))).attribute(PROMPT, n_samples=200).numpy()
    assert np.argsort(-phi)[:2].tolist() == [3, 2]  # circle, red


def test_every_method_is_available_and_batches_sub_prompts():
    assert sorted(METHODS) == ["feature_ablation", "kernel_shap", "lime", "shapley_sampling", "shapley_values"]
    attribution = WordAttribution(FeatureAblation(BagOfWords()))
    attribution.attribute(PROMPT)
    assert attribution.last_game.n_calls <= 2 and attribution.last_game.n_evaluated == 7


def test_result_is_captums_llm_attribution_result_over_word_labels():
    import matplotlib.pyplot as plt

    f = BagOfWords()
    prompt = "a red circle on a big grass"
    result = WordAttribution(ShapleyValues(f), progress=False).explain(prompt)
    assert isinstance(result, WordAttributionResult) and isinstance(result, LLMAttributionResult)
    assert result.input_tokens == ["a#0", "red", "circle", "on", "a#1", "big", "grass"]  # words.word_labels
    assert result.output_tokens == ["score"] and result.words == prompt.split() and result.prompt == prompt
    assert result.method == "shapley_values"
    assert result.seq_attr.shape == (7,) and result.seq_attr.dtype == torch.float64
    assert result.token_attr.shape == (1, 7) and torch.equal(result.token_attr[0], result.seq_attr)
    assert list(result.seq_attr_dict) == result.input_tokens
    np.testing.assert_array_equal(np.asarray(result), result.seq_attr.numpy())
    n_seen = len(f.seen)
    assert result.base_value == pytest.approx(0.1) and result.full_value == pytest.approx(f([prompt])[0])
    assert len(f.seen) == n_seen + 1  # both came from the game's memo (the +1 is the f([prompt]) above)
    assert result.seq_attr.sum().item() == pytest.approx(result.full_value - result.base_value, abs=1e-4)  # float32
    assert "'circle'" in repr(result) and result == result and result != 3
    plt.close("all")
    fig, ax = result.plot_seq_attr()
    assert [t.get_text() for t in ax.get_xticklabels()] == result.input_tokens
    assert type(fig).__name__ == "Figure"
    fig, ax = result.plot_token_attr()
    plt.close("all")


def test_base_value_is_evaluated_on_demand_when_the_method_never_asked_for_it():
    f = BagOfWords()
    attribution = WordAttribution(FeatureAblation(f), progress=False)
    result = attribution.explain(PROMPT)
    assert "" not in f.seen and attribution.last_game.n_calls <= 2
    assert result.base_value == pytest.approx(0.1)
    assert f.seen[-1] == "" and f.seen.count("") == 1
    result.base_value
    assert f.seen.count("") == 1


def _rng_states():
    return torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()


def _same_states(a, b):
    return torch.equal(a[0], b[0]) and a[1] == b[1] and np.array_equal(a[2], b[2])


@pytest.mark.parametrize("method, n_samples", [("shapley_sampling", 2), ("kernel_shap", 12), ("lime", 12)])
def test_sampled_methods_are_seeded_and_leave_the_global_rngs_alone(method, n_samples):
    f = BagOfWords()  # with interactions, so that different samples give different values

    def run(seed, **init):
        return WordAttribution(METHODS[method](f, **init), seed=seed, progress=False).explain(PROMPT,
                                                                                             n_samples=n_samples)

    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    before = _rng_states()
    first = run(0)
    assert _same_states(_rng_states(), before)  # the caller's torch / python / numpy RNGs are untouched
    torch.rand(7), random.random(), np.random.rand()  # whatever the global state, seed 0 is seed 0
    again = run(0)
    assert again == first and torch.equal(again.seq_attr, first.seq_attr)
    assert not torch.equal(run(1).seq_attr, first.seq_attr)
    torch.manual_seed(5)
    unseeded = run(None)
    torch.manual_seed(5)
    assert torch.equal(run(None).seq_attr, unseeded.seq_attr)  # seed=None: captum's draws from the global RNG
    assert repr(WordAttribution(METHODS[method](f), seed=3)) == f"WordAttribution(method={method!r}, seed=3)"


def test_captum_alone_gives_nan_for_zero_samples_and_word_attribution_refuses():
    import captum.attr

    nan = captum.attr.ShapleyValueSampling(lambda m: m.sum(1)).attribute(torch.ones(1, 3), baselines=torch.zeros(1, 3),
                                                                         n_samples=0)
    assert torch.isnan(nan).all()  # what WordAttribution must not pass on
    for method in ("shapley_sampling", "kernel_shap", "lime"):
        for bad in (0, -1, 2.5, True, "10"):
            with pytest.raises(ValueError, match="n_samples"):
                WordAttribution(METHODS[method](BagOfWords())).attribute(PROMPT, n_samples=bad)
    for method in ("kernel_shap", "lime"):  # one sample: a regression on the full prompt alone returns zeros
        with pytest.raises(ValueError, match=r"n_samples \(.*regression.*>= 2, got 1"):
            WordAttribution(METHODS[method](BagOfWords())).attribute(PROMPT, n_samples=1)
    assert WordAttribution(ShapleyValueSampling(BagOfWords()), progress=False).attribute(PROMPT, n_samples=1) is not None


@pytest.mark.parametrize("method", sorted(METHODS))
def test_bad_captum_arguments_name_the_argument(method):
    attribution = WordAttribution(METHODS[method](BagOfWords()), progress=False)
    for bad in (0, -2, 1.5, None):
        with pytest.raises(ValueError, match="perturbations_per_eval must be a positive int"):
            attribution.attribute(PROMPT, perturbations_per_eval=bad)
    with pytest.raises(TypeError, match="show_progress must be a bool"):
        attribution.attribute(PROMPT, show_progress=1)
    with pytest.raises(TypeError, match=r"does not take \['nsamples'\]"):
        attribution.attribute(PROMPT, nsamples=10)
    with pytest.raises(TypeError, match="return_input_shape"):
        attribution.attribute(PROMPT, return_input_shape=False)
    if method in ("feature_ablation", "shapley_values"):  # deterministic: captum would ignore or reject n_samples
        with pytest.raises(TypeError, match=r"n_samples is for the sampled methods"):
            attribution.attribute(PROMPT, n_samples=10)
    assert attribution.last_game is None  # nothing was evaluated


def test_bad_inputs():
    with pytest.raises(ValueError, match="method must be one of"):  # the deprecated form
        WordAttribution(BagOfWords(), "integrated_gradients")
    with pytest.raises(TypeError, match="f must be callable"):
        WordAttribution(42)
    with pytest.raises(TypeError, match=r"attr_method must be .*ShapleyValueSampling.*got Saliency"):
        WordAttribution(Saliency(BagOfWords()))  # a gradient method: f is a black box
    with pytest.raises(TypeError, match=r"takes no \['method', 'interpretable_model'\]"):
        WordAttribution(Lime(BagOfWords()), "lime", interpretable_model=SkLearnLinearRegression())
    with pytest.raises(TypeError, match="forward_func must be the black box"):
        WordAttribution(FeatureAblation(None))
    with pytest.raises(TypeError, match="floating point"):
        WordAttribution(ShapleyValueSampling(BagOfWords()), dtype=torch.int64)
    for seed in (-1, 1.0, "0", True):
        with pytest.raises(ValueError, match="seed must be a non-negative int"):
            WordAttribution(ShapleyValueSampling(BagOfWords()), seed=seed)
    with pytest.raises(TypeError, match="progress must be a bool"):
        WordAttribution(ShapleyValueSampling(BagOfWords()), progress="yes")
    with pytest.raises(TypeError, match="baselines"):
        WordAttribution(ShapleyValueSampling(BagOfWords())).attribute(PROMPT, baselines=torch.zeros(1, 6))
    with pytest.raises(ValueError, match="empty"):
        WordAttribution(ShapleyValueSampling(BagOfWords())).attribute("")
    with pytest.raises(ValueError, match="shapley_sampling"):
        WordAttribution(ShapleyValues(BagOfWords())).attribute("one two three four five six seven eight nine")
    with pytest.raises(ValueError, match="non-finite score for 1 sub-prompt.*'a' -> nan"):
        WordAttribution(FeatureAblation(lambda ps: np.array([np.nan if p == "a" else 1.0 for p in ps]))).attribute("a b")
    with pytest.raises(ValueError, match=r"must list each of the 2\*\*2"):
        shapley_from_values(np.ones((4, 2), dtype=bool), np.zeros(4))


# ------------------------------------------------------------------ the captum convention and the deprecated form

def test_attribute_is_captums_tensor_and_explain_the_result():
    f = BagOfWords()
    attribution = WordAttribution(ShapleyValues(f), progress=False)
    assert isinstance(attribution, captum.attr.Attribution) and attribution.forward_func is f
    assert attribution.method == "shapley_values" and attribution.f is f
    phi = attribution.attribute(PROMPT)
    result = attribution.explain(PROMPT)
    assert type(phi) is torch.Tensor and phi.shape == (6,) and torch.equal(phi, result.seq_attr)
    np.testing.assert_allclose(phi.numpy(), EXACT, atol=1e-5)
    assert len(f.seen) == 2 * 64  # each call plays its own game (a cache, if any, is f's: PromptScore's)
    assert WordAttribution(ShapleyValueSampling(f)).method == "shapley_sampling"


def test_the_wrapped_instance_is_not_changed_and_a_subclass_is_accepted():
    f = BagOfWords(interactions=False)

    class MyShapley(ShapleyValueSampling):
        pass

    wrapped = MyShapley(f)
    attribution = WordAttribution(wrapped, progress=False)
    assert attribution.method == "shapley_sampling"
    np.testing.assert_allclose(attribution.attribute(PROMPT, n_samples=2).numpy(), [WEIGHTS[w] for w in PROMPT.split()],
                               atol=1e-6)
    assert wrapped.forward_func is f  # each call runs a shallow copy whose forward_func is the game


def test_the_result_converts_to_a_shap_explanation():
    import shap_adapters

    result = WordAttribution(FeatureAblation(BagOfWords()), progress=False).explain("a red circle")
    explanation = shap_adapters.word_explanation(result, result.words, result.base_value)
    np.testing.assert_array_equal(explanation.values, result.seq_attr.numpy())
    assert explanation.base_values == pytest.approx(0.1) and explanation.feature_names == result.input_tokens


@pytest.mark.parametrize("method, init_kwargs, captum_kwargs", [
    ("feature_ablation", {}, {}),
    ("shapley_values", {}, {}),
    ("shapley_sampling", {}, {"n_samples": 3}),
    ("kernel_shap", {}, {"n_samples": 20}),
    ("lime", {"interpretable_model": SkLearnLinearRegression()}, {"n_samples": 20}),
])
def test_the_deprecated_method_name_warns_and_gives_the_same_values(method, init_kwargs, captum_kwargs):
    f = BagOfWords()
    with pytest.warns(DeprecationWarning, match=rf"WordAttribution\(f, '{method}'\) is deprecated"):
        old = WordAttribution(f, method, progress=False, seed=0, **init_kwargs)
    with pytest.warns(DeprecationWarning, match=r"returns a WordAttributionResult for one more release"):
        old_result = old.attribute(PROMPT, **captum_kwargs)
    assert isinstance(old_result, WordAttributionResult) and old.method == method
    new = WordAttribution(METHODS[method](f, **init_kwargs), progress=False, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new form warns about nothing
        new_values = new.attribute(PROMPT, **captum_kwargs)
        new_result = new.explain(PROMPT, **captum_kwargs)
    assert torch.equal(new_values, old_result.seq_attr) and new_result == old_result
    assert torch.equal(old.explain(PROMPT, **captum_kwargs).seq_attr, new_values)  # explain: the same in both forms
    assert repr(old) == repr(new)
