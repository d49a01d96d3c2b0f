"""Stock LimeTextExplainer over prompt words through lime_adapters.text."""
import numpy as np
import pytest
from lime.explanation import Explanation

from captum_diffusion.words import WordGame
from lime_adapters import MASK_STRING, WordClassifierFn, explain_prompt, word_explainer, word_weights

WEIGHTS = {"a": 0.05, "big": 0.3, "cat's": 0.6, "house": 1.0, "garden": 0.15}
PROMPT = "a big cat's house garden"


class Additive:
    """f(prompt) = 0.1 + sum of word weights; records every prompt."""

    def __init__(self):
        self.seen = []

    def __call__(self, prompts):
        self.seen.extend(prompts)
        return np.array([0.1 + sum(WEIGHTS.get(w, 0.0) for w in p.split()) for p in prompts])


def test_lime_recovers_the_word_ranking_of_an_additive_f():
    f = Additive()
    expl = explain_prompt(PROMPT, f, num_samples=200, seed=0)
    assert isinstance(expl, Explanation)
    weights = word_weights(expl)
    truth = np.array([WEIGHTS[w] for w in PROMPT.split()])
    assert np.argsort(-weights).tolist() == np.argsort(-truth).tolist()
    np.testing.assert_allclose(weights, truth, atol=0.15)  # ridge shrinks a little; the fit is near-exact
    assert expl.score > 0.95
    assert dict(expl.as_list(label=0)).keys() == set(PROMPT.split())  # "cat's" is one word, as in split_words


def test_each_sub_prompt_reaches_f_once_and_only_deletions_are_scored():
    f = Additive()
    explain_prompt(PROMPT, f, num_samples=200, seed=1)
    assert len(f.seen) == len(set(f.seen)) <= 2 ** len(PROMPT.split())
    assert PROMPT in f.seen and all(MASK_STRING not in p and "UNKWORDZ" not in p for p in f.seen)
    words = PROMPT.split()
    for p in f.seen:  # every scored prompt is an in-order sub-sequence of the prompt
        it = iter(words)
        assert all(w in it for w in p.split())


def test_positions_not_vocabulary_repeated_words_are_separate_features():
    def f(prompts):  # only the second "a" (the one right before "cat") matters
        return np.array([1.0 * ("a cat" in p) + 0.2 * ("cat" in p.split()) for p in prompts])

    weights = word_weights(explain_prompt("a dog chased a cat", f, num_samples=300, seed=0))
    assert weights.shape == (5,)
    assert weights[3] > 0.5 and abs(weights[0]) < 0.2  # the second "a" matters, the first does not
    assert np.argsort(-weights)[:2].tolist() == [4, 3]  # "cat" (needed by both terms), then the second "a"


def test_seed_makes_it_reproducible():
    a = word_weights(explain_prompt(PROMPT, Additive(), num_samples=60, seed=3))
    b = word_weights(explain_prompt(PROMPT, Additive(), num_samples=60, seed=3))
    np.testing.assert_array_equal(a, b)


def test_stock_explainer_with_the_classifier_fn():
    game = WordGame(Additive(), PROMPT)
    classifier_fn = WordClassifierFn(game)
    out = classifier_fn([PROMPT, f"{MASK_STRING} big cat's {MASK_STRING} garden"])
    assert out.shape == (2, 1)
    np.testing.assert_allclose(out[:, 0], [2.2, 1.15])
    expl = word_explainer(seed=0).explain_instance(
        PROMPT, classifier_fn, labels=(0,), num_features=5, num_samples=100
    )
    assert np.argmax(word_weights(expl)) == 3


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        explain_prompt(" ", Additive())
    with pytest.raises(ValueError, match="num_samples"):
        explain_prompt(PROMPT, Additive(), num_samples=1)
    with pytest.raises(ValueError, match="mask string"):
        explain_prompt(f"a {MASK_STRING} cat", Additive())
    with pytest.raises(ValueError, match="not the prompt"):
        WordClassifierFn(WordGame(Additive(), PROMPT))(["a big dog's house garden"])
    with pytest.raises(ValueError, match="non-finite score"):
        explain_prompt(PROMPT, lambda ps: np.array([np.nan if "house" not in p else 1.0 for p in ps]))
    with pytest.raises(TypeError, match="fixes"):
        word_explainer(bow=True)
    expl = explain_prompt(PROMPT, Additive(), num_samples=20)
    with pytest.raises(ValueError, match="no label 1"):
        word_weights(expl, label=1)


def test_axiom_checks_take_word_weights_not_the_lime_object():
    from captum_diffusion.metrics import check_efficiency

    f = Additive()
    expl = explain_prompt(PROMPT, f, num_samples=200, seed=0)
    with pytest.raises(TypeError, match="word_weights"):
        check_efficiency(expl, f, PROMPT)
    result = check_efficiency(word_weights(expl), f, PROMPT, atol=0.2)
    assert result.passed and result.gap > 1e-6  # near, not exactly, efficient: ridge shrinkage
