"""Attention maps: per-word maps read off a text-to-image model's attention while it generates. One module per
method (``daam``: DAAM on UNet cross-attention); each implements ``captum_diffusion.protocols.AttentionMethod``."""
from __future__ import annotations

from captum_diffusion.lazy import lazy_getattr

_EXPORTS = {
    "DAAM": "daam",
    "DAAMResult": "daam",
    "threshold_maps": "daam",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
