"""Agreement of word attributions across seeds: how much the ranking of the words is the seed's noise."""
from __future__ import annotations

import itertools
import math
import warnings
from typing import Sequence

import numpy as np

from captum_diffusion.metrics.ranking import percent_ranks_aligned, ranks

__all__ = ["seed_agreement"]


def seed_agreement(values_per_seed, labels: Sequence[str]) -> dict:
    """How much the word ranking varies across seeds.

    Parameters
    ----------
    values_per_seed : array_like
        float ``(n_seeds, n_words)``, one row of word values per seed (payoff units).
    labels : sequence of str
        ``n_words`` word names.

    Returns
    -------
    dict
        JSON-friendly:

        - ``n_seeds``, ``labels``;
        - ``per_seed``: per seed ``{"top": label of the largest value, "ranking": labels from largest to
          smallest value (stable for ties)}``;
        - ``pairs``: per seed pair ``i < j``: ``{"seeds": [i, j], "percent_ranks_aligned": 0..100,
          "spearman": rho, "kendall": tau}`` (percent of words with the same rank, ties sharing the smallest,
          :func:`captum_diffusion.metrics.percent_ranks_aligned` x 100; correlations from ``scipy.stats``,
          ``None`` when undefined, e.g. a seed whose values are all equal);
        - ``percent_ranks_aligned`` / ``spearman`` / ``kendall``: ``{"mean": ..., "min": ...}`` over the pairs
          (undefined pairs skipped; ``None`` when there is no defined pair, e.g. one seed);
        - ``mean`` / ``std``: per word, the mean and spread (population std, ``ddof=0``) across seeds;
        - ``same_top``: whether every seed has the same top word;
        - ``values`` (the input as lists) and ``ranks`` (per seed, rank 1 = largest, ties share the smallest).

    Raises
    ------
    ValueError
        For a shape other than ``(n_seeds >= 1, len(labels) >= 1)``, or NaN / inf values.
    """
    from scipy import stats

    arr = np.asarray(values_per_seed, dtype=np.float64)
    labels = [str(label) for label in labels]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != len(labels) or arr.shape[1] < 1:
        raise ValueError(f"values_per_seed must be (n_seeds >= 1, n_words={len(labels)}); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("values_per_seed contains NaN or inf")
    per_seed = []
    for row in arr:
        order = np.argsort(-row, kind="stable")
        per_seed.append({"top": labels[int(order[0])], "ranking": [labels[int(k)] for k in order]})
    pairs = []
    for i, j in itertools.combinations(range(arr.shape[0]), 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant input: the correlation is undefined (nan -> None)
            rho = float(stats.spearmanr(arr[i], arr[j]).statistic) if arr.shape[1] > 1 else math.nan
            tau = float(stats.kendalltau(arr[i], arr[j]).statistic) if arr.shape[1] > 1 else math.nan
        pairs.append({"seeds": [i, j], "percent_ranks_aligned": 100.0 * percent_ranks_aligned(arr[i], arr[j]),
                      "spearman": None if math.isnan(rho) else rho, "kendall": None if math.isnan(tau) else tau})

    def summary(key: str) -> dict:
        xs = [p[key] for p in pairs if p[key] is not None]
        return {"mean": float(np.mean(xs)) if xs else None, "min": float(np.min(xs)) if xs else None}

    return {
        "n_seeds": int(arr.shape[0]),
        "labels": labels,
        "per_seed": per_seed,
        "pairs": pairs,
        "percent_ranks_aligned": summary("percent_ranks_aligned"),
        "spearman": summary("spearman"),
        "kendall": summary("kendall"),
        "mean": [float(x) for x in arr.mean(axis=0)],
        "std": [float(x) for x in arr.std(axis=0)],
        "same_top": len({s["top"] for s in per_seed}) == 1,
        "values": arr.tolist(),
        "ranks": [ranks(row).tolist() for row in arr],
    }

