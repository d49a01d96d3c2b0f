"""Multi-fidelity Shapley values: cheap proxy images for every sub-prompt, full images for a few, with certainty.

Shapley values are linear in the payoff, so for a full game ``v`` (images at the user's settings) and a proxy game
``p`` (the same sub-prompts and seeds, cheaper images: fewer denoising steps, a smaller size)::

    phi(v) = beta * phi(p) + phi(v - beta * p)

The proxy term is exact: ``p`` is played on all ``2**d`` coalitions. The correction ``phi(v - beta * p)`` is
estimated from a few full images by a stratified, paired sampler, which suits a correction that varies little:

- *paired*: a coalition ``T`` and its complement ``N \\ T`` are evaluated together. In the Shapley formula they
  carry the same weight with opposite signs, so a sampled pair contributes ``w_i(T) * (r(T) - r(N \\ T))`` to
  word ``i`` (``w_i(T) = (|T|-1)! (d-|T|)! / d!`` when ``i`` is in ``T``, ``-|T|! (d-|T|-1)! / d!`` otherwise),
  and what the two share cancels;
- *stratified*: pairs are drawn without replacement within each size ``k = |T| <= d/2``; the strata of small
  coalitions (few, heavily weighted) are filled first, by the greedy rule that adds the pair which reduces the
  variance most (Neyman allocation), so at a budget that covers a stratum it is enumerated and exact;
- the efficiency total ``v(N) - v(empty)`` is exact: both end coalitions are always evaluated in full;
- the estimate of a stratum's contribution is the Horvitz-Thompson total over the sampled pairs (unbiased for
  any budget; centring the pair differences on their stratum mean was measured to bias small samples), and its
  sampling variance is the stratified without-replacement formula, so a stratum evaluated completely has none.
  When the budget covers every coalition the result is the exact Shapley value;
- *additive control* (``additive_control=True``): an additive game fitted to one half of the sampled pairs (with an
  offset per size) is subtracted from the other half's and its Shapley value, known exactly, added; the halves
  swap (cross-fitting keeps the estimate unbiased). What is additive then costs no sampling error, which is
  KernelSHAP's strength, and the standard error is that of the residuals.

Measured on ShapesWorld (``benchmarks/cost.md``): its few-step proxies correlate weakly with the full game (payoff
r = 0.24-0.93), so there the sampler without a proxy (``proxy=None``) is the better use of a budget; a proxy pays
only when it correlates closely with the full game and costs little.

When the budget cannot pay the proxy on every coalition (``proxy_fraction < 1``), the proxy term is sampled too:
the proxy plays a share of each stratum's pairs and the full game a subset of those (two-phase sampling, the
difference estimator), with the two-phase variance ``N**2 [(1/n_proxy - 1/N) S2(v) + (1/n - 1/n_proxy)
S2(v - beta p)]`` per stratum of ``N`` pairs.

Seeds: a game may return one payoff per seed, ``(n, n_seeds)``; the values are those of the seed-averaged game,
and the standard error adds the between-seed variance of the per-seed values (the uncertainty about the model's
expected value over seeds) to the sampling variance (the uncertainty about the seed-averaged game's value).

Cost is counted in *full-image equivalents*: full images plus proxy images times their measured cost ratio
(``proxy_cost``, e.g. 0.26 for 2 of 10 DPM-Solver steps on ShapesWorld, measured), against exact's ``2**d * n_seeds``::

    from captum_diffusion.words.multifidelity import multifidelity_shapley

    result = multifidelity_shapley(full_game, proxy_game, budget=0.5, proxy_cost=0.16, seed=0)
    result.values, result.standard_errors, result.intervals()        # (d,), (d,), (d, 2)
    result.cost.full_image_equivalents, result.cost.fraction_of_exact
    result.statement(word_labels(words))                            # "top-3 words (...) certain at 95% ..."
    multifidelity_shapley(full_game, None, 0.25, until_top_k=3).stopped   # "top-3 separated at 95%", ...
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import comb
from typing import Callable, Sequence

import numpy as np

from captum_diffusion import checks
from captum_diffusion.words import certainty

#: Games of more words are refused: the proxy is played on every coalition and the strata are listed.
MAX_WORDS = 16

#: A game: 0/1 masks ``(n, d)`` -> payoffs ``(n,)`` or ``(n, n_seeds)``.
Game = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ShapleyCost:
    """Images an estimate used, in the units of the one expensive thing: full generations.

    ``full_images`` and ``proxy_images`` count every seed's image; ``proxy_cost`` is a proxy image's time relative
    to a full one; ``exact_images = 2**d * n_seeds`` is what exact Shapley values cost."""

    full_images: int
    proxy_images: int
    proxy_cost: float
    exact_images: int

    @property
    def full_image_equivalents(self) -> float:
        """``full_images + proxy_cost * proxy_images``."""
        return self.full_images + self.proxy_cost * self.proxy_images

    @property
    def fraction_of_exact(self) -> float:
        """Full-image equivalents over exact's images (1.0 = the cost of exact values)."""
        return self.full_image_equivalents / self.exact_images


@dataclass(frozen=True)
class ShapleyEstimate:
    """Estimated Shapley values of the (seed-averaged) full game with their uncertainty and cost.

    Attributes
    ----------
    values : ndarray (d,)
        Shapley values of the seed-averaged full game (payoff units).
    standard_errors : ndarray (d,)
        Total standard errors: ``sqrt(sampling_errors**2 + seed_errors**2)``.
    sampling_errors : ndarray (d,)
        Error from sampling coalitions, against the exact values of the seed-averaged game over these seeds
        (zero for an exact result).
    seed_errors : ndarray (d,)
        Between-seed standard error of the per-seed values (zero with one seed).
    covariance : ndarray (d, d)
        Total error covariance (sampling + between-seed): the separation of two words uses it.
    degrees_of_freedom : ndarray (d,)
        Welch-Satterthwaite degrees of freedom of ``standard_errors`` (``inf``: normal intervals).
    sampling_degrees_of_freedom : ndarray (d,)
        Those of ``sampling_errors`` alone (strata's pairs minus one, combined).
    per_seed : ndarray (d, n_seeds)
        The values estimated for each seed.
    exact : bool
        Every coalition was evaluated in full: no sampling error.
    proxy_weight : float
        ``beta`` in ``phi(v) = beta * phi(p) + phi(v - beta * p)`` (1.0 without fitting; 0.0 without proxy).
    cost : ShapleyCost
    stopped : str
        Why the estimator stopped: ``"exact"``, ``"budget spent"``, ``"top-3 separated at 95%"``, ...
    full_masks : ndarray (m, d) bool; full_payoffs : ndarray (m, n_seeds)
        Every coalition evaluated in full, and its payoffs (reusable, e.g. to continue with a larger budget).
    """

    values: np.ndarray
    standard_errors: np.ndarray
    sampling_errors: np.ndarray
    seed_errors: np.ndarray
    covariance: np.ndarray
    degrees_of_freedom: np.ndarray
    sampling_degrees_of_freedom: np.ndarray
    per_seed: np.ndarray
    exact: bool
    proxy_weight: float
    cost: ShapleyCost
    stopped: str
    full_masks: np.ndarray = field(repr=False)
    full_payoffs: np.ndarray = field(repr=False)

    @property
    def n_seeds(self) -> int:
        return self.per_seed.shape[1]

    def intervals(self, level: float = 0.95, *, seeds: bool = True) -> np.ndarray:
        """``level`` confidence intervals of ``values``: ``(d, 2)`` (low, high), Student t where the degrees of
        freedom are finite. ``seeds=True``: for the model's expected values over seeds (total error);
        ``seeds=False``: for the exact values of the seed-averaged game over these seeds (sampling error only)."""
        if seeds:
            return certainty.intervals(self.values, self.standard_errors, level, self.degrees_of_freedom)
        return certainty.intervals(self.values, self.sampling_errors, level, self.sampling_degrees_of_freedom)

    def statement(self, labels: Sequence[str], k: int = 3, level: float = 0.95) -> str:
        """The plain sentence of :func:`captum_diffusion.words.certainty.certainty_statement` for these values."""
        return certainty.certainty_statement(self.values, self.standard_errors, labels, k=k, level=level,
                                             covariance=self.covariance, degrees_of_freedom=self.degrees_of_freedom,
                                             exact=self.exact, n_seeds=self.n_seeds)


# ------------------------------------------------------------------------------------------------ coalitions

def coalition_masks(indices, n_words: int) -> np.ndarray:
    """Bool masks ``(n, n_words)`` of coalition indices (word ``j`` present iff bit ``j`` is set: the order of
    ``WordGame.all_coalitions``)."""
    indices = np.asarray(indices, dtype=np.int64)
    return ((indices[:, None] >> np.arange(n_words)) & 1).astype(bool)


def shapley_weights(masks: np.ndarray) -> np.ndarray:
    """The coefficient of ``v(T)`` in each word's Shapley value: ``(n, d)``, ``(|T|-1)! (d-|T|)! / d!`` for a word
    in ``T`` and ``-|T|! (d-|T|-1)! / d!`` for a word outside, so ``phi = shapley_weights(all masks).T @ v``."""
    masks = np.asarray(masks, dtype=bool)
    d = masks.shape[1]
    sizes = masks.sum(1)
    inside = np.array([1 / (d * comb(d - 1, s - 1)) if s > 0 else 0.0 for s in range(d + 1)])
    outside = np.array([1 / (d * comb(d - 1, s)) if s < d else 0.0 for s in range(d + 1)])
    return np.where(masks, inside[sizes][:, None], -outside[sizes][:, None])


class _Payoffs:
    """A game's payoffs by coalition index, each coalition evaluated once, many per call."""

    def __init__(self, game: Game, n_words: int, name: str, n_seeds: int | None = None, seeds_of: str = "earlier"):
        if not callable(game):
            raise TypeError(f"{name} must be callable: masks (n, d) -> payoffs (n,) or (n, n_seeds); "
                            f"got {type(game).__name__}")
        self.game, self.n_words, self.name = game, n_words, name
        self.table: dict[int, np.ndarray] = {}
        self.n_seeds, self.seeds_of = n_seeds, seeds_of

    def __call__(self, indices) -> np.ndarray:
        """Payoffs ``(len(indices), n_seeds)``."""
        indices = [int(i) for i in indices]
        todo = list(dict.fromkeys(i for i in indices if i not in self.table))
        if todo:
            masks = coalition_masks(todo, self.n_words)
            payoffs = np.asarray(self.game(masks), dtype=np.float64)
            if payoffs.ndim == 1:
                payoffs = payoffs[:, None]
            if payoffs.ndim != 2 or payoffs.shape[0] != len(todo):
                raise ValueError(f"{self.name} must return payoffs of shape (n,) or (n, n_seeds) for n = {len(todo)} "
                                 f"masks, got shape {payoffs.shape}")
            if self.n_seeds is None:
                self.n_seeds = payoffs.shape[1]
            elif payoffs.shape[1] != self.n_seeds:
                raise ValueError(f"{self.name} returned {payoffs.shape[1]} seeds but {self.seeds_of} returned "
                                 f"{self.n_seeds}")
            if not np.isfinite(payoffs).all():
                raise ValueError(f"{self.name} returned a non-finite payoff")
            self.table.update(zip(todo, payoffs))
        return np.array([self.table[i] for i in indices]).reshape(len(indices), -1)


@dataclass
class _Stratum:
    """Pairs ``(T, N \\ T)`` with ``|T| = k`` (for ``k = d/2`` one ``T`` per pair, the one with word 0)."""
    k: int
    units: np.ndarray      # (N,) coalition indices T
    complements: np.ndarray
    weights: np.ndarray    # (N, d) Shapley weight of v(T) per word; v(N \ T) has the opposite
    order: np.ndarray      # random order of the units: the first n_proxy have the proxy, the first n the full game
    n: int = 0
    n_proxy: int = 0

    @property
    def size(self) -> int:
        return len(self.units)


def _strata(n_words: int, rng: np.random.Generator) -> list[_Stratum]:
    everything = np.arange(2**n_words)
    sizes = coalition_masks(everything, n_words).sum(1)
    full = 2**n_words - 1
    strata = []
    for k in range(1, n_words // 2 + 1):
        units = everything[sizes == k]
        if 2 * k == n_words:
            units = units[units & 1 == 1]
        strata.append(_Stratum(k, units, full ^ units, shapley_weights(coalition_masks(units, n_words)),
                               rng.permutation(len(units))))
    return strata


# ------------------------------------------------------------------------------------------------ estimation

@dataclass
class _Estimate:
    per_seed: np.ndarray       # (d, S)
    sampling_cov: np.ndarray   # (d, d)
    sampling_df: np.ndarray    # (d,)
    unit_variances: dict       # k -> (n_k x d residual contributions) for allocation
    beta: float


def _estimate(strata, full: _Payoffs, proxy: _Payoffs | None, n_words: int, beta,
              additive: bool = False) -> _Estimate:
    """The two-phase difference estimator per stratum: the proxy's Horvitz-Thompson total over its ``n_proxy``
    pairs plus the full game's correction over the first ``n`` of them (``n_proxy = size``: the proxy term is
    exact). Sampling variance ``size**2 [(1/n_proxy - 1/size) S2(full) + (1/n - 1/n_proxy) S2(correction)]``."""
    d, end = n_words, 2**n_words - 1
    ends = full([end, 0])
    per_seed = np.repeat(((ends[0] - ends[1]) / d)[None, :], d, axis=0)  # (d, S)
    sampled = [s for s in strata if s.n > 0]
    if sampled:  # every new coalition in one call: generators batch their images
        full(np.concatenate([np.concatenate([s.units[s.order[:s.n]], s.complements[s.order[:s.n]]]) for s in sampled]))
    diffs = {s.k: full(s.units[s.order[:s.n]]) - full(s.complements[s.order[:s.n]]) for s in sampled}
    proxy_diffs = {}  # k -> (n_proxy, S)
    if proxy is not None:
        proxy(np.concatenate([np.concatenate([s.units[s.order[:s.n_proxy]], s.complements[s.order[:s.n_proxy]]])
                              for s in strata]))
        proxy_diffs = {s.k: proxy(s.units[s.order[:s.n_proxy]]) - proxy(s.complements[s.order[:s.n_proxy]])
                       for s in strata}
    if beta == "fit":
        beta = _fit_beta(sampled, diffs, proxy_diffs) if proxy is not None else 0.0
    beta = 0.0 if proxy is None else float(beta)
    cov = np.zeros((d, d))
    variance_parts, df_parts = [], []
    residuals = {}
    corrections = {s.k: diffs[s.k] - (beta * proxy_diffs[s.k][:s.n] if proxy is not None else 0.0) for s in sampled}
    adjusted = {}
    if additive and (proxy is None or all(s.n_proxy == s.size for s in strata)):  # not with a sampled proxy term
        adjusted = _additive_adjustment(strata, corrections, d)
    for s in strata:
        if proxy is not None and beta != 0.0 and s.n_proxy > 0:
            per_seed += beta * (s.size / s.n_proxy) * (s.weights[s.order[:s.n_proxy]].T @ proxy_diffs[s.k])
        if s.n == 0:
            continue
        chosen = s.order[:s.n]
        residual = corrections[s.k]
        weights = s.weights[chosen]
        if s.k in adjusted:
            total, residual = adjusted[s.k]
            per_seed += total
        else:
            per_seed += (s.size / s.n) * (weights.T @ residual)
        contributions = weights * residual.mean(1)[:, None]  # (n, d): per-pair term of the seed-averaged game
        residuals[s.k] = contributions
        if s.n >= 2 and s.n < s.size:
            if proxy is None or s.n_proxy == s.size:  # one phase: the full game's pairs (around the controls)
                part = s.size**2 * (1 / s.n - 1 / s.size) * _cov(contributions, d)
            else:  # two phases: the proxy's pairs, and the full game's among them
                part = (s.size**2 * (1 / s.n - 1 / s.n_proxy) * _cov(contributions, d)
                        + s.size**2 * (1 / s.n_proxy - 1 / s.size) * _cov(weights * diffs[s.k].mean(1)[:, None], d))
            cov += part
            variance_parts.append(np.diag(part))
            df_parts.append(s.n - 1)
    var = np.diag(cov)
    if variance_parts:
        parts = np.array(variance_parts)
        denominator = (parts**2 / np.array(df_parts)[:, None]).sum(0)
        df = np.where(denominator > 0, var**2 / np.where(denominator > 0, denominator, 1.0), np.inf)
    else:
        df = np.full(d, np.inf)
    return _Estimate(per_seed, cov, df, residuals, beta)


def _additive_adjustment(strata, corrections: dict, d: int) -> dict:
    """Regression adjustment with an additive control, cross-fitted so that it stays unbiased.

    The pair differences of the correction, ``r(T) = c(T) - c(N \\ T)`` (seed-averaged), are fitted by
    ``b_k + (2 z(T) - 1) . g``: an offset per stratum with ``k < d/2`` (whose Shapley weights sum to zero) and an
    additive game ``g`` (whose pair differences are ``(2 z - 1) . g``), by least squares weighted like KernelSHAP's
    kernel, on one half ``O`` of the sampled pairs (alternate pairs in the random order). With that model ``m``,
    fixed given ``O``, the stratum's total ``sum_T w(T) r(T)`` is estimated without bias by
    ``sum_T w m + sum_O w (r - m) + (N - |O|) / |F| * sum_F w (r - m)`` over the other half ``F`` (a simple random
    sample of the pairs outside ``O``); the two halves swap and the two estimates are averaged.

    Returns ``{k: (total (d, S), cross-fitted residuals (n, S))}`` for the strata sampled in part."""
    partial = [s for s in strata if 2 <= s.n < s.size]
    if not partial:
        return {}
    offsets = [s.k for s in partial if 2 * s.k < d]
    n_params = len(offsets) + d

    def design(s, chosen):
        x = np.zeros((len(chosen), n_params))
        if s.k in offsets:
            x[:, offsets.index(s.k)] = 1.0
        x[:, len(offsets):] = 2.0 * coalition_masks(s.units[chosen], d) - 1.0
        return x

    rows = {s.k: design(s, s.order[:s.n]) for s in partial}
    everything = {s.k: design(s, np.arange(s.size)) for s in partial}
    halves = {s.k: np.arange(s.n) % 2 for s in partial}
    result = {s.k: [0.0, np.zeros_like(corrections[s.k])] for s in partial}
    for half in (0, 1):
        x_fit, y_fit, w_fit = [], [], []
        for s in partial:
            fit = halves[s.k] == half
            x_fit.append(rows[s.k][fit])
            y_fit.append(corrections[s.k][fit].mean(1))
            w_fit.append(np.full(fit.sum(), 1.0 / (s.k * (d - s.k) * fit.sum())))
        x, y, w = np.concatenate(x_fit), np.concatenate(y_fit), np.concatenate(w_fit)
        gram = (x * w[:, None]).T @ x
        coef = np.linalg.solve(gram + 1e-8 * np.trace(gram) / n_params * np.eye(n_params), (x * w[:, None]).T @ y)
        for s in partial:
            fit = halves[s.k] == half
            rest = ~fit
            weights = s.weights[s.order[:s.n]]
            residual = corrections[s.k] - (rows[s.k] @ coef)[:, None]  # (n, S)
            total = ((s.weights.T @ (everything[s.k] @ coef))[:, None] + weights[fit].T @ residual[fit]
                     + (s.size - fit.sum()) / rest.sum() * (weights[rest].T @ residual[rest]))
            result[s.k][0] = result[s.k][0] + 0.5 * total
            result[s.k][1][rest] = residual[rest]  # each pair's residual from the model it was not fitted to
    return {k: (total, residual) for k, (total, residual) in result.items()}


def _cov(rows: np.ndarray, d: int) -> np.ndarray:
    return np.cov(rows, rowvar=False, ddof=1).reshape(d, d)


def _fit_beta(sampled, diffs, proxy_diffs) -> float:
    """Least squares of the full pair differences on the proxy's (seed-averaged, centred per stratum)."""
    xs, ys = [], []
    for s in sampled:
        x = proxy_diffs[s.k][:s.n].mean(1)
        y = diffs[s.k].mean(1)
        x, y = x - x.mean(), y - y.mean()
        xs.append(x)
        ys.append(y)
    if not xs:
        return 1.0
    x, y = np.concatenate(xs), np.concatenate(ys)
    return float(x @ y / (x @ x)) if x @ x > 0 else 1.0


def _allocate(strata, n_units: int, scale: dict | None = None, cap_at_proxy: bool = False) -> dict[int, int]:
    """Add ``n_units`` pairs, one at a time to the stratum whose variance falls most (Neyman's greedy rule):
    ``size**2 * s2 * (1/n - 1/(n+1))``. ``scale``: per-stratum variance ``s2`` of one pair's contribution
    (default: the Shapley weight squared, as if every stratum's pair differences varied alike). A stratum
    with fewer than 2 pairs is served first (a variance needs two)."""
    counts = {s.k: s.n for s in strata}
    for _ in range(n_units):
        best, best_gain = None, -1.0
        for s in strata:
            n = counts[s.k]
            if n >= (s.n_proxy if cap_at_proxy else s.size):
                continue
            if n < 2:
                gain = np.inf
            else:
                s2 = scale[s.k] if scale is not None else float(np.abs(s.weights).max()) ** 2
                gain = s.size**2 * s2 * (1 / n - 1 / (n + 1))
            if gain > best_gain:
                best, best_gain = s.k, gain
        if best is None:
            break
        counts[best] += 1
    return counts


def _pair_scale(strata, estimate: _Estimate, direction: np.ndarray) -> dict[int, float]:
    """Per-stratum variance of one pair's contribution to ``direction @ values`` (floored, so no stratum starves
    on a variance estimated as 0 from two pairs)."""
    scale = {}
    for s in strata:
        contributions = estimate.unit_variances.get(s.k)
        scale[s.k] = float(np.var(contributions @ direction, ddof=1)) if contributions is not None and len(
            contributions) >= 2 else np.nan
    known = [v for v in scale.values() if np.isfinite(v)]
    floor = 0.05 * max(known) if known and max(known) > 0 else 1.0
    return {k: (max(v, floor) if np.isfinite(v) else floor) for k, v in scale.items()}


def _exact(full: _Payoffs, n_words: int) -> np.ndarray:
    everything = np.arange(2**n_words)
    return shapley_weights(coalition_masks(everything, n_words)).T @ full(everything)  # (d, S)


# ------------------------------------------------------------------------------------------------ public

def multifidelity_shapley(
    full: Game,
    proxy: Game | None,
    budget: float,
    *,
    proxy_cost: float | None = None,
    n_words: int | None = None,
    seed: int | None = 0,
    proxy_weight: float | str = "fit",
    proxy_fraction: float | str = "auto",
    additive_control: bool = True,
    until_top_k: int | None = None,
    target_error: float | None = None,
    level: float = 0.95,
    initial: float = 0.4,
    rounds: int = 8,
) -> ShapleyEstimate:
    """Shapley values of ``full`` from every coalition of the cheap ``proxy`` and a few of ``full``.

    Parameters
    ----------
    full : callable
        The game at full fidelity: 0/1 masks ``(n, d)`` -> payoffs ``(n,)`` or ``(n, n_seeds)`` (one column per
        image seed; the values are those of the seed-averaged game). Called with many coalitions at once; a
        :class:`~captum_diffusion.words.WordGame` is one (and gives ``n_words``).
    proxy : callable or None
        The same game played with cheaper images (same sub-prompts, seeds and payoff), same output shape. It is
        evaluated on all ``2**d`` coalitions. ``None``: no proxy; the stratified paired sampler alone.
    budget : float in (0, 1]
        Cost allowed, as a fraction of exact's ``2**d * n_seeds`` full images, in full-image equivalents (proxy
        images count ``proxy_cost`` each). At 1 the values are exact (every coalition in full, no proxy).
    proxy_cost : float in (0, 1], required with a proxy
        A proxy image's generation time relative to a full image's, as measured (e.g. 0.22).
    n_words : int, optional
        ``d``; taken from ``full.n_words`` when ``full`` has it.
    seed : int or None
        Seed of the sampler (which pairs are drawn).
    proxy_weight : float or "fit"
        ``beta``: ``"fit"`` (default: least squares of the full pair differences on the proxy's, the best control
        for a proxy of another scale or a weak one, measured better on ShapesWorld in ``benchmarks/cost.md``;
        biased by O(1/pairs)) or a number, e.g. 1.0 (exactly unbiased: ``phi(v) = phi(p) + phi(v - p)``).
    proxy_fraction : float in (0, 1] or "auto"
        Share of the pairs of each coalition size the proxy is played on. 1: every coalition (the proxy term is
        exact). Below 1 the proxy term is sampled too (two-phase sampling: the full game on a subset of the proxy's
        pairs), for budgets that cannot pay the proxy everywhere. ``"auto"``: 1 when that leaves at least a third of
        the budget for full images, else the share that leaves them a third.
    additive_control : bool
        Regression-adjust the sampled correction with an additive game fitted to the sampled pairs (cross-fitted
        on halves, so unbiased): what an additive game explains costs no sampling error (the strength of
        KernelSHAP) while the estimate stays unbiased with a standard error. Not applied to a sampled proxy term.
    until_top_k : int, optional
        Adaptive mode: start with ``initial`` of the full budget, then add pairs in ``rounds`` steps where they
        reduce the uncertainty of the weakest separation between the top ``until_top_k`` words and the rest; stop
        when the top ``until_top_k`` are separated at ``level`` (sampling error) or the budget is spent.
    target_error : float, optional
        Adaptive mode: stop when every sampling standard error is at most this (payoff units).
    level : float
        Confidence level of the stopping rule.
    initial : float in (0, 1]
        Share of the full-image budget spent before the first adaptive check.
    rounds : int
        Number of adaptive steps the rest of the budget is split into (at most).

    Returns
    -------
    ShapleyEstimate
        Values ``(d,)``, standard errors ``(d,)`` (sampling + between-seed), intervals, cost and why it stopped.

    Raises
    ------
    ValueError
        ``budget`` outside (0, 1] or too small for the proxy plus two pairs per coalition size (the message gives
        the smallest budget), ``proxy_cost`` missing or outside (0, 1], games returning the wrong shape,
        ``d > MAX_WORDS``.
    """
    budget, n_words, proxy_cost, proxy_weight, proxy_fraction = _checked_game_options(
        full, proxy, budget, n_words, proxy_cost, proxy_weight, proxy_fraction)
    until_top_k, target_error, initial, rounds = _checked_stop_options(
        until_top_k, target_error, initial, rounds, additive_control, level, n_words)
    rng = np.random.default_rng(checks.random_state(seed))
    d, n_all = n_words, 2**n_words

    full_payoffs = _Payoffs(full, d, "full")
    full_payoffs([n_all - 1, 0])  # the exact efficiency total, and the number of seeds
    n_seeds = full_payoffs.n_seeds
    exact_images = n_all * n_seeds
    budget_equivalents = budget * exact_images

    if budget_equivalents >= exact_images - 1e-9 or d == 1:  # exact: every coalition in full, the proxy unused
        per_seed = _exact(full_payoffs, d)
        return _result(per_seed, np.zeros((d, d)), np.full(d, np.inf), True, 0.0,
                       ShapleyCost(exact_images, 0, proxy_cost, exact_images), "exact", full_payoffs, d)

    strata = _strata(d, rng)
    proxy_payoffs = None if proxy is None else _Payoffs(proxy, d, "proxy", n_seeds, "full")
    proxy_images, pairs_affordable = _share_budget(strata, proxy is not None, budget, budget_equivalents, proxy_cost,
                                                   proxy_fraction, n_all, n_seeds)
    capped = proxy is not None
    adaptive = until_top_k is not None or target_error is not None
    least = sum(min(2, s.size) for s in strata)
    first = pairs_affordable if not adaptive else max(least, int(np.ceil(initial * pairs_affordable)))
    _grow(strata, _allocate(strata, first, cap_at_proxy=capped))

    def estimate_now() -> _Estimate:
        return _estimate(strata, full_payoffs, proxy_payoffs, d, proxy_weight, additive_control)

    estimate, stopped = estimate_now(), "budget spent"
    if adaptive:
        estimate, stopped = _adaptive_rounds(strata, estimate, estimate_now, pairs_affordable, first, rounds, capped,
                                             until_top_k, target_error, level)
    exact = all(s.n == s.size for s in strata)
    if exact:
        stopped = "every coalition evaluated in full"
    cost = ShapleyCost(len(full_payoffs.table) * n_seeds, proxy_images, proxy_cost, exact_images)
    return _result(estimate.per_seed, estimate.sampling_cov, estimate.sampling_df, exact, estimate.beta, cost,
                   stopped, full_payoffs, d)


def _checked_game_options(full, proxy, budget, n_words, proxy_cost, proxy_weight, proxy_fraction):
    """``budget``, ``n_words``, ``proxy_cost``, ``proxy_weight``, ``proxy_fraction`` checked (errors name them)."""
    budget = checks.finite_number(budget, "budget", low=0.0, high=1.0, low_open=True)
    if n_words is None:
        n_words = getattr(full, "n_words", None)
        if n_words is None:
            raise ValueError("n_words is required when full has no n_words attribute (a WordGame has one)")
    n_words = checks.positive_int(n_words, "n_words")
    if n_words > MAX_WORDS:
        raise ValueError(f"n_words={n_words} exceeds {MAX_WORDS}: the proxy is played on all 2**d coalitions")
    if proxy is not None:
        if proxy_cost is None:
            raise ValueError("proxy_cost is required with a proxy: a proxy image's time relative to a full one "
                             "(measure it, e.g. 0.22 for 2 of 10 steps)")
        proxy_cost = checks.finite_number(proxy_cost, "proxy_cost", low=0.0, high=1.0, low_open=True)
    else:
        proxy_cost = 0.0 if proxy_cost is None else checks.finite_number(proxy_cost, "proxy_cost", low=0.0, high=1.0)
    if not (isinstance(proxy_weight, str) and proxy_weight == "fit"):
        proxy_weight = checks.finite_number(proxy_weight, "proxy_weight")
    if not (isinstance(proxy_fraction, str) and proxy_fraction == "auto"):
        proxy_fraction = checks.finite_number(proxy_fraction, "proxy_fraction", low=0.0, high=1.0, low_open=True)
    return budget, n_words, proxy_cost, proxy_weight, proxy_fraction


def _checked_stop_options(until_top_k, target_error, initial, rounds, additive_control, level, n_words):
    """``until_top_k``, ``target_error``, ``initial``, ``rounds`` checked, and ``additive_control``, ``level``."""
    if until_top_k is not None:
        until_top_k = checks.positive_int(until_top_k, "until_top_k")
        if until_top_k >= n_words:
            raise ValueError(f"until_top_k={until_top_k} must be below the number of words ({n_words})")
    if target_error is not None:
        target_error = checks.finite_number(target_error, "target_error", low=0.0, low_open=True)
    initial = checks.finite_number(initial, "initial", low=0.0, high=1.0, low_open=True)
    rounds = checks.positive_int(rounds, "rounds")
    if not isinstance(additive_control, (bool, np.bool_)):
        raise TypeError(f"additive_control must be a bool, got {type(additive_control).__name__}")
    certainty.quantile(level)  # checks level
    return until_top_k, target_error, initial, rounds


def _share_budget(strata, with_proxy: bool, budget, budget_equivalents, proxy_cost, proxy_fraction, n_all, n_seeds):
    """Split the budget: sets each stratum's ``n_proxy``; returns ``(proxy images, full pairs affordable)``.

    ``ValueError`` when the budget cannot pay the proxy and two full pairs per coalition size."""
    least = sum(min(2, s.size) for s in strata)  # full pairs: two per coalition size, for a variance
    proxy_images = 0
    if with_proxy:
        share = _proxy_share(proxy_fraction, budget_equivalents, proxy_cost, n_all, n_seeds, least)
        for s in strata:
            s.n_proxy = s.size if share >= 1 else min(s.size, max(2, int(round(share * s.size))))
        proxy_images = 2 * sum(s.n_proxy for s in strata) * n_seeds
    spare = budget_equivalents - proxy_cost * proxy_images
    pairs_affordable = (int(np.floor(spare / n_seeds + 1e-9)) - 2) // 2  # full coalitions beyond the two ends
    if pairs_affordable < least:
        exact_images = n_all * n_seeds
        smallest = (proxy_cost * proxy_images + (2 + 2 * least) * n_seeds) / exact_images
        share = proxy_cost * proxy_images / exact_images
        raise ValueError(f"budget={budget:g} is too small: the proxy costs {share:.3f} "
                         f"of exact and two full pairs per coalition size need more; use budget >= {smallest:.3f}"
                         + (" or a smaller proxy_fraction" if with_proxy else ""))
    return proxy_images, min(pairs_affordable, sum(s.n_proxy if with_proxy else s.size for s in strata))


def _adaptive_rounds(strata, estimate, estimate_now, pairs_affordable, first, rounds, capped, until_top_k,
                     target_error, level):
    """Add full pairs in ``rounds`` steps where the stop rule's direction gains most; ``(estimate, stopped)``."""
    step = max(1, int(np.ceil((pairs_affordable - first) / rounds)))
    while True:
        reason, direction = _check(estimate, until_top_k, target_error, level)
        if reason is not None:
            return estimate, reason
        room = min(step, pairs_affordable - sum(s.n for s in strata))
        if room <= 0:
            return estimate, "budget spent"
        _grow(strata, _allocate(strata, room, _pair_scale(strata, estimate, direction), cap_at_proxy=capped))
        estimate = estimate_now()


def _proxy_share(proxy_fraction, budget_equivalents: float, proxy_cost: float, n_all: int, n_seeds: int,
                 least: int) -> float:
    """The share of pairs the proxy plays: ``proxy_fraction``, or for ``"auto"`` 1 when the full images keep at
    least a third of the budget (and the minimum of pairs), else two thirds of the budget's worth of proxy pairs."""
    if proxy_fraction != "auto":
        return proxy_fraction
    everywhere = proxy_cost * (n_all - 2) * n_seeds
    left = budget_equivalents - everywhere
    if left >= max(budget_equivalents / 3, (2 + 2 * least) * n_seeds):
        return 1.0
    return min(1.0, (2 / 3) * budget_equivalents / everywhere)


def _grow(strata, counts: dict[int, int]) -> None:
    for s in strata:
        s.n = counts[s.k]


def _check(estimate: _Estimate, top_k, target_error, level) -> tuple[str | None, np.ndarray]:
    """``(reason to stop or None, the direction whose variance to reduce next)``."""
    values = estimate.per_seed.mean(1)
    errors = np.sqrt(np.maximum(np.diag(estimate.sampling_cov), 0.0))
    d = values.size
    direction = np.zeros(d)
    reasons, pending = [], False
    percent = f"{100 * level:g}%"
    if top_k is not None:
        margin, i, j = certainty.separation_margin(values, errors, top_k, level=level,
                                                   covariance=estimate.sampling_cov,
                                                   degrees_of_freedom=estimate.sampling_df)
        if margin > 0:
            reasons.append(f"top-{top_k} separated at {percent}")
        else:
            pending = True
            direction[i], direction[j] = 1.0, -1.0
    if target_error is not None:
        if errors.max() <= target_error:
            reasons.append(f"standard errors <= {target_error:g}")
        else:
            pending = True
            if not direction.any():
                direction[int(np.argmax(errors))] = 1.0
    return (None if pending else " and ".join(reasons)), direction


def _result(per_seed, sampling_cov, sampling_df, exact, beta, cost, stopped, full_payoffs: _Payoffs, d):
    n_seeds = per_seed.shape[1]
    values = per_seed.mean(1)
    sampling_var = np.maximum(np.diag(sampling_cov), 0.0)
    if n_seeds > 1:
        seed_cov = np.cov(per_seed, ddof=1).reshape(d, d) / n_seeds
    else:
        seed_cov = np.zeros((d, d))
    seed_var = np.maximum(np.diag(seed_cov), 0.0)
    total_var = sampling_var + seed_var
    seed_df = np.inf if n_seeds == 1 else n_seeds - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = (np.where(sampling_var > 0, sampling_var**2 / sampling_df, 0.0)
                       + (seed_var**2 / seed_df if n_seeds > 1 else 0.0))
        df = np.where(denominator > 0, total_var**2 / np.where(denominator > 0, denominator, 1.0), np.inf)
    indices = np.array(sorted(full_payoffs.table), dtype=np.int64)
    return ShapleyEstimate(
        values=values, standard_errors=np.sqrt(total_var), sampling_errors=np.sqrt(sampling_var),
        seed_errors=np.sqrt(seed_var), covariance=sampling_cov + seed_cov, degrees_of_freedom=df,
        sampling_degrees_of_freedom=np.asarray(sampling_df, dtype=np.float64),
        per_seed=per_seed, exact=bool(exact), proxy_weight=float(beta), cost=cost, stopped=stopped,
        full_masks=coalition_masks(indices, d), full_payoffs=full_payoffs(indices))


def stack_seeds(games: Sequence[Game]) -> Game:
    """One game with a payoff column per seed from one game per seed (e.g. a ``WordGame`` per seed's
    ``PromptScore``): masks ``(n, d)`` -> ``(n, len(games))``."""
    games = list(checks.sequence(games, "games"))
    if not games or not all(callable(g) for g in games):
        raise ValueError("games must be a non-empty sequence of games (callables masks -> (n,))")

    def stacked(masks):
        return np.stack([np.asarray(g(masks), dtype=np.float64).reshape(len(masks)) for g in games], axis=1)

    stacked.n_words = getattr(games[0], "n_words", None)
    return stacked
