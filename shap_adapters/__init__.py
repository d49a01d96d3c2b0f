"""shap adapters: explain prompt words (``text``) and image segments (``image``) with stock shap explainers,
maskers and plots. Names are imported lazily from the module listed in ``_EXPORTS``."""
from __future__ import annotations

from captum_diffusion.lazy import lazy_getattr

_EXPORTS = {
    "AUTO_EXACT_WORDS": "text",
    "MAX_EXACT_WORDS": "text",
    "WordMasker": "text",
    "WordPartitionMasker": "text",
    "explain_prompt": "text",
    "word_clustering": "text",
    "word_explanation": "text",
    "SegmentMasker": "image",
    "explain_image": "image",
    "image_explanation": "image",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
