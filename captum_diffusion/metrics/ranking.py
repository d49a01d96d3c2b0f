"""Gupta & Kanoria's evaluation of word importances against hand-assigned ground truth (their section 2).

Scores are normalised to sum to 1 first, as the paper does. Rank 1 is the most important word; tied scores
share the smallest rank ("competition" ranking: 0.4, 0.4, 0.2 -> 1, 1, 3).
"""
from __future__ import annotations

from typing import Literal

import numpy as np


def as_vector(scores, name: str = "scores") -> np.ndarray:
    """Per-word scores as float64 ``(d,)`` from a list, numpy array, torch tensor or single-row
    ``shap.Explanation`` (its ``.values``) or a captum result (its ``.seq_attr``). Raises on empty, non-1-D or non-finite input."""
    if hasattr(scores, "values") and hasattr(scores, "base_values"):  # shap.Explanation
        scores = scores.values
    if hasattr(scores, "seq_attr"):  # captum's LLMAttributionResult (WordAttributionResult)
        scores = scores.seq_attr
    if hasattr(scores, "local_exp"):  # lime Explanation: no word order of its own
        raise TypeError(f"{name}: pass lime_adapters.word_weights(explanation), not a lime Explanation")
    if hasattr(scores, "detach"):  # torch.Tensor
        scores = scores.detach().cpu().numpy()
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be numbers, one per word; got {type(scores).__name__}") from err
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be one score per word, shape (d,) with d >= 1; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf: {arr}")
    return arr


def _pair(scores, ground_truth) -> tuple[np.ndarray, np.ndarray]:
    scores, ground_truth = as_vector(scores), as_vector(ground_truth, "ground_truth")
    if scores.shape != ground_truth.shape:
        raise ValueError(f"scores has {scores.size} words but ground_truth has {ground_truth.size}")
    return scores, ground_truth


def normalize_scores(scores) -> np.ndarray:
    """``scores / scores.sum()``: importances that sum to 1 (the paper divides each word's contribution by the
    total). Returns float64 ``(d,)``; raises ``ValueError`` when the total is (numerically) zero."""
    arr = as_vector(scores)
    scale = max(float(np.abs(arr).max()), np.finfo(np.float64).tiny)
    arr, total = arr / scale, (arr / scale).sum()  # scaled first: a sum of huge scores must not overflow to inf
    if abs(total) <= 1e-12 * max(1.0, np.abs(arr).max()):
        raise ValueError(f"scores sum to {total * scale:.3g}; they cannot be normalised to sum to 1 ({arr * scale})")
    return arr / total


def ranks(scores) -> np.ndarray:
    """Importance ranks ``(d,)`` int: 1 for the largest score; ties share the smallest rank."""
    arr = as_vector(scores)
    return np.array([1 + int((arr > s).sum()) for s in arr])


def percent_ranks_aligned(scores, ground_truth) -> float:
    """Fraction (0..1; x100 for the paper's percent) of words whose rank by ``scores`` equals their rank by
    ``ground_truth``. 'a cat's house': scores (0.13, 0.59, 0.28) vs truth (0.05, 0.45, 0.5) -> 1/3."""
    scores, ground_truth = _pair(scores, ground_truth)
    return float(np.mean(ranks(scores) == ranks(ground_truth)))


def rmse(scores, ground_truth, *, normalize: bool = True, reduction: Literal["mean", "sum"] = "mean") -> float:
    """Root of the mean (``reduction="mean"``, the paper's equation) or of the sum (``"sum"``) of squared
    differences between ``scores`` (normalised to sum to 1 when ``normalize``) and ``ground_truth``.

    The paper's worked example and its 3-word table rows are the root of the *sum*: 'a cat's house',
    scores (0.13, 0.59, 0.28) vs truth (0.05, 0.45, 0.5): ``reduction="sum"`` -> 0.2728 (as printed),
    ``"mean"`` -> 0.1575. Its 4-word rows are the root of the sum over the first three words only (e.g.
    'a lamp with flowers' 0.25 = sqrt(0.0361 + 0.01 + 0.0169)); we do not reproduce that.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(
            f"reduction must be 'mean' (the paper's formula) or 'sum' (its printed numbers), got {reduction!r}"
        )
    scores, ground_truth = _pair(scores, ground_truth)
    if normalize:
        scores = normalize_scores(scores)
    scale = max(float(np.abs(scores).max()), float(np.abs(ground_truth).max()), np.finfo(np.float64).tiny)
    squared = (scores / scale - ground_truth / scale) ** 2  # scaled: huge scores must not overflow
    return float(np.sqrt(squared.mean() if reduction == "mean" else squared.sum()) * scale)
