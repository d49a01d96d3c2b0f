"""Attention maps: per-word maps read off a text-to-image model's attention while it generates.

Where things live (add a method or a family in one file):

- methods, one module each, implementing ``captum_diffusion.protocols.AttentionMethod``: ``daam.py`` (DAAM:
  running sums of the image's attention to each word's tokens, over heads, layers and steps);
- pipeline families, one module each, one class describing the family whole: noise layout, sizes, text encoders
  with their token limits and positions, call keywords (from ``generation.pipeline_family.PipelineFamily``), and
  which layers to trace, with which processor, on which grid (from ``families.AttentionFamily``, the base class
  with the shared math): ``cross_attention.py`` (UNet SD 1.x / 2.x / XL, PixArt-Σ), ``sd3.py`` (SD3 / SD3.5 joint
  attention), ``flux.py`` (FLUX.1 double- and single-stream joint attention). ``registry.py`` lists them, one
  line each (``FAMILIES``), and finds a pipeline's (``family_of``, ``attention_family``).
"""
from __future__ import annotations

from captum_diffusion.lazy import lazy_getattr

_EXPORTS = {
    "DAAM": "daam",
    "DAAMResult": "daam",
    "threshold_maps": "daam",
    "attention_family": "registry",
    "family_of": "registry",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
