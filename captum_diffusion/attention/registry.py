"""The registry of pipeline families: one line per family, the only place that lists them.

A family is one class describing it whole (``generation.pipeline_family.PipelineFamily`` for generation, extended
by ``attention.families.AttentionFamily`` for attention maps), in one module of this package. Add a family by
writing that module and adding its class to :data:`FAMILIES`.
"""
from __future__ import annotations

from captum_diffusion.attention.cross_attention import PixArtFamily, UNetFamily
from captum_diffusion.attention.families import AttentionFamily
from captum_diffusion.attention.flux import FluxFamily
from captum_diffusion.attention.sd3 import SD3Family
from captum_diffusion.generation.pipeline_family import PipelineFamily

#: every family, tried in this order (``UNetFamily``, which takes any pipeline with a ``unet``, last)
FAMILIES: tuple[type[PipelineFamily], ...] = (SD3Family, FluxFamily, PixArtFamily, UNetFamily)


def family_of(pipeline) -> PipelineFamily | None:
    """The family of ``pipeline``, bound to it.

    Parameters
    ----------
    pipeline : object
        A diffusers pipeline (anything else has no family).

    Returns
    -------
    PipelineFamily or None
        An instance of the first class in :data:`FAMILIES` that :meth:`~PipelineFamily.matches` it; ``None`` if
        none does.
    """
    family = next((family for family in FAMILIES if family.matches(pipeline)), None)
    return None if family is None else family(pipeline)


def attention_family(pipeline) -> AttentionFamily:
    """The :class:`AttentionFamily` of ``pipeline``, bound to it.

    Parameters
    ----------
    pipeline : diffusers.DiffusionPipeline
        A pipeline of a registered family whose denoiser uses attention processors.

    Returns
    -------
    AttentionFamily

    Raises
    ------
    TypeError
        If it has no such family or its denoiser does not use attention processors.
    """
    family = family_of(pipeline)
    model = getattr(family, "denoiser", None)
    if isinstance(family, AttentionFamily) and all(hasattr(model, name) for name in ("attn_processors",
                                                                                       "set_attn_processor")):
        return family
    raise TypeError(f"attention maps need a diffusers pipeline with a UNet (SD 1.x/2.x/XL), an SD3 / SD3.5, FLUX.1 or "
                    f"PixArt transformer using attention processors; got {type(pipeline).__name__}")
