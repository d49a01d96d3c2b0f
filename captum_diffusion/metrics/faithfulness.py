"""Faithfulness of word attributions: does deleting the words an explanation ranks first change the payoff most?

All checks play the word game ``v(S) = f(sub-prompt of S)`` (:class:`~captum_diffusion.words.WordGame`, the empty
prompt ``""`` being the empty coalition), so they measure the attribution against the very game it explains.
Words are taken in the attribution's order: largest *signed* attribution first, ties (within ``1e-4`` of the
largest magnitude: rounding noise) in word order (:func:`attribution_order`).

- :func:`deletion_curve`: ``v`` after deleting the top ``0, 1, ..., d`` words, float ``(d+1,)`` from ``v(all)`` to
  ``v(none)``; :func:`insertion_curve`: ``v`` after keeping only the top ``0..d`` words, from ``v(none)`` to ``v(all)``.
- :func:`aopc` (area over the perturbation curve, Samek et al. 2017), normalised by ``d+1``: deletion
  ``mean_t [v(all) - deletion[t]]``, insertion ``mean_t [insertion[t] - v(none)]``; higher = more faithful.
- :func:`comprehensiveness` ``v(all) - v(all minus the top k)`` (higher is better) and :func:`sufficiency`
  ``v(all) - v(top k only)`` (lower is better), DeYoung et al. 2020 (ERASER).

Each score comes with the same score for random orderings of the words (:class:`FaithfulnessScore`: mean, std and
the fraction of random orderings the attribution beats), which is what makes a number readable: an AOPC of 0.1
says little until one knows what random orderings score on the same game. Random orderings are every one of the ``d!`` orderings when
``d! <= n_random``, else ``n_random`` orderings drawn uniformly with ``numpy.random.default_rng(seed)``.

Cost: each score sends the coalitions it needs (the attribution's and the random orderings') to ``f`` in one
batched call, through the game's memo. Pass a ``WordGame`` that has played all coalitions, or the same ``PromptScore``
that exact SHAP used (it remembers every sub-prompt's score), and nothing new is generated.

``attributions``: a numpy array / list / torch tensor ``(d,)``, a single-row ``shap.Explanation`` (``.values``),
a captum result with ``.seq_attr`` (``WordAttributionResult``), or a ``shapiq.InteractionValues`` (its order-1
values). lime: pass ``lime_adapters.text.word_weights(explanation)``.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from captum_diffusion import checks
from captum_diffusion.metrics.ranking import as_vector
from captum_diffusion.words import PromptFunction, WordGame, as_game, word_labels

#: Random orderings compared with by default.
N_RANDOM = 200

KINDS = ("deletion", "insertion")


@dataclass(frozen=True, eq=False)
class FaithfulnessScore:
    """One faithfulness score of an attribution beside the same score for random word orderings.

    ``metric``: its name ("aopc_deletion", "aopc_insertion", "comprehensiveness", "sufficiency"); ``value``: the
    attribution's score (units of ``f``); ``higher_is_better``; ``random_values``: the score of each random ordering
    (float ``(n,)``), summarised by ``random_mean`` and ``random_std`` (population std); ``k``: the number of top
    words (comprehensiveness and sufficiency; ``None`` for AOPC).

    ``margin``: how much better than the random mean (``value - random_mean``, sign flipped when lower is better,
    so positive always means better than random). ``beats_random``: fraction of random orderings the attribution
    does better than (ties count half), in ``[0, 1]``.
    """

    metric: str
    value: float
    higher_is_better: bool
    random_values: np.ndarray = field(repr=False)
    k: int | None = None

    @property
    def random_mean(self) -> float:
        return float(np.mean(self.random_values))

    @property
    def random_std(self) -> float:
        return float(np.std(self.random_values))

    @property
    def n_random(self) -> int:
        return int(len(self.random_values))

    @property
    def margin(self) -> float:
        diff = self.value - self.random_mean
        return float(diff if self.higher_is_better else -diff)

    @property
    def beats_random(self) -> float:
        sign = 1.0 if self.higher_is_better else -1.0
        better = np.sign(sign * (self.value - self.random_values))  # 1 better, 0 tie, -1 worse
        return float(np.mean((better + 1) / 2))

    def __repr__(self) -> str:
        k = f", k={self.k}" if self.k is not None else ""
        return (f"FaithfulnessScore({self.metric}{k}: {self.value:.4g} vs random {self.random_mean:.4g} "
                f"+- {self.random_std:.4g} over {self.n_random}, beats {self.beats_random:.0%})")


# ------------------------------------------------------------------------------------------------ inputs

def _vector(attributions) -> np.ndarray:
    """Attributions as float ``(d,)``: an array, a shap Explanation's ``.values``, a captum result's ``.seq_attr``,
    or a shapiq ``InteractionValues``' order-1 values."""
    if _is_interaction_values(attributions):
        return np.array([attributions[(i,)] for i in range(attributions.n_players)], dtype=np.float64)
    return as_vector(attributions, "attributions")


def _setup(game_or_f: PromptFunction | WordGame, prompt, attributions) -> tuple[WordGame, np.ndarray]:
    """The game and the attributions as float ``(d,)``, checked against the prompt's words."""
    game = as_game(game_or_f, prompt, "game_or_f")
    phi = _vector(attributions)
    if phi.size != game.n_words:
        raise ValueError(f"attributions has {phi.size} values but the prompt has {game.n_words} words")
    labels = word_labels(game.words)
    # a captum result names its words (input_tokens), a shap Explanation too (feature_names): they must match
    names = getattr(attributions, "input_tokens", None)
    if names is None and hasattr(attributions, "base_values"):
        names = getattr(attributions, "feature_names", None)
    if names is not None and list(names) != labels:
        raise ValueError(f"attributions are for the words {list(names)} but the prompt's words are {labels}")
    return game, phi


def _is_interaction_values(value) -> bool:
    try:
        from shapiq import InteractionValues
    except ImportError:  # pragma: no cover - shapiq is a dependency
        return False
    return isinstance(value, InteractionValues)


def attribution_order(attributions, *, rtol: float = 1e-4) -> np.ndarray:
    """Word indices from the largest signed attribution to the smallest: int ``(d,)``.

    Ties go in word order. Values within ``rtol * max|attribution|`` of their neighbour in sorted order count as
    tied, so rounding noise does not reorder words with equal values: captum sums Shapley contributions in float32
    (measured: up to 2.6e-5 of the largest value on 7 words, enough to swap two words whose exact values are equal,
    which moved the deletion AOPC from 0.788 to 0.819 on that game)."""
    phi = _vector(attributions)
    rtol = checks.finite_number(rtol, "rtol", low=0.0)
    order = np.argsort(-phi, kind="stable")
    tolerance = rtol * float(np.abs(phi).max())
    group = np.concatenate([[0], np.cumsum(-np.diff(phi[order]) > tolerance)])  # a new group after each real drop
    return order[np.lexsort((order, group))]


def _orderings(d: int, n_random: int, seed: int) -> np.ndarray:
    """Random orderings ``(n, d)``: all ``d!`` when ``d! <= n_random``, else ``n_random`` uniform draws."""
    if math.factorial(d) <= n_random:
        return np.array(list(itertools.permutations(range(d))), dtype=np.int64).reshape(-1, d)
    rng = np.random.default_rng(seed)
    return np.array([rng.permutation(d) for _ in range(n_random)], dtype=np.int64)


def _curve_masks(orders: np.ndarray, kind: str) -> np.ndarray:
    """Masks ``(n, d+1, d)``: row ``t`` keeps every word but the first ``t`` of the ordering (deletion) or only
    the first ``t`` (insertion)."""
    n, d = orders.shape
    first = np.zeros((n, d + 1, d), dtype=bool)  # first[:, t, j]: word j is among the first t of the ordering
    rank = np.empty_like(orders)
    np.put_along_axis(rank, orders, np.arange(d)[None, :].repeat(n, 0), axis=1)  # rank[j] = position of word j
    first[:] = rank[:, None, :] < np.arange(d + 1)[None, :, None]
    return ~first if kind == "deletion" else first


def _curves(game: WordGame, orders: np.ndarray, kind: str) -> np.ndarray:
    """Curves ``(n, d+1)`` of ``kind`` for each ordering, all coalitions in one call to the game."""
    masks = _curve_masks(orders, kind)
    n, steps, d = masks.shape
    return game(masks.reshape(n * steps, d)).reshape(n, steps)


def _check_kind(kind) -> str:
    return checks.one_of(kind, KINDS, "kind")


def _check_random(n_random, seed) -> tuple[int, int]:
    return checks.positive_int(n_random, "n_random"), checks.seed(seed)


def _check_k(k, d: int) -> int:
    k = checks.positive_int(k, "k")
    if k > d:
        raise ValueError(f"k={k} exceeds the number of words ({d}); use k in 1..{d}")
    return k


# ------------------------------------------------------------------------------------------------ curves

def deletion_curve(game_or_f: PromptFunction | WordGame, prompt: str | Sequence[str] | None,
                   attributions) -> np.ndarray:
    """``v`` after deleting the attribution's top ``t`` words, ``t = 0..d``: float ``(d+1,)``, from ``v(all)`` (the
    full prompt) to ``v(none)`` (``f("")``). A faithful attribution makes it fall fast."""
    game, phi = _setup(game_or_f, prompt, attributions)
    return _curves(game, attribution_order(phi)[None], "deletion")[0]


def insertion_curve(game_or_f: PromptFunction | WordGame, prompt: str | Sequence[str] | None,
                    attributions) -> np.ndarray:
    """``v`` of the sub-prompt of the attribution's top ``t`` words only, ``t = 0..d``: float ``(d+1,)``, from
    ``v(none)`` to ``v(all)``. A faithful attribution makes it rise fast."""
    game, phi = _setup(game_or_f, prompt, attributions)
    return _curves(game, attribution_order(phi)[None], "insertion")[0]


def random_order_curves(game_or_f: PromptFunction | WordGame, prompt: str | Sequence[str] | None,
                        kind: str = "deletion", *, n_random: int = N_RANDOM, seed: int = 0) -> np.ndarray:
    """Deletion (or ``"insertion"``) curves of random word orderings: float ``(n, d+1)`` (all ``d!`` orderings
    when ``d! <= n_random``), the reference band for :func:`deletion_curve` / :func:`insertion_curve` plots."""
    kind = _check_kind(kind)
    n_random, seed = _check_random(n_random, seed)
    game = as_game(game_or_f, prompt, "game_or_f")
    return _curves(game, _orderings(game.n_words, n_random, seed), kind)


def _aopc_of(curves: np.ndarray, kind: str) -> np.ndarray:
    """AOPC per curve ``(n, d+1)`` -> ``(n,)``: deletion ``mean(v(all) - curve)``, insertion
    ``mean(curve - v(none))``."""
    if kind == "deletion":
        return (curves[:, :1] - curves).mean(axis=1)
    return (curves - curves[:, :1]).mean(axis=1)


# ------------------------------------------------------------------------------------------------ scores

def aopc(game_or_f: PromptFunction | WordGame, prompt: str | Sequence[str] | None, attributions, *,
         kind: str = "deletion", n_random: int = N_RANDOM, seed: int = 0) -> FaithfulnessScore:
    """Area over the perturbation curve, normalised by ``d+1``, against random orderings.

    ``kind="deletion"``: ``mean_t [v(all) - deletion_curve[t]]``; ``"insertion"``: ``mean_t [insertion_curve[t] -
    v(none)]``; both higher = more faithful. ``n_random`` orderings drawn with ``seed`` (every ordering when
    ``d! <= n_random``)."""
    kind = _check_kind(kind)
    n_random, seed = _check_random(n_random, seed)
    game, phi = _setup(game_or_f, prompt, attributions)
    orders = np.concatenate([attribution_order(phi)[None], _orderings(game.n_words, n_random, seed)])
    scores = _aopc_of(_curves(game, orders, kind), kind)
    return FaithfulnessScore(f"aopc_{kind}", float(scores[0]), True, scores[1:])


def _top_k_score(game_or_f, prompt, attributions, k, n_random, seed, metric: str) -> FaithfulnessScore:
    n_random, seed = _check_random(n_random, seed)
    game, phi = _setup(game_or_f, prompt, attributions)
    d = game.n_words
    k = _check_k(k, d)
    orders = np.concatenate([attribution_order(phi)[None], _orderings(d, n_random, seed)])
    top = np.zeros((len(orders), d), dtype=bool)
    np.put_along_axis(top, orders[:, :k], True, axis=1)
    kept = ~top if metric == "comprehensiveness" else top
    full, *values = game(np.concatenate([np.ones((1, d), dtype=bool), kept]))
    scores = full - np.asarray(values)
    higher = metric == "comprehensiveness"
    return FaithfulnessScore(metric, float(scores[0]), higher, scores[1:], k)


def comprehensiveness(game_or_f: PromptFunction | WordGame, prompt: str | Sequence[str] | None, attributions, *,
                      k: int = 1, n_random: int = N_RANDOM, seed: int = 0) -> FaithfulnessScore:
    """``v(all) - v(all but the top k words)``: what deleting the ``k`` words ranked first costs; higher = more
    faithful. Random orderings delete ``k`` random words."""
    return _top_k_score(game_or_f, prompt, attributions, k, n_random, seed, "comprehensiveness")


def sufficiency(game_or_f: PromptFunction | WordGame, prompt: str | Sequence[str] | None, attributions, *,
                k: int = 1, n_random: int = N_RANDOM, seed: int = 0) -> FaithfulnessScore:
    """``v(all) - v(the top k words only)``: how far the ``k`` words ranked first fall short of the full prompt;
    lower = more faithful (0: they suffice). Random orderings keep ``k`` random words."""
    return _top_k_score(game_or_f, prompt, attributions, k, n_random, seed, "sufficiency")


def faithfulness_scores(game_or_f: PromptFunction | WordGame, prompt: str | Sequence[str] | None, attributions, *,
                        k: int = 1, n_random: int = N_RANDOM, seed: int = 0) -> dict[str, FaithfulnessScore]:
    """All four scores on one game: ``{"aopc_deletion", "aopc_insertion", "comprehensiveness", "sufficiency"}``
    -> :class:`FaithfulnessScore` (same random orderings for each)."""
    game = as_game(game_or_f, prompt, "game_or_f")
    scores = {f"aopc_{kind}": aopc(game, None, attributions, kind=kind, n_random=n_random, seed=seed)
              for kind in KINDS}
    for metric in ("comprehensiveness", "sufficiency"):
        scores[metric] = _top_k_score(game, None, attributions, k, n_random, seed, metric)
    return scores


def deletion_curves(game_or_f: PromptFunction | WordGame, prompt: str | Sequence[str] | None, attributions, *,
                    n_random: int = N_RANDOM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The attribution's deletion curve and the random orderings' curves: what a deletion plot shows.

    Parameters
    ----------
    game_or_f : WordGame or prompt function
        The game (or ``f``, with ``prompt``) the attribution explains.
    prompt : str or sequence of str or None
        The prompt when ``game_or_f`` is a function; ``None`` for a game.
    attributions : array_like or explanation
        ``(d,)`` word values (see the module docstring for the accepted types).
    n_random : int, optional
        Random orderings drawn (all ``d!`` when ``d! <= n_random``).
    seed : int, optional
        Seed of ``numpy.random.default_rng`` for the orderings.

    Returns
    -------
    curve : numpy.ndarray
        float ``(d+1,)``, :func:`deletion_curve`.
    random_curves : numpy.ndarray
        float ``(n, d+1)``, :func:`random_order_curves` of kind ``"deletion"``.
    """
    game, phi = _setup(game_or_f, prompt, attributions)
    return deletion_curve(game, None, phi), random_order_curves(game, None, n_random=n_random, seed=seed)
