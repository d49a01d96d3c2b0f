"""Shapley interactions between the words of a prompt, with shapiq, over the same word game as SHAP.

The game is the one every explainer plays (:class:`~captum_diffusion.words.WordGame`): players are the prompt's
words, ``v(S) = f(sub-prompt of S)``, a deleted word is removed from the prompt and the empty coalition is the
empty prompt ``""``. Interaction indices say what the Shapley value cannot: whether two words act *together*
("red" and "circle" mean more as "red circle" than each alone: a positive pair value) or are redundant (negative).

``explain_interactions`` returns shapiq's own :class:`shapiq.InteractionValues` (shapiq 1.4 has no field for player
names), so every shapiq plot draws it; pass ``feature_names=word_labels(words)`` to name the words::

    from captum_diffusion.words import explain_interactions, split_words, strongest_pairs, word_labels

    iv = explain_interactions("a red circle and a blue square", f)        # k-SII of order 2, exact
    labels = word_labels(split_words("a red circle and a blue square"))  # a#0, red, circle, and, a#1, ...
    iv[(1, 2)]                                                           # the "red" x "circle" interaction
    strongest_pairs(iv, labels, k=3)                                     # [("red", "circle", 0.21), ...]
    fig, ax = shapiq.network_plot(iv, feature_names=labels)              # or iv.plot_network(feature_names=...)

Cost: exact values need every one of the ``2**d`` sub-prompts, which is exactly what exact SHAP
(``shap_adapters.explain_prompt(..., algorithm="exact")``) evaluates, so with the same ``PromptScore`` (or the same
``TextToImage`` cache) interactions after exact SHAP generate no new image.

Seeds: one image per sub-prompt is one sample of the model. To average over seeds, give an ``f`` that returns the
mean of several ``PromptScore`` (one per seed): every index here (SV, SII, k-SII, STII, FSII) is linear in the
payoff ``v``, so the values of the seed-averaged game equal the mean of the per-seed values (also
``shapiq.interaction_values.aggregate_interaction_values(per_seed, "mean")`` on exact per-seed results).
"""
from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Sequence

import numpy as np
import shapiq
from shapiq import InteractionValues

from captum_diffusion import checks
from captum_diffusion.protocols import PromptFunction
from captum_diffusion.words.game import MAX_ENUMERABLE_WORDS, MAX_EXACT_WORDS, WordGame, as_words

#: The interaction indices :func:`explain_interactions` computes (shapiq's names): k-Shapley interaction index,
#: Shapley-Taylor, Faithful Shapley (Faith-SHAP), Shapley interaction index, and the Shapley value (order 1).
INDICES = ("k-SII", "STII", "FSII", "SII", "SV")

# With the default budget, prompts of up to MAX_EXACT_WORDS words (words.game) are explained exactly (2**12 = 4096
# sub-prompts, the same limit as exact SHAP); longer prompts get an approximation with a budget of 2**12 evaluations.

#: shapiq's approximator per index when the budget does not cover every coalition (all seeded by ``seed``).
APPROXIMATORS = {
    "k-SII": "KernelSHAPIQ",
    "SII": "KernelSHAPIQ",
    "STII": "PermutationSamplingSTII",
    "FSII": "RegressionFSII",
    "SV": "KernelSHAP",  # with shapiq's pairing trick
}


def default_budget(n_words: int) -> int:
    """The budget :func:`explain_interactions` uses when none is given: ``2**d`` up to :data:`MAX_EXACT_WORDS`
    words (exact), else ``2**MAX_EXACT_WORDS`` (what an exact 12-word game costs)."""
    n_words = checks.positive_int(n_words, "n_words")
    return 2 ** min(n_words, MAX_EXACT_WORDS)


def minimum_budget(index: str, order: int, n_words: int) -> int:
    """The fewest evaluations :func:`explain_interactions` lets shapiq's approximator for ``index`` use on
    ``n_words`` words at ``order``.

    Regression estimators (KernelSHAPIQ, RegressionFSII, KernelSHAP): two coalitions per unknown (one unknown per
    interaction of order ``0..order``). With one per unknown the regression is near-singular and shapiq returns
    values off by orders of magnitude without a warning (measured: k-SII errors of 8e6 on 5 words at 17
    evaluations, 0.1 at 25); at two per unknown the largest error on small random games was ~0.1-0.3 of a unit
    pair weight, falling as the budget grows. Permutation STII: the lower orders (``sum C(d, s), s < order``), the
    empty coalition and one permutation (``C(d, order) * 2**order``); below this shapiq returns zeros."""
    if index == "STII":
        return sum(comb(n_words, s) for s in range(order)) + 1 + comb(n_words, order) * 2**order
    return 2 * sum(comb(n_words, s) for s in range(order + 1))


def _check_index_order(index, order, n_words: int) -> tuple[str, int]:
    if not isinstance(index, str):
        raise TypeError(f"index must be a str, one of {INDICES}, got {type(index).__name__} {index!r}")
    checks.one_of(index, INDICES, "index")
    if order is None:
        order = 1 if index == "SV" else min(2, n_words)
    order = checks.positive_int(order, "order")
    if index == "SV" and order != 1:
        raise ValueError(f"order must be 1 for index='SV' (the Shapley value has no pairs), got order={order}; "
                         "use index='k-SII' (or 'STII', 'FSII', 'SII') for interactions")
    if order > n_words:
        raise ValueError(f"order={order} exceeds the number of words ({n_words}); use an order in 1..{n_words}")
    return index, order


def _game(f, prompt) -> WordGame:
    if isinstance(f, WordGame):
        if as_words(prompt) != f.words:
            raise ValueError(f"prompt {prompt!r} does not match the game's words {f.words}")
        return f
    return WordGame(f, prompt)


class _Progress:
    """The game as shapiq calls it, with an optional tqdm bar over the coalitions asked for (per batch)."""

    def __init__(self, game, total: int, enabled: bool):
        self.game = game
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="coalitions", unit="coalition")

    def __call__(self, masks) -> np.ndarray:
        values = self.game(masks)
        if self.bar is not None:
            self.bar.update(len(values))
        return values

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def explain_interactions(
    prompt: str | Sequence[str],
    f: PromptFunction | WordGame,
    index: str = "k-SII",
    order: int | None = None,
    budget: int | None = None,
    *,
    seed: int | None = 0,
    progress: bool = False,
) -> InteractionValues:
    """Shapley interaction values of the words of ``prompt`` for the black box ``f`` (sub-prompts -> ``(n,)``).

    Parameters
    ----------
    prompt : str or sequence of str
        The prompt, or its ``d`` words.
    f : PromptFunction or WordGame
        A prompt function (e.g. a ``PromptScore``, or a callable averaging several of them over seeds: the
        indices are linear in the payoff, so the result is the mean of the per-seed results), or a
        :class:`~captum_diffusion.words.WordGame` of this prompt (its memo is reused).
    index : {"k-SII", "STII", "FSII", "SII", "SV"}
        One of :data:`INDICES`: "k-SII" (default; efficient: all values of order ``1..order`` sum to
        ``f(prompt) - f("")``), "STII" (Shapley-Taylor), "FSII" (Faith-SHAP), "SII" (not efficient), "SV"
        (Shapley values, order 1).
    order : int, optional
        The largest interaction size (``None``: 2, or 1 for "SV"; at most ``d``); "k-SII" of order 1 is the
        Shapley value (shapiq then reports ``index="SV"``).
    budget : int, optional
        Evaluations of the game (sub-prompts) allowed. When ``2**d <= budget`` (and ``d <= 16``) the values
        are exact: every sub-prompt is evaluated in one batched call to ``f`` and ``shapiq.ExactComputer``
        computes the index from the table. Otherwise the approximator :data:`APPROXIMATORS` ``[index]`` runs with
        this budget, seeded with ``seed``; at least :func:`minimum_budget` evaluations (``ValueError`` below).
        Default (:func:`default_budget`): ``2**d`` up to :data:`MAX_EXACT_WORDS` words, so prompts of up to 12
        words are always exact (and free after exact SHAP on the same ``f``: the same sub-prompts, cached);
        ``2**12`` above.
    seed : int, optional
        The approximator's seed.
    progress : bool
        A tqdm bar over the coalitions evaluated.

    Returns
    -------
    shapiq.InteractionValues
        ``iv[(i, j)]`` is the interaction of words ``i`` and ``j`` (0-based positions in
        ``split_words(prompt)``), ``iv[(i,)]`` a word's own value, both in the units of ``f``;
        ``iv.baseline_value`` is ``f("")``, ``iv.estimated`` tells exact from approximate, ``iv.n_players == d``.
        It carries no word names: pass ``feature_names=word_labels(split_words(prompt))`` to shapiq's plots
        (``shapiq.network_plot``, ``iv.plot_force``, ``iv.plot_upset``, ...) and ``labels`` to
        :func:`strongest_pairs`. For "SII" the entry ``iv[()]`` is the SII of the empty set, not ``f("")``.
    """
    game = _game(f, prompt)
    d = game.n_words
    index, order = _check_index_order(index, order, d)
    if budget is None:
        budget = default_budget(d)
    elif not isinstance(budget, (int, np.integer)) or isinstance(budget, bool):
        raise TypeError(f"budget must be an int (evaluations of the game) or None, got {type(budget).__name__} "
                        f"{budget!r}")
    budget = checks.positive_int(int(budget), "budget")
    seed = None if seed is None else checks.seed(seed)
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be a bool, got {type(progress).__name__} {progress!r}")

    exact = budget >= 2**d and d <= MAX_ENUMERABLE_WORDS
    if not exact:
        least = minimum_budget(index, order, d)
        if budget < least:
            raise ValueError(
                f"budget={budget} is too small to approximate {index} of order {order} over {d} words with "
                f"shapiq.{APPROXIMATORS[index]}: it needs at least {least} evaluations"
                + (f" (or 2**{d} = {2 ** d} for exact values)" if d <= MAX_ENUMERABLE_WORDS else "")
            )
    tracked = _Progress(game, 2**d if exact else budget, bool(progress))
    try:
        if exact:
            return _exact(tracked, d, index, order)
        return _approximate(tracked, d, index, order, budget, seed)
    finally:
        tracked.close()


def _exact(tracked: _Progress, d: int, index: str, order: int) -> InteractionValues:
    """``shapiq.ExactComputer`` over the table of all ``2**d`` coalition values (``WordGame.all_coalitions``)."""
    _, values = tracked.game.all_coalitions()  # one batched call to f (none when the memo holds them all)
    if tracked.bar is not None:
        tracked.bar.update(len(values))
    bits = 1 << np.arange(d)  # row k of all_coalitions has word j iff bit j of k is set

    def lookup(coalitions) -> np.ndarray:
        return values[np.atleast_2d(np.asarray(coalitions, dtype=bool)).astype(np.int64) @ bits]

    return _dense(shapiq.ExactComputer(lookup, n_players=d)(index, order))


def _dense(iv: InteractionValues) -> InteractionValues:
    """``iv`` with every interaction of its orders listed, zeros included. shapiq's exact k-SII leaves zeros out,
    and its network plot draws only the words it finds listed (a word of value 0 would vanish from the plot)."""
    keys = list(shapiq.powerset(range(iv.n_players), min_size=iv.min_order, max_size=iv.max_order))
    if len(keys) == len(iv.interaction_lookup):
        return iv
    return InteractionValues(
        np.array([iv[key] for key in keys], dtype=np.float64), index=iv.index, max_order=iv.max_order,
        n_players=iv.n_players, min_order=iv.min_order, interaction_lookup={key: k for k, key in enumerate(keys)},
        estimated=iv.estimated, estimation_budget=iv.estimation_budget, baseline_value=iv.baseline_value,
    )


def _approximate(tracked: _Progress, d: int, index: str, order: int, budget: int,
                 seed: int | None) -> InteractionValues:
    name = APPROXIMATORS[index]
    if name == "KernelSHAPIQ":
        approximator = shapiq.KernelSHAPIQ(d, max_order=order, index=index, random_state=seed)
    elif name == "PermutationSamplingSTII":
        approximator = shapiq.PermutationSamplingSTII(d, max_order=order, random_state=seed)
    elif name == "RegressionFSII":
        approximator = shapiq.RegressionFSII(d, max_order=order, random_state=seed)
    else:  # paired (antithetic) coalitions: the best Shapley values per image measured (benchmarks/estimators.py)
        approximator = shapiq.KernelSHAP(d, pairing_trick=True, random_state=seed)
    kwargs = {"batch_size": budget} if name == "PermutationSamplingSTII" else {}  # one call per batch of permutations
    return _dense(approximator(budget=budget, game=tracked, **kwargs))


def strongest_pairs(interaction_values: InteractionValues, labels: Sequence[str], k: int = 5
                    ) -> list[tuple[str, str, float]]:
    """The ``k`` pair interactions of largest magnitude: ``[(label_i, label_j, value), ...]``, strongest first
    (ties in word order); ``value`` keeps its sign (positive: the words act together, negative: redundant).

    ``labels``: one name per player, e.g. ``word_labels(split_words(prompt))``. Returns fewer than ``k`` when there
    are fewer pairs. ``ValueError`` for values without pairs (order 1) or labels of the wrong length."""
    if not isinstance(interaction_values, InteractionValues):
        raise TypeError(f"interaction_values must be a shapiq.InteractionValues (from explain_interactions), got "
                        f"{type(interaction_values).__name__}")
    labels = checks.string_list(labels, "labels", allow_single=False)
    if len(labels) != interaction_values.n_players:
        raise ValueError(f"labels has {len(labels)} names but the interaction values have "
                         f"{interaction_values.n_players} players")
    k = checks.positive_int(k, "k")
    if interaction_values.max_order < 2:
        raise ValueError(f"interaction_values has no pairs (index {interaction_values.index!r} of order "
                         f"{interaction_values.max_order}); compute order >= 2, e.g. explain_interactions(..., "
                         "index='k-SII', order=2)")
    # every pair: shapiq leaves zeros out of some results (exact k-SII), and reads a missing one as 0
    pairs = list(combinations(range(interaction_values.n_players), 2))
    values = {key: float(interaction_values[key]) for key in pairs}
    ranked = sorted(pairs, key=lambda key: -abs(values[key]))  # stable: ties stay in word order
    return [(labels[i], labels[j], values[(i, j)]) for i, j in ranked[:k]]


def pair_interactions(game: WordGame, labels: Sequence[str] | None = None, k: int = 5, *, index: str = "k-SII"
                      ) -> list[tuple[str, str, float]]:
    """The ``k`` strongest word pairs of a played word game: exact ``index`` of order 2, then :func:`strongest_pairs`.

    Parameters
    ----------
    game : WordGame
        The game, e.g. one read from stored sub-prompt payoffs (``captum_diffusion.runs.store.played_game``): with
        its memo filled, nothing is generated.
    labels : sequence of str, optional
        One name per word; default ``word_labels(game.words)`` (``a#0``, ``a#1`` for a repeated "a").
    k : int, optional
        How many pairs; fewer when there are fewer pairs.
    index : str, optional
        An interaction index of :data:`INDICES` with pairs ("k-SII", "STII", "FSII", "SII").

    Returns
    -------
    list of tuple of (str, str, float)
        ``(label_i, label_j, value)``, largest ``|value|`` first, value in payoff units (positive: the two words
        act together; negative: redundant).
    """
    if not isinstance(game, WordGame):
        raise TypeError(f"game must be a WordGame, got {type(game).__name__}")
    from captum_diffusion.words.game import word_labels

    labels = word_labels(game.words) if labels is None else labels
    return strongest_pairs(explain_interactions(game.words, game, index, order=2), labels, k=k)
