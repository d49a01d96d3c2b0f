"""Generation: the seeded, batched, cached ``TextToImage`` wrapper, its image cache, the generator identity that
keys it, and one-pass (GAN) generators. A new generator type is a callable ``prompts -> images`` (see
``captum_diffusion.protocols.Generator``) or a diffusers pipeline; ``TextToImage`` wraps either."""
from __future__ import annotations

from captum_diffusion.lazy import lazy_getattr

_EXPORTS = {
    "TextToImage": "text_to_image",
    "PipelineTextToImage": "text_to_image",
    "CallableTextToImage": "text_to_image",
    "ImageCache": "cache",
    "GenerationSettings": "settings",
    "CLIPConditionedGenerator": "gan",
    "AffineGenerator": "gan",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
