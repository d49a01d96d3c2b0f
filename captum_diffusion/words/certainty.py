"""How certain estimated word importances are: intervals, top-K separation and the plain-language sentence.

An estimate is values ``(d,)`` with standard errors ``(d,)`` (optionally the covariance ``(d, d)`` of the
estimation error, which the separation of two words needs: two values estimated from the same images err together)
and degrees of freedom ``(d,)`` (``inf`` for a normal interval; a Student t interval otherwise, e.g. when the error
is mostly between-seed variance from 4 seeds).

    from captum_diffusion.words.certainty import certainty_statement, intervals

    low_high = intervals(values, standard_errors)                  # (d, 2), 95%
    certainty_statement(values, standard_errors, ["a", "red", "circle"], k=2)
    # "top-2 words ('red', 'circle') certain at 95%"  or  "... 'a' and 'circle' cannot be told apart ..."
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from captum_diffusion import checks


def quantile(level: float = 0.95, degrees_of_freedom=np.inf) -> np.ndarray:
    """Two-sided critical value of a ``level`` interval: normal where ``degrees_of_freedom`` is ``inf``, Student
    t elsewhere. ``degrees_of_freedom``: scalar or array (positive); returns an array of its shape."""
    level = checks.finite_number(level, "level", low=0.0, high=1.0, low_open=True)
    if level >= 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    df = np.asarray(degrees_of_freedom, dtype=np.float64)
    if np.any(~(df > 0)):
        raise ValueError(f"degrees_of_freedom must be positive (inf for a normal interval), got {degrees_of_freedom}")
    unique, where = np.unique(df, return_inverse=True)  # few distinct dfs: scipy's ppf is slow per call
    return np.array([_critical_value(level, float(v)) for v in unique])[where].reshape(df.shape)


@functools.lru_cache(maxsize=1024)
def _critical_value(level: float, degrees_of_freedom: float) -> float:
    from scipy import stats

    upper = 0.5 + level / 2
    return float(stats.norm.ppf(upper) if np.isinf(degrees_of_freedom) else stats.t.ppf(upper, degrees_of_freedom))


def _estimate(values, standard_errors, degrees_of_freedom=np.inf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = checks.numeric_array(values, "values").astype(np.float64)
    errors = checks.numeric_array(standard_errors, "standard_errors").astype(np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"values must be one number per word, shape (d,), got shape {values.shape}")
    if errors.shape != values.shape:
        raise ValueError(f"standard_errors must have the shape of values {values.shape}, got {errors.shape}")
    if np.any(errors < 0):
        raise ValueError(f"standard_errors must be >= 0, got {errors}")
    df = np.broadcast_to(np.asarray(degrees_of_freedom, dtype=np.float64), values.shape).copy()
    return values, errors, df


def intervals(values, standard_errors, level: float = 0.95, degrees_of_freedom=np.inf) -> np.ndarray:
    """``level`` confidence intervals ``values +- q * standard_errors``: float64 ``(d, 2)`` (low, high)."""
    values, errors, df = _estimate(values, standard_errors, degrees_of_freedom)
    half = quantile(level, df) * errors
    return np.stack([values - half, values + half], axis=1)


def difference_errors(standard_errors, covariance=None) -> np.ndarray:
    """Standard errors of every pairwise difference ``value_i - value_j``: ``(d, d)``. Without ``covariance`` the
    errors are taken as independent (``sqrt(se_i**2 + se_j**2)``)."""
    errors = np.asarray(standard_errors, dtype=np.float64)
    if covariance is None:
        covariance = np.diag(errors**2)
    covariance = np.asarray(covariance, dtype=np.float64)
    if covariance.shape != (errors.size, errors.size):
        raise ValueError(f"covariance must be ({errors.size}, {errors.size}), got {covariance.shape}")
    var = np.diag(covariance)
    return np.sqrt(np.maximum(var[:, None] + var[None, :] - 2 * covariance, 0.0))


def indistinguishable_pairs(values, standard_errors, *, k: int | None = None, level: float = 0.95,
                            covariance=None, degrees_of_freedom=np.inf) -> list[tuple[int, int]]:
    """Pairs of words next to each other in the ranking (largest value first) whose difference is not
    significant at ``level``: ``[(i, j), ...]`` indices, ``i`` ranked above ``j``; with ``k``, only pairs among
    the first ``k + 1`` ranks (those that decide the top ``k``)."""
    values, errors, df = _estimate(values, standard_errors, degrees_of_freedom)
    order = np.argsort(-values, kind="stable")
    if k is not None:
        order = order[:checks.positive_int(k, "k") + 1]
    diff_se = difference_errors(errors, covariance)
    pairs = []
    for i, j in zip(order[:-1], order[1:]):
        q = quantile(level, min(df[i], df[j]))
        if values[i] - values[j] <= q * diff_se[i, j]:
            pairs.append((int(i), int(j)))
    return pairs


def top_k_separated(values, standard_errors, k: int, *, level: float = 0.95, covariance=None,
                    degrees_of_freedom=np.inf) -> bool:
    """Whether every one of the ``k`` largest values exceeds every other value by more than the ``level``
    (two-sided, per pair) margin ``q * se(value_i - value_j)``. ``k >= d`` is trivially separated."""
    values, errors, df = _estimate(values, standard_errors, degrees_of_freedom)
    k = checks.positive_int(k, "k")
    if k >= values.size:
        return True
    return bool(separation_margin(values, errors, k, level=level, covariance=covariance,
                                  degrees_of_freedom=df)[0] > 0)


def separation_margin(values, standard_errors, k: int, *, level: float = 0.95, covariance=None,
                      degrees_of_freedom=np.inf) -> tuple[float, int, int]:
    """The weakest separation between the top ``k`` and the rest: ``(margin, i, j)`` with ``i`` in the top ``k``
    and ``j`` outside minimising ``(value_i - value_j) / se(value_i - value_j) - q``; ``margin > 0`` means separated
    at ``level`` (for that pair, hence for all). A zero-error difference counts as separated when positive."""
    values, errors, df = _estimate(values, standard_errors, degrees_of_freedom)
    k = checks.positive_int(k, "k")
    if k >= values.size:
        raise ValueError(f"k={k} must be below the number of words ({values.size}) to separate a top-k")
    order = np.argsort(-values, kind="stable")
    diff_se = difference_errors(errors, covariance)
    worst = (np.inf, int(order[0]), int(order[k]))
    for i in order[:k]:
        for j in order[k:]:
            gap = values[i] - values[j]
            q = float(quantile(level, min(df[i], df[j])))
            margin = (gap / diff_se[i, j] - q) if diff_se[i, j] > 0 else (np.inf if gap > 0 else -np.inf)
            if margin < worst[0]:
                worst = (float(margin), int(i), int(j))
    return worst


def certainty_statement(values, standard_errors, labels: Sequence[str], *, k: int = 3, level: float = 0.95,
                        covariance=None, degrees_of_freedom=np.inf, exact: bool = False, n_seeds: int = 1) -> str:
    """One plain sentence on how certain the ranking of the words is.

    - ``exact`` with one seed: the values are exact for that seed (every sub-prompt generated), and another seed
      may rank the words otherwise.
    - Otherwise: whether the top ``k`` words are certain at ``level`` (each of them above each other word by more
      than the interval of the difference), and which neighbours in the ranking (among the first ``k + 1``) cannot
      be told apart, e.g. ``"top-3 words ('red', 'circle', 'left') certain at 95%"`` or ``"top-3 words not certain
      at 95%: 'on' and 'the' cannot be told apart"``.
    """
    values, errors, df = _estimate(values, standard_errors, degrees_of_freedom)
    labels = checks.string_list(labels, "labels", allow_single=False)
    if len(labels) != values.size:
        raise ValueError(f"labels has {len(labels)} entries but values has {values.size}")
    n_seeds = checks.positive_int(n_seeds, "n_seeds")
    k = min(checks.positive_int(k, "k"), values.size)
    percent = f"{100 * level:g}%"
    if exact and n_seeds == 1:
        return ("exact Shapley values for this seed (every sub-prompt generated); they carry no sampling error, "
                "but another seed may rank the words differently")
    order = np.argsort(-values, kind="stable")
    top = ", ".join(repr(labels[i]) for i in order[:k])
    source = (f"exact over {n_seeds} seeds; intervals from the variation between seeds" if exact
              else f"{n_seeds} seed{'s' if n_seeds > 1 else ''}")
    if k == values.size or top_k_separated(values, errors, k, level=level, covariance=covariance,
                                           degrees_of_freedom=df):
        return f"top-{k} words ({top}) certain at {percent} ({source})"
    pairs = indistinguishable_pairs(values, errors, k=k, level=level, covariance=covariance, degrees_of_freedom=df)
    apart = "; ".join(f"{labels[i]!r} and {labels[j]!r} cannot be told apart" for i, j in pairs)
    if not apart:  # the weakest pair is not adjacent in the ranking
        _, i, j = separation_margin(values, errors, k, level=level, covariance=covariance, degrees_of_freedom=df)
        apart = f"{labels[i]!r} and {labels[j]!r} cannot be told apart"
    return f"top-{k} words not certain at {percent} ({source}): {apart}"
