"""lime over prompt words: stock ``LimeTextExplainer`` with words deleted through the core's word game.

lime perturbs the prompt by replacing words with a mask string (``bow=False``: one feature per word
*position*, split on whitespace exactly like :func:`captum_diffusion.words.split_words`). The
:class:`WordClassifierFn` adapter reads each perturbed string back as a 0/1 word mask and scores the
sub-prompt that *deletes* the masked words, through :class:`~captum_diffusion.words.WordGame`. A scalar
score is a regression on label 0: the adapter returns ``(n, 1)`` and explanations use ``labels=(0,)``::

    explainer = word_explainer(random_state=0)
    classifier_fn = WordClassifierFn(WordGame(f, prompt))
    explanation = explainer.explain_instance(prompt, classifier_fn, labels=(0,), num_features=d)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from lime.explanation import Explanation
from lime.lime_text import LimeTextExplainer

from captum_diffusion.words import PromptFunction, WordGame

#: What lime writes in place of a removed word; never a word of an explained prompt.
MASK_STRING = "\u2400"  # SYMBOL FOR NULL
#: lime's split: whitespace runs separate words (so "cat's" stays one word, as in ``split_words``).
SPLIT_EXPRESSION = r"\s+"


class WordClassifierFn:
    """lime ``classifier_fn`` for one prompt: perturbed strings ``(n,)`` -> scores ``(n, 1)`` (label 0).

    Every string must be the prompt with some words replaced by ``mask_string``; those words are deleted
    and the sub-prompt is scored by ``game`` (memoised: a sub-prompt reaches ``f`` once).
    """

    def __init__(self, game: WordGame, mask_string: str = MASK_STRING):
        if mask_string in game.words:
            raise ValueError(f"the prompt contains lime's mask string {mask_string!r}; pass another mask_string")
        self.game = game
        self.mask_string = mask_string

    def mask_of(self, text: str) -> np.ndarray:
        """The 0/1 word mask ``(d,)`` that lime's perturbed ``text`` encodes."""
        tokens = text.split()
        words = self.game.words
        if len(tokens) != len(words) or any(t != w and t != self.mask_string for t, w in zip(tokens, words)):
            raise ValueError(
                f"lime passed {text!r}, which is not the prompt {self.game.prompt!r} with words replaced by "
                f"{self.mask_string!r}; build the explainer with word_explainer() (bow=False, split on whitespace)"
            )
        return np.array([t != self.mask_string for t in tokens])

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        masks = np.array([self.mask_of(t) for t in texts], dtype=bool).reshape(len(texts), self.game.n_words)
        return self.game(masks)[:, None]


def word_explainer(*, random_state: int | np.random.RandomState | None = 0, **kwargs) -> LimeTextExplainer:
    """A ``LimeTextExplainer`` whose features are the whitespace words of a prompt, by position.

    ``kwargs`` go to ``LimeTextExplainer`` (``kernel_width``, ``feature_selection``, ...); ``split_expression``,
    ``bow``, ``mask_string`` and ``char_level`` are fixed here because the word adapter relies on them.
    """
    fixed = {"split_expression", "bow", "mask_string", "char_level"} & set(kwargs)
    if fixed:
        raise TypeError(f"word_explainer fixes {sorted(fixed)}; do not pass them")
    return LimeTextExplainer(
        split_expression=SPLIT_EXPRESSION, bow=False, mask_string=MASK_STRING, random_state=random_state, **kwargs
    )


def explain_prompt(
    prompt: str,
    f: PromptFunction,
    num_samples: int = 200,
    *,
    random_state: int | np.random.RandomState | None = 0,
    kernel_width: float = 25,
    feature_selection: str = "none",
) -> Explanation:
    """LIME weights of the words of ``prompt`` for the black box ``f`` (sub-prompts -> scores ``(n,)``).

    ``num_samples`` perturbed prompts (the first is the full prompt) are scored, each distinct sub-prompt
    once. Returns lime's ``Explanation`` for label 0 with every word as a feature; ``word_weights`` gives the
    weights ``(d,)`` in word order, ``explanation.as_list(label=0)`` as ``(word, weight)`` pairs.
    """
    game = WordGame(f, prompt)
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 2:
        raise ValueError(f"num_samples must be an int >= 2 (the prompt plus perturbations), got {num_samples!r}")
    explainer = word_explainer(
        random_state=random_state, kernel_width=kernel_width, feature_selection=feature_selection
    )
    return explainer.explain_instance(
        game.prompt, WordClassifierFn(game), labels=(0,), num_features=game.n_words, num_samples=num_samples
    )


def word_weights(explanation: Explanation, label: int = 0) -> np.ndarray:
    """Per-word LIME weights of ``explanation``, float64 ``(d,)`` in the prompt's word order (0 for a word
    that lime left out of the explanation)."""
    if label not in explanation.local_exp:
        raise ValueError(f"explanation has no label {label}; it explains labels {sorted(explanation.local_exp)}")
    weights = np.zeros(explanation.domain_mapper.indexed_string.num_words())
    for position, weight in explanation.local_exp[label]:
        weights[position] = weight
    return weights
