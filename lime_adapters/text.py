"""lime over prompt words: stock ``LimeTextExplainer`` with words deleted through the core's word game.

lime perturbs the prompt by replacing words with a mask string (``bow=False``: one feature per word
*position*, split on whitespace exactly like :func:`captum_diffusion.words.split_words`). The
:class:`WordClassifierFn` adapter reads each perturbed string back as a 0/1 word mask and scores the
sub-prompt that *deletes* the masked words, through :class:`~captum_diffusion.words.WordGame`. A scalar
score is a regression on label 0: the adapter returns ``(n, 1)`` and explanations use ``labels=(0,)``::

    explainer = word_explainer(seed=0)
    classifier_fn = WordClassifierFn(WordGame(f, prompt))
    explanation = explainer.explain_instance(prompt, classifier_fn, labels=(0,), num_features=d)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from lime.explanation import Explanation
from lime.lime_text import LimeTextExplainer, TextDomainMapper

from captum_diffusion import checks
from captum_diffusion.words import PromptFunction, WordGame, word_labels

#: What lime writes in place of a removed word; never a word of an explained prompt.
MASK_STRING = "\u2400"  # SYMBOL FOR NULL
#: lime's split: whitespace runs separate words (so "cat's" stays one word, as in ``split_words``).
SPLIT_EXPRESSION = r"\s+"


class WordClassifierFn:
    """lime ``classifier_fn`` for one prompt: perturbed strings ``(n,)`` -> scores ``(n, 1)`` (label 0).

    Every string must be the prompt with some words replaced by ``mask_string``; those words are deleted
    and the sub-prompt is scored by ``game`` (memoised: a sub-prompt reaches ``f`` once), ``batch_size``
    sub-prompts per call to ``f`` (``None``: all of lime's samples in one call).
    """

    def __init__(self, game: WordGame, mask_string: str = MASK_STRING, *, batch_size: int | None = None):
        if not isinstance(game, WordGame):
            raise TypeError(f"game must be a captum_diffusion.words.WordGame (WordGame(f, prompt)), got "
                            f"{type(game).__name__}")
        if not isinstance(mask_string, str):
            raise TypeError(f"mask_string must be a str, got {type(mask_string).__name__} {mask_string!r}")
        if mask_string.split() != [mask_string]:
            raise ValueError(f"mask_string must be one non-empty token without whitespace (lime splits on whitespace), "
                             f"got {mask_string!r}")
        if mask_string in game.words:
            raise ValueError(f"the prompt contains lime's mask string {mask_string!r}; pass another mask_string")
        self.game = game
        self.mask_string = mask_string
        self.batch_size = checks.optional_positive_int(batch_size, "batch_size")

    def mask_of(self, text: str) -> np.ndarray:
        """The 0/1 word mask ``(d,)`` that lime's perturbed ``text`` encodes."""
        tokens = text.split()
        words = self.game.words
        if len(tokens) != len(words) or any(t != w and t != self.mask_string for t, w in zip(tokens, words)):
            raise ValueError(
                f"texts: lime passed {text!r}, which is not the prompt {self.game.prompt!r} with words replaced by "
                f"{self.mask_string!r}; build the explainer with word_explainer() (bow=False, split on whitespace)"
            )
        return np.array([t != self.mask_string for t in tokens])

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = checks.string_list(texts, "texts", allow_single=False)
        masks = np.array([self.mask_of(t) for t in texts], dtype=bool).reshape(len(texts), self.game.n_words)
        step = self.batch_size or max(len(masks), 1)
        return np.concatenate([self.game(masks[i : i + step]) for i in range(0, len(masks), step)]
                              or [np.zeros(0)])[:, None]


class WordDomainMapper(TextDomainMapper):
    """lime's text domain mapper, naming features by their word labels (``word_labels``: ``a#0``, ``a#1`` for a
    repeated word), so ``as_list`` and lime's plots tell repeated words apart."""

    def __init__(self, indexed_string, labels: Sequence[str]):
        super().__init__(indexed_string)
        self.labels = list(labels)

    def map_exp_ids(self, exp, positions=False):
        if positions:
            return super().map_exp_ids(exp, positions=True)
        return [(self.labels[position], weight) for position, weight in exp]


def word_explainer(*, seed: int | np.random.RandomState | None = 0, **kwargs) -> LimeTextExplainer:
    """A ``LimeTextExplainer`` whose features are the whitespace words of a prompt, by position.

    ``kwargs`` go to ``LimeTextExplainer`` (``kernel_width``, ``feature_selection``, ...); ``split_expression``,
    ``bow``, ``mask_string`` and ``char_level`` are fixed here because the word adapter relies on them.
    ``seed`` is lime's ``random_state``.
    """
    fixed = {"split_expression", "bow", "mask_string", "char_level"} & set(kwargs)
    if fixed:
        raise TypeError(f"word_explainer fixes {sorted(fixed)}; do not pass them")
    seed = checks.random_state(seed, "seed")
    if "kernel_width" in kwargs:
        kwargs["kernel_width"] = checks.finite_number(kwargs["kernel_width"], "kernel_width", low=0.0, low_open=True)
    return LimeTextExplainer(
        split_expression=SPLIT_EXPRESSION, bow=False, mask_string=MASK_STRING, random_state=seed, **kwargs
    )


def explain_prompt(
    prompt: str,
    f: PromptFunction,
    num_samples: int = 200,
    *,
    batch_size: int | None = None,
    seed: int | np.random.RandomState | None = 0,
    kernel_width: float = 25,
    feature_selection: str = "none",
) -> Explanation:
    """LIME weights of the words of ``prompt`` for the black box ``f`` (sub-prompts -> scores ``(n,)``).

    Parameters
    ----------
    prompt : str
        The prompt; its ``d`` whitespace words are the features.
    f : PromptFunction
        The black box: a list of ``n`` sub-prompts -> scores ``(n,)``, e.g. a ``PromptScore``.
    num_samples : int
        Perturbed prompts scored (the first is the full prompt; at least ``d + 1`` for ``d`` words, which a
        regression over the words needs), each distinct sub-prompt once.
    batch_size : int, optional
        Sub-prompts per call to ``f`` (``None``: all at once).
    seed : int or numpy.random.RandomState, optional
        lime's ``random_state``.
    kernel_width : float
        lime's kernel width (in lime's cosine distance x 100 units, > 0).
    feature_selection : {"none", "auto", "forward_selection", "highest_weights", "lasso_path"}
        lime's feature selection ("none": every word gets a weight).

    Returns
    -------
    lime.explanation.Explanation
        lime's explanation for label 0 with every word as a feature; ``word_weights`` gives the
        weights ``(d,)`` in word order, ``explanation.as_list(label=0)`` as ``(label, weight)`` pairs (labels from
        ``word_labels``).
    """
    game = WordGame(f, prompt)
    num_samples = checks.int_at_least(num_samples, game.n_words + 1, f"num_samples (the prompt plus perturbations; "
                                      f"a regression over {game.n_words} words needs at least d + 1)")
    seed = checks.random_state(seed, "seed")
    batch_size = checks.optional_positive_int(batch_size, "batch_size")
    kernel_width = checks.finite_number(kernel_width, "kernel_width", low=0.0, low_open=True)
    checks.one_of(feature_selection, ("none", "auto", "forward_selection", "highest_weights", "lasso_path"),
                  "feature_selection")
    explainer = word_explainer(seed=seed, kernel_width=kernel_width, feature_selection=feature_selection)
    explanation = explainer.explain_instance(game.prompt, WordClassifierFn(game, batch_size=batch_size),
                                             labels=(0,), num_features=game.n_words, num_samples=num_samples)
    explanation.domain_mapper = WordDomainMapper(explanation.domain_mapper.indexed_string, word_labels(game.words))
    return explanation


def word_weights(explanation: Explanation, label: int = 0) -> np.ndarray:
    """Per-word LIME weights of ``explanation``, float64 ``(d,)`` in the prompt's word order (0 for a word
    that lime left out of the explanation)."""
    if not isinstance(explanation, Explanation) or not hasattr(explanation.domain_mapper, "indexed_string"):
        raise TypeError(f"explanation must be the lime Explanation of lime_adapters.explain_prompt, got "
                        f"{type(explanation).__name__}")
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise TypeError(f"label must be an int (0 for explain_prompt's score), got {type(label).__name__} {label!r}")
    if label not in explanation.local_exp:
        raise ValueError(f"explanation has no label {label}; it explains labels {sorted(explanation.local_exp)}")
    weights = np.zeros(explanation.domain_mapper.indexed_string.num_words())
    for position, weight in explanation.local_exp[label]:
        weights[position] = weight
    return weights
