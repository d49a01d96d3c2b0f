"""captum's perturbation algorithms over prompt words (captum_diffusion.attribution.WordAttribution)."""
import itertools
import math

import numpy as np
import pytest
import torch
from captum._utils.models.linear_model import SkLearnLinearRegression

from captum_diffusion.words.attribution import METHODS, WordAttribution, shapley_from_values
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
    attribution = WordAttribution(f, "shapley_values")
    phi = attribution.attribute(PROMPT)
    assert isinstance(phi, torch.Tensor) and phi.shape == (6,) and phi.dtype == torch.float64
    # captum 0.9 accumulates Shapley sums in float32 whatever the input dtype: agreement to ~1e-6
    np.testing.assert_allclose(phi.numpy(), EXACT, atol=1e-5)
    assert phi.sum().item() == pytest.approx(BagOfWords()([PROMPT])[0] - 0.1, abs=1e-5)
    assert len(f.seen) == len(set(f.seen)) == 2**6  # 720 permutations, 64 distinct sub-prompts, each once
    assert attribution.last_game.n_evaluated == 64


def test_feature_ablation_is_leave_one_out():
    f = BagOfWords()
    phi = WordAttribution(f, "feature_ablation").attribute(PROMPT).numpy()
    full = f([PROMPT])[0]
    words = PROMPT.split()
    expected = [full - f([" ".join(words[:i] + words[i + 1:])])[0] for i in range(6)]
    np.testing.assert_allclose(phi, expected, atol=1e-12)
    np.testing.assert_allclose(phi[[2, 3]], [1.1, 1.5])  # each gets the whole interaction: not efficient


def test_shapley_sampling_is_efficient_and_exact_when_additive():
    f = BagOfWords()
    phi = WordAttribution(f, "shapley_sampling").attribute(PROMPT, n_samples=30)
    assert phi.sum().item() == pytest.approx(f([PROMPT])[0] - 0.1, abs=1e-5)  # float32 sums in captum
    np.testing.assert_allclose(phi.numpy(), EXACT, atol=0.15)
    additive = WordAttribution(BagOfWords(interactions=False), "shapley_sampling").attribute(PROMPT, n_samples=3)
    np.testing.assert_allclose(additive.numpy(), [WEIGHTS[w] for w in PROMPT.split()], atol=1e-6)


@pytest.mark.parametrize(
    "method, init_kwargs",
    [("kernel_shap", {}), ("lime", {"interpretable_model": SkLearnLinearRegression()})],
)
def test_regression_methods_recover_an_additive_game(method, init_kwargs):
    torch.manual_seed(0)
    f = BagOfWords(interactions=False)
    phi = WordAttribution(f, method, **init_kwargs).attribute(PROMPT, n_samples=200)
    np.testing.assert_allclose(phi.numpy(), [WEIGHTS[w] for w in PROMPT.split()], atol=1e-6)
    assert len(f.seen) == len(set(f.seen)) <= 64


def test_lime_default_lasso_keeps_the_ranking():
    torch.manual_seed(0)
    phi = WordAttribution(BagOfWords(interactions=False), "lime").attribute(PROMPT, n_samples=200).numpy()
    assert np.argsort(-phi)[:2].tolist() == [3, 2]  # circle, red


def test_every_method_is_available_and_batches_sub_prompts():
    assert sorted(METHODS) == ["feature_ablation", "kernel_shap", "lime", "shapley_sampling", "shapley_values"]
    attribution = WordAttribution(BagOfWords(), "feature_ablation")
    attribution.attribute(PROMPT)
    assert attribution.last_game.n_calls <= 2 and attribution.last_game.n_evaluated == 7


def test_bad_inputs():
    with pytest.raises(ValueError, match="method must be one of"):
        WordAttribution(BagOfWords(), "integrated_gradients")
    with pytest.raises(TypeError, match="f must be callable"):
        WordAttribution(42)
    with pytest.raises(TypeError, match="floating point"):
        WordAttribution(BagOfWords(), dtype=torch.int64)
    with pytest.raises(TypeError, match="baselines"):
        WordAttribution(BagOfWords()).attribute(PROMPT, baselines=torch.zeros(1, 6))
    with pytest.raises(ValueError, match="empty"):
        WordAttribution(BagOfWords()).attribute("")
    with pytest.raises(ValueError, match="shapley_sampling"):
        WordAttribution(BagOfWords(), "shapley_values").attribute("one two three four five six seven eight nine")
    with pytest.raises(ValueError, match="non-finite score for 1 sub-prompt.*'a' -> nan"):
        WordAttribution(lambda ps: np.array([np.nan if p == "a" else 1.0 for p in ps]), "feature_ablation").attribute("a b")
    with pytest.raises(ValueError, match=r"must list each of the 2\*\*2"):
        shapley_from_values(np.ones((4, 2), dtype=bool), np.zeros(4))
