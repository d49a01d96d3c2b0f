"""lime adapters: explain prompt words (``text``, ``LimeTextExplainer``) and image segments (``image``,
``LimeImageExplainer``). Names are imported lazily from the module listed in ``_EXPORTS``."""
from __future__ import annotations

from captum_diffusion.lazy import lazy_getattr

_EXPORTS = {
    "MASK_STRING": "text",
    "WordClassifierFn": "text",
    "explain_prompt": "text",
    "word_explainer": "text",
    "word_weights": "text",
    "explain_image": "image",
    "segment_weights": "image",
    "word_weight_maps": "image",
    "top_segments": "image",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
