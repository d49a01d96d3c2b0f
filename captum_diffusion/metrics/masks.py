"""Overlap of binary masks (DAAM, Tang et al. 2023, section 3.1 and appendix B).

Masks are boolean (or 0/1) numpy arrays or torch tensors of shape ``(H, W)``, or stacks ``(N, H, W)``
(for example ``DAAMResult.threshold(tau)[i]`` or a ground-truth mask from the ShapesWorld analyser).

- ``iou(a, b) = |a & b| / |a | b|``: similarity; :func:`miou` is its mean over mask pairs.
- ``iod(dependent, head) = |d & h| / |d|``: how much of the dependent's map the head's map covers.
- ``ioh(dependent, head) = |d & h| / |h|``: how much of the head's map the dependent's map covers.
  ``iod > ioh`` means the head dominates (contains) the dependent; the paper's mIoD / mIoH are the means.

A ratio whose denominator is empty (both masks empty for IoU, an empty dependent or head) is undefined and
returned as ``nan``; :func:`miou` leaves such pairs out of the mean.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence, Union

import numpy as np

if TYPE_CHECKING:  # masks may be torch tensors; this module does not need torch at run time
    import torch

MaskLike = Union[np.ndarray, "torch.Tensor", Sequence]


def _as_mask(mask, name: str) -> np.ndarray:
    if hasattr(mask, "detach"):  # torch tensor
        mask = mask.detach().cpu().numpy()
    array = np.asarray(mask)
    if array.ndim not in (2, 3):
        raise ValueError(f"{name} must be a mask (H, W) or a stack (N, H, W), got shape {array.shape}")
    if array.dtype != bool:
        if not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must be binary (bool or 0/1); binarise heat maps first, e.g. with "
                             f"DAAMResult.threshold(tau)")
        array = array.astype(bool)
    return array


def _pair(a, b, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_mask(a, names[0]), _as_mask(b, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def _ratio(numerator: np.ndarray, denominator: np.ndarray):
    out = np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)
    return float(out) if out.ndim == 0 else out


def _counts(a: np.ndarray) -> np.ndarray:
    return a.sum(axis=(-2, -1))


def iou(a: MaskLike, b: MaskLike):
    """Intersection over union of masks ``a`` and ``b``: a float for ``(H, W)`` masks, an array ``(N,)``
    for stacks. ``nan`` where both masks are empty."""
    a, b = _pair(a, b, ("a", "b"))
    return _ratio(_counts(a & b), _counts(a | b))


def iod(dependent: MaskLike, head: MaskLike):
    """Intersection over the dependent: ``|dependent & head| / |dependent|`` (float, or ``(N,)`` for stacks);
    ``nan`` where the dependent is empty."""
    d, h = _pair(dependent, head, ("dependent", "head"))
    return _ratio(_counts(d & h), _counts(d))


def ioh(dependent: MaskLike, head: MaskLike):
    """Intersection over the head: ``|dependent & head| / |head|`` (float, or ``(N,)`` for stacks);
    ``nan`` where the head is empty."""
    d, h = _pair(dependent, head, ("dependent", "head"))
    return _ratio(_counts(d & h), _counts(h))


def miou(predictions: Sequence[MaskLike], targets: Sequence[MaskLike]) -> float:
    """Mean IoU over the pairs ``(predictions[i], targets[i])`` (each ``(H, W)``; sizes may differ between
    pairs). Pairs where both masks are empty are left out; raises ``ValueError`` if no pair is left."""
    if hasattr(predictions, "ndim") and predictions.ndim == 2:
        predictions, targets = [predictions], [targets]
    for name, value in (("predictions", predictions), ("targets", targets)):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
            raise TypeError(f"{name} must be a sequence of masks (H, W) or a stack (N, H, W), got "
                            f"{type(value).__name__}")
    if len(predictions) != len(targets):
        raise ValueError(f"predictions and targets must pair up, got {len(predictions)} and {len(targets)} masks")
    scores = np.array([_ratio(_counts(p & t), _counts(p | t))
                       for p, t in (_pair(p, t, (f"predictions[{i}]", f"targets[{i}]"))
                                    for i, (p, t) in enumerate(zip(predictions, targets)))], dtype=float).ravel()
    scores = scores[~np.isnan(scores)]
    if scores.size == 0:
        raise ValueError("miou needs at least one pair with a non-empty mask")
    return float(scores.mean())
