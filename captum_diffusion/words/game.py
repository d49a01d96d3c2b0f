"""Prompt words as players: the Gupta & Kanoria definition (whitespace split; "cat's" is one word).

The one place where a black box ``f: Sequence[str] -> np.ndarray (n,)`` is evaluated on word masks: every
adapter (shap, lime, captum, the axiom checks) goes through :func:`evaluate_masks` / :class:`WordGame`.
"""
from __future__ import annotations

import itertools
import string
from typing import Sequence

import numpy as np

from captum_diffusion import checks
from captum_diffusion.protocols import PromptFunction

#: Exact Shapley values (exact SHAP, exact interactions, deletion curves) are computed up to this many words:
#: ``2**12 = 4096`` sub-prompts per seed. The one home of this limit (shap_adapters, ``words.interactions`` and the
#: runs wing import it).
MAX_EXACT_WORDS = 12
#: :meth:`WordGame.all_coalitions` enumerates at most this many words (``2**16`` sub-prompts), whatever the budget.
MAX_ENUMERABLE_WORDS = 16


def split_words(prompt: str, name: str = "prompt") -> list[str]:
    """Split ``prompt`` on whitespace into the words that act as players.

    Raises ``ValueError`` for an empty or whitespace-only prompt and ``TypeError`` for a non-string (messages name
    the argument ``name``).
    """
    if not isinstance(prompt, str):
        hint = " (decode bytes first)" if isinstance(prompt, (bytes, bytearray)) else ""
        raise TypeError(f"{name} must be a str, got {type(prompt).__name__} {prompt!r}{hint}")
    words = prompt.split()
    if not words:
        raise ValueError(f"{name} is empty or whitespace-only ({prompt!r}); give at least one word, e.g. 'a red circle'")
    return words


def word_key(word: str) -> str:
    """Matching key of a word: lowercase, punctuation stripped at both ends (kept if nothing else is left), so
    ``"Dog,"`` and ``"dog"`` are the same word and ``"hotdog"`` another."""
    if not isinstance(word, str):
        raise TypeError(f"word must be a str, got {type(word).__name__} {word!r}")
    stripped = word.lower().strip(string.punctuation)
    return stripped or word.lower()


def word_labels(words: Sequence[str]) -> list[str]:
    """One label per word, the one naming scheme everywhere (DAAM maps, shap feature names, lime, reports): the
    word itself, or ``word#k`` (``k`` = occurrence, from 0) when its ``word_key`` occurs more than once."""
    keys = [word_key(w) for w in checks.string_list(words, "words", allow_single=False)]
    return [f"{w}#{keys[:i].count(keys[i])}" if keys.count(keys[i]) > 1 else w for i, w in enumerate(words)]


def subprompt(words: Sequence[str], mask: Sequence) -> str:
    """The sub-prompt of ``words`` kept by ``mask`` (truthy = present), in order, joined by single spaces.

    The all-false mask gives the empty prompt ``""`` (the empty coalition: an unconditional generation).
    """
    words = _word_list(words)
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    if isinstance(mask, (str, bytes)) or not hasattr(mask, "__len__"):
        raise ValueError(f"mask must be one 0/1 entry per word, shape ({len(words)},), got {mask!r}")
    if len(mask) != len(words):
        raise ValueError(f"mask has {len(mask)} entries but the prompt has {len(words)} words {list(words)}")
    rows = checks.binary_matrix(mask, len(words), "mask", "word")
    if rows.shape[0] != 1:
        raise ValueError(f"mask must be one 0/1 entry per word, shape ({len(words)},), got shape {np.shape(mask)}")
    return _subprompt(words, rows[0])


def _subprompt(words: Sequence[str], mask: np.ndarray) -> str:
    return " ".join(word for word, keep in zip(words, mask) if keep)


def as_words(prompt_or_words: str | Sequence[str], name: str = "prompt") -> list[str]:
    """Words of a prompt string (via :func:`split_words`) or a validated copy of a list of words; messages name the
    argument ``name``."""
    if isinstance(prompt_or_words, str):
        return split_words(prompt_or_words, name)
    if isinstance(prompt_or_words, (bytes, bytearray)) or prompt_or_words is None:
        raise TypeError(f"{name} must be a str or a sequence of words (str), got {type(prompt_or_words).__name__} "
                        f"{prompt_or_words!r}")
    words = checks.string_list(prompt_or_words, name, allow_single=False)
    if not words:
        raise ValueError(f"{name} is an empty list of words; give at least one word")
    for word in words:
        if not word or word.split() != [word]:
            raise ValueError(f"each word of {name} must be a non-empty str without whitespace, got {word!r} in {words}")
    return words


def as_mask_matrix(masks, n_words: int) -> np.ndarray:
    """Validate word masks and return them as a bool array of shape ``(n, n_words)``.

    ``masks``: array-like or torch tensor of 0/1 (or bool) values, shape ``(n, n_words)`` or ``(n_words,)``.
    """
    n_words = checks.int_at_least(n_words, 0, "n_words")
    return checks.binary_matrix(masks, n_words, "masks", "word")


def _validated_scores(values, prompts: Sequence[str]) -> np.ndarray:
    """``f``'s output for ``prompts`` as float64 ``(n,)``; ``(n, 1)`` is accepted; NaN/inf raise."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"f must return numbers, one per prompt; got {type(values).__name__}") from err
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (len(prompts),):
        raise ValueError(
            f"f must return an array of shape (n,) = ({len(prompts)},) for {len(prompts)} prompts, "
            f"got shape {arr.shape}"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        examples = ", ".join(f"{prompts[i]!r} -> {arr[i]}" for i in np.flatnonzero(bad)[:3])
        raise ValueError(f"f returned a non-finite score for {int(bad.sum())} sub-prompt(s): {examples}")
    return arr


def evaluate_prompts(f: PromptFunction, prompts: Sequence[str], memo: dict[str, float] | None = None) -> np.ndarray:
    """``f`` on ``prompts``, calling it at most once, on the distinct prompts not already in ``memo``.

    Returns float64 ``(len(prompts),)``. New values are added to ``memo`` (when given) only after validation.
    """
    _check_f(f)
    prompts = checks.string_list(prompts, "prompts", allow_single=False)
    if memo is not None and not isinstance(memo, dict):
        raise TypeError(f"memo must be a dict (sub-prompt -> score) or None, got {type(memo).__name__}")
    memo = {} if memo is None else memo
    todo = list(dict.fromkeys(p for p in prompts if p not in memo))
    if todo:
        memo.update(zip(todo, _validated_scores(f(todo), todo)))
    return np.array([memo[p] for p in prompts], dtype=np.float64)


def evaluate_masks(
    f: PromptFunction, words: Sequence[str], masks, memo: dict[str, float] | None = None
) -> np.ndarray:
    """The core of every adapter: ``f`` on the sub-prompts that 0/1 word ``masks`` keep.

    Identical sub-prompts are evaluated once; ``f`` is called once at most.

    Parameters
    ----------
    f : PromptFunction
        The black box: a list of ``n`` sub-prompts -> scores ``(n,)``.
    words : sequence of str
        The prompt's words, in order.
    masks : array_like
        ``(n, len(words))`` 0/1 (row ``i``, column ``j`` = word ``j`` present in sample ``i``).
    memo : dict of str to float, optional
        Values of sub-prompts already evaluated; filled with the new ones.

    Returns
    -------
    numpy.ndarray
        float64 ``(n,)``, in the units of ``f``.
    """
    words = _word_list(words)
    matrix = as_mask_matrix(masks, len(words))
    return evaluate_prompts(f, [_subprompt(words, row) for row in matrix], memo)


def _word_list(words) -> list[str]:
    """``words`` checked as a list of words (a str is refused: it is not split here)."""
    if isinstance(words, str):
        raise TypeError(f"words must be a sequence of words, not a single str: wrap it ([{words!r}]) or split it "
                        f"(split_words)")
    return as_words(words, "words")


def _check_f(f) -> None:
    if not callable(f):
        raise TypeError(f"f must be callable: Sequence[str] -> np.ndarray (n,), got {type(f).__name__}")


class WordGame:
    """The cooperative game of one prompt: players are its words, ``v(S) = f(sub-prompt of S)``.

    Callable on 0/1 masks ``(n, d)`` (numpy, list or torch) -> float64 ``(n,)``: this is the ``f_masked`` that
    shap, lime and captum explain. Values are memoised for the life of the game (one prompt, one ``f``), so a
    sub-prompt is sent to ``f`` once however many times an explainer asks for it.

    Parameters
    ----------
    f : PromptFunction
        The black box: a list of ``n`` sub-prompts -> scores ``(n,)``.
    prompt : str or sequence of str
        The prompt, or its words (a ``PromptScore`` as ``f`` must have this prompt).

    Attributes
    ----------
    words : list of str
        The ``d`` words.
    n_calls : int
        Calls made to ``f``.
    n_evaluated : int
        Prompts sent to ``f``.
    evaluated : list of str
        Those prompts, in order.
    """

    def __init__(self, f: PromptFunction, prompt: str | Sequence[str]):
        _check_f(f)
        self.f = f
        self.words = as_words(prompt)
        own = getattr(f, "prompt", None)  # a PromptScore knows its prompt: two different prompts are two games
        if isinstance(own, str) and own.split() != self.words:
            raise ValueError(f"the prompt {' '.join(self.words)!r} differs from the prompt of f ({own!r}); f's "
                             "scores compare each sub-prompt with f's own prompt, so pass that prompt (or none)")
        self.memo: dict[str, float] = {}
        self.evaluated: list[str] = []
        self.n_calls = 0

    def _counted_f(self, prompts: Sequence[str]):
        self.n_calls += 1
        self.evaluated.extend(prompts)
        return self.f(list(prompts))

    @property
    def n_words(self) -> int:
        return len(self.words)

    @property
    def n_evaluated(self) -> int:
        return len(self.evaluated)

    @property
    def prompt(self) -> str:
        return " ".join(self.words)

    def __call__(self, masks) -> np.ndarray:
        return evaluate_masks(self._counted_f, self.words, masks, self.memo)

    def value(self, mask) -> float:
        """``v`` of one coalition given as a 0/1 mask of length ``d``."""
        return float(self(mask)[0])

    def all_coalitions(self) -> tuple[np.ndarray, np.ndarray]:
        """Every coalition: masks bool ``(2**d, d)`` (row ``k`` has word ``j`` iff bit ``j`` of ``k`` is set) and
        their values float64 ``(2**d,)``, in one call to ``f``. Refuses ``d >`` :data:`MAX_ENUMERABLE_WORDS`."""
        if self.n_words > MAX_ENUMERABLE_WORDS:
            raise ValueError(f"enumerating all 2**{self.n_words} coalitions is too many; use at most "
                             f"{MAX_ENUMERABLE_WORDS} words")
        masks = np.array(list(itertools.product((False, True), repeat=self.n_words)), dtype=bool)[:, ::-1]
        return masks, self(masks)


def as_game(f_or_game, prompt=None, name: str = "f") -> "WordGame":
    """``f_or_game`` if it is a :class:`WordGame` (of ``prompt``'s words when given), else ``WordGame(f_or_game,
    prompt)``; ``name`` is the argument's name in error messages."""
    if isinstance(f_or_game, WordGame):
        if prompt is not None and as_words(prompt) != f_or_game.words:
            raise ValueError(f"prompt {prompt!r} does not match the game's words {f_or_game.words}")
        return f_or_game
    if prompt is None:
        raise ValueError(f"prompt is required when {name} is a prompt function (or pass a WordGame as {name})")
    return WordGame(f_or_game, prompt)
