"""Pipeline families, as generation looks them up: which family a pipeline is and the checks made with it.

A *family* is a pipeline layout: ``"unet"`` (Stable Diffusion 1.x / 2.x / XL and any pipeline with a ``unet``),
``"sd3"`` (``StableDiffusion3Pipeline``), ``"flux"`` (``FluxPipeline``) and ``"pixart"`` (``PixArtSigmaPipeline`` /
``PixArtAlphaPipeline``). Each is one class describing it whole (noise layout, sizes, text encoders with their
token limits and positions, call keywords, attention tracing), subclassing
``captum_diffusion.generation.pipeline_family.PipelineFamily``, in one module of ``captum_diffusion/attention/``,
and listed once in ``captum_diffusion.attention.registry.FAMILIES``. This module is the generation side's door
to them; the module-level functions of earlier releases (``noise_shape(pipeline, ...)``, ...) still work, with a
``DeprecationWarning`` naming the family method that replaces each.
"""
from __future__ import annotations

import warnings

from captum_diffusion.attention import registry
from captum_diffusion.attention.registry import family_of
from captum_diffusion.generation.pipeline_family import PipelineFamily, TextEncoder, UnregisteredFamily

__all__ = ["PipelineFamily", "TextEncoder", "check_token_limits", "describe", "family_of",
           "pipeline_family"]


def describe(pipeline) -> PipelineFamily:
    """The family of a diffusers ``pipeline``, or :class:`UnregisteredFamily` for one of no registered family.

    Parameters
    ----------
    pipeline : diffusers.DiffusionPipeline

    Returns
    -------
    PipelineFamily
        Bound to ``pipeline``.
    """
    return family_of(pipeline) or UnregisteredFamily(pipeline)


def pipeline_family(pipeline) -> str | None:
    """The name of ``pipeline``'s family (``"unet"``, ``"sd3"``, ``"flux"``, ``"pixart"``), ``None`` if it has none."""
    family = family_of(pipeline)
    return None if family is None else family.name


def check_token_limits(pipeline, prompts: list[str], max_sequence_length: int | None = None) -> None:
    """Refuse prompts that a text encoder of ``pipeline`` would truncate.

    Parameters
    ----------
    pipeline : diffusers.DiffusionPipeline
    prompts : list of str
    max_sequence_length : int, optional
        The T5 limit of the call (default: the pipeline's).

    Raises
    ------
    ValueError
        Naming the first prompt too long, the encoder and its limit (see
        :meth:`PipelineFamily.check_token_limits`).
    """
    describe(pipeline).check_token_limits(prompts, max_sequence_length)


#: earlier module-level names -> (what replaces them, how to compute them from the family objects)
_DEPRECATED = {
    "noise_shape": ("describe(pipeline).noise_shape(height, width)",
                    lambda pipeline, height, width: describe(pipeline).noise_shape(height, width)),
    "initial_latents": ("describe(pipeline).initial_latents(generators, height, width)",
                        lambda pipeline, generators, height, width:
                        describe(pipeline).initial_latents(generators, height, width)),
    "size_multiple": ("describe(pipeline).size_multiple()", lambda pipeline: describe(pipeline).size_multiple()),
    "default_max_sequence_length": ("describe(pipeline).default_max_sequence_length()",
                                    lambda pipeline: describe(pipeline).default_max_sequence_length()),
    "text_encoders": ("describe(pipeline).text_encoders(max_sequence_length)",
                      lambda pipeline, max_sequence_length=None:
                      describe(pipeline).text_encoders(max_sequence_length)),
    "tokenized_text": ("describe(pipeline).tokenized_prompt(prompt)",
                       lambda pipeline, prompt: describe(pipeline).tokenized_prompt(prompt)),
    "denoiser": ("describe(pipeline).denoiser", lambda pipeline: describe(pipeline).denoiser),
    "default_size": ("describe(pipeline).default_size()", lambda pipeline: _default_side(pipeline)),
    "FAMILIES": ("captum_diffusion.attention.registry.FAMILIES (classes)",
                 lambda: tuple(f.name for f in registry.FAMILIES)),
    "PIPELINE_CLASSES": ("the family's pipeline_classes",
                         lambda: {name: f.name for f in registry.FAMILIES for name in f.pipeline_classes}),
    "CALL_KEYWORDS": ("the family's call_keywords",
                      lambda: {f.name: dict(f.call_keywords) for f in registry.FAMILIES if f.call_keywords}),
    "T5_FAMILIES": ("the family's t5_tokenizer", lambda: tuple(f.name for f in registry.FAMILIES if f.t5_tokenizer)),
    "TextEncoderLimit": ("TextEncoder", lambda: TextEncoder),
}
_CONSTANTS = ("FAMILIES", "PIPELINE_CLASSES", "CALL_KEYWORDS", "T5_FAMILIES", "TextEncoderLimit")


def _default_side(pipeline) -> int | None:
    try:
        return describe(pipeline).default_size()[0]
    except ValueError:
        return None


def __getattr__(name: str):
    if name not in _DEPRECATED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    replacement, value = _DEPRECATED[name]
    warnings.warn(f"captum_diffusion.generation.families.{name} is deprecated; use {replacement} "
                  "(captum_diffusion.generation.families.describe)", DeprecationWarning, stacklevel=2)
    return value() if name in _CONSTANTS else value
