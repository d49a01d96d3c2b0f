"""Metrics to judge explanations: rank alignment and RMSE (Gupta & Kanoria), Shapley axioms,
mask overlap (DAAM: IoU, mIoU, IoD, IoH), CLIP score (RATLIP), faithfulness (deletion curves, AOPC) and the
agreement of word rankings across seeds."""
from __future__ import annotations

from captum_diffusion.lazy import lazy_getattr

_EXPORTS = {
    "percent_ranks_aligned": "ranking",
    "rmse": "ranking",
    "normalize_scores": "ranking",
    "check_efficiency": "axioms",
    "check_symmetry": "axioms",
    "check_null_player": "axioms",
    "iou": "masks",
    "miou": "masks",
    "iod": "masks",
    "ioh": "masks",
    "clip_score": "clip",
    "FaithfulnessScore": "faithfulness",
    "deletion_curve": "faithfulness",
    "insertion_curve": "faithfulness",
    "random_order_curves": "faithfulness",
    "attribution_order": "faithfulness",
    "aopc": "faithfulness",
    "comprehensiveness": "faithfulness",
    "sufficiency": "faithfulness",
    "faithfulness_scores": "faithfulness",
    "deletion_curves": "faithfulness",
    "seed_agreement": "agreement",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
