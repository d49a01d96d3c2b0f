"""Attention families: the base class that extends a pipeline family with where its denoiser's image positions
attend to the prompt's tokens, and the math the families share.

An attention method (``daam.py``) asks a family four things, and nothing else about the model:

- which attention layers to trace (:meth:`AttentionFamily.text_layers`) and the processor that traces one
  (:meth:`AttentionFamily.tracing_processor`: computes exactly what the layer's own processor computes and
  hands the image queries' attention over the text keys to the trace);
- the image grid(s) those layers see (:meth:`AttentionFamily.grids`, read again from every denoiser call);
- where each text encoder's tokens lie in the text keys (:meth:`AttentionFamily.text_keys`, from the pipeline
  family's ``text_encoders``);
- how the pipeline batches conditional and unconditional rows.

Everything else about a family (noise layout, sizes, token limits, call keywords) it inherits from
``captum_diffusion.generation.pipeline_family.PipelineFamily``. Families, one module each, each one class that
describes the whole family; add one by writing a module and one line in ``registry.FAMILIES``:

==========  =============================================  =============================================
family      denoiser (pipelines)                           text keys the image attends to
==========  =============================================  =============================================
``unet``    ``UNet2DConditionModel`` (SD 1.x / 2.x / XL)   cross-attention ``attn2``: CLIP (77)
``pixart``  ``PixArtTransformer2DModel`` (PixArt-α / Σ)    cross-attention ``attn2``: T5
``sd3``     ``SD3Transformer2DModel`` (SD3 / SD3.5)        joint attention, sequence [image | CLIP 77 | T5]
``flux``    ``FluxTransformer2DModel`` (FLUX.1)            joint attention, sequence [T5 | image], double-
                                                           and single-stream blocks
==========  =============================================  =============================================
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from captum_diffusion.generation.pipeline_family import PipelineFamily, TextEncoder

Size = tuple[int, int]

#: How joint attention's text columns become a map (``DAAM(text_softmax=...)``); see :func:`image_text_attention`.
TEXT_SOFTMAX = ("text", "joint")
#: The most float32 scores :func:`image_text_attention` holds at once (heads are taken in groups under it): 64 MB
SCORE_BUDGET = 16 * 2**20


def image_text_attention(query_image: torch.Tensor, key_text: torch.Tensor, key_all: Optional[torch.Tensor],
                         scale: float, text_softmax: str = "text") -> torch.Tensor:
    """The attention of image queries over the text keys, summed over heads: ``(batch, 1, image positions, text
    positions)`` float32, from ``query_image (batch, heads, n_image, d)``, ``key_text (batch, heads, n_text, d)``
    and the layer's softmax ``scale``. Heads are taken a group at a time, so the scores held at once stay
    under ``SCORE_BUDGET`` values, not one (image x keys) matrix per head and row.

    ``text_softmax="text"`` (the default): softmax over the text keys only, i.e. the joint softmax's text
    columns renormalised to sum to 1 over the text. This is what cross-attention gives (UNet, PixArt), so
    every family's map means the same thing: how an image position divides its attention to the prompt among
    the prompt's tokens. ``"joint"``: the joint softmax's text columns as they are (``key_all``: every key of
    the joint sequence, ``(batch, heads, n, d)``); each map is then also multiplied by the share of attention
    the position gives to the text at all, a factor common to every word.
    """
    joint = text_softmax == "joint" and key_all is not None
    batch, heads, n_image, _ = query_image.shape
    per_head = batch * n_image * (key_all.shape[2] if joint else key_text.shape[2])
    group = max(1, SCORE_BUDGET // per_head)
    total = query_image.new_zeros((batch, 1, n_image, key_text.shape[2]), dtype=torch.float32)
    for start in range(0, heads, group):
        query = query_image[:, start:start + group].float()
        scores_text = (query @ key_text[:, start:start + group].float().transpose(-1, -2)) * scale
        if joint:
            scores_all = (query @ key_all[:, start:start + group].float().transpose(-1, -2)) * scale
            probs = torch.exp(scores_text - torch.logsumexp(scores_all, dim=-1, keepdim=True))
        else:
            probs = torch.softmax(scores_text, dim=-1)
        total += probs.sum(1, keepdim=True)
    return total


def call_input(args: tuple, kwargs: dict, name: str, position: int = 0):
    """A denoiser call's argument ``name``, given by keyword or at ``position``."""
    return kwargs[name] if name in kwargs else args[position]


class AttentionFamily(PipelineFamily):
    """A pipeline family whose attention maps can be traced (see the module docstring).

    Subclasses set, besides :class:`PipelineFamily`'s attributes, ``plain_processors`` (class names of the
    processors the tracing processor reproduces) and implement the methods that raise here.

    Parameters
    ----------
    pipeline : diffusers.DiffusionPipeline
        A pipeline of this family.
    """

    plain_processors: frozenset = frozenset()
    #: ``True`` where the unconditional (negative) prompt runs as a separate denoiser call of batch n (FLUX's
    #: true CFG) instead of the first half of a 2n batch.
    separate_uncond_calls = False
    #: where the denoiser's forward takes ``encoder_hidden_states`` when given positionally
    text_argument_position = 1

    # --- layers and processors
    def text_layers(self) -> list[str]:
        """Names of the attention modules whose image queries attend to the text."""
        raise NotImplementedError

    def tracing_processor(self, trace, original):
        """A processor that computes what ``original`` computes and adds its image-text attention to ``trace``."""
        raise NotImplementedError

    def check_layer(self, name: str, module, processor) -> None:
        """``ValueError`` if layer ``name`` runs a processor the tracing processor does not reproduce."""
        kind = type(processor).__name__
        if kind not in self.plain_processors:
            raise ValueError(f"layer {name} runs {kind}; attention maps on {self.name} pipelines trace only "
                             f"{sorted(self.plain_processors)} (not IP-Adapter, fused QKV or an active trace)")

    # --- grids
    def grids(self, height: int, width: int) -> list[Size]:
        """The attention grids ``(h, w)`` of a ``height x width`` px generation, predicted before generating."""
        raise NotImplementedError

    def call_grids(self, args: tuple, kwargs: dict) -> list[Size]:
        """The attention grids of one denoiser call, from its inputs (what the layers will see)."""
        raise NotImplementedError

    def extra_call(self, kwargs: dict) -> bool:
        """Whether a denoiser call is an extra pass of a step that maps leave out (SD3's skip-layer guidance)."""
        return False

    # --- text
    def call_text(self, args: tuple, kwargs: dict) -> torch.Tensor:
        """The text input (``encoder_hidden_states``, batch x text positions x channels) of a denoiser call."""
        return call_input(args, kwargs, "encoder_hidden_states", self.text_argument_position)

    def text_keys(self, max_sequence_length: Optional[int] = None) -> dict[str, TextEncoder]:
        """The text encoders whose tokens are positions of their own in the text keys, in their order.

        Parameters
        ----------
        max_sequence_length : int, optional
            The call's T5 limit (default: the pipeline's).

        Returns
        -------
        dict
            ``{"clip" or "t5": TextEncoder}`` (see :meth:`PipelineFamily.text_encoders`; ``offset`` is the first
            position, ``limit`` the length of the part).
        """
        encoders = [e for e in self.text_encoders(max_sequence_length) if e.offset is not None]
        return {e.kind.lower(): e for e in sorted(encoders, key=lambda e: e.offset)}

    def check_call(self, call: dict) -> None:
        """``ValueError`` for pipeline arguments that would break the word-to-token alignment, ``TypeError`` for
        keywords the pipeline does not take (:func:`check_pipeline_keywords`); adds the family's ``call_keywords``
        that ``call`` does not set."""
        check_pipeline_keywords(self.pipeline, call)
        for key, value in self.call_keywords.items():
            call.setdefault(key, value)


#: Keywords diffusers pipelines still take through ``**kwargs`` (deprecated callbacks).
DEPRECATED_PIPELINE_KEYWORDS = frozenset({"callback", "callback_steps"})


def check_pipeline_keywords(pipeline, keywords) -> None:
    """Refuse keywords that ``pipeline``'s call would ignore (a typo such as ``num_inference_step`` would otherwise
    run the pipeline's defaults without a word).

    Parameters
    ----------
    pipeline : callable
        A diffusers pipeline (its ``__call__`` signature is read; a pipeline's ``**kwargs`` only take
        :data:`DEPRECATED_PIPELINE_KEYWORDS`); another callable with ``**kwargs`` is not checked.
    keywords : iterable of str
        The keyword names of the call.

    Raises
    ------
    TypeError
        Naming the unknown keywords, the closest valid names, and the pipeline class.
    """
    import difflib
    import inspect

    try:
        parameters = inspect.signature(pipeline.__call__).parameters
    except (TypeError, ValueError):
        return
    named = {name for name, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    if open_ended and not any(base.__name__ == "DiffusionPipeline" for base in type(pipeline).__mro__):
        return
    unknown = sorted(set(keywords) - named - (DEPRECATED_PIPELINE_KEYWORDS if open_ended else set()))
    if unknown:
        close = {name: difflib.get_close_matches(name, sorted(named), n=1) for name in unknown}
        hints = "; ".join(f"did you mean {match[0]!r} for {name!r}?" for name, match in close.items() if match)
        raise TypeError(f"{type(pipeline).__name__} takes no keyword {', '.join(map(repr, unknown))}"
                        f"{' (' + hints + ')' if hints else ''}; the pipeline would ignore it")


class PatchGrids:
    """Grids of a transformer over ``patch_size`` x ``patch_size`` patches of the latent (SD3, PixArt): one grid,
    the latent's size divided by the patch size, so sizes are multiples of the VAE factor times the patch size.
    Mixed in before an :class:`AttentionFamily`."""

    size_explanation = "its vae_scale_factor x the transformer's patch_size"

    def size_multiple(self) -> int | None:
        scale = self.vae_scale_factor
        return None if scale is None else scale * int(self.denoiser.config.patch_size)

    def grids(self, height: int, width: int) -> list[Size]:
        multiple = self.size_multiple()
        return [(height // multiple, width // multiple)]

    def call_grids(self, args: tuple, kwargs: dict) -> list[Size]:
        latents = call_input(args, kwargs, "hidden_states")
        patch = self.denoiser.config.patch_size
        return [(latents.shape[-2] // patch, latents.shape[-1] // patch)]


def grid_ladder(latent_size: Size, depth: int) -> list[Size]:
    """Grid sizes of a UNet's levels: ``latent_size`` halved (rounding up, as stride-2 convs do) ``depth - 1`` times."""
    sizes = [tuple(latent_size)]
    for _ in range(depth - 1):
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return list(dict.fromkeys(sizes))
