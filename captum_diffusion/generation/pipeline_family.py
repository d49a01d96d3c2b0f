"""What a family of diffusers text-to-image pipelines is: the base class every family describes itself with.

A *family* is a pipeline layout (UNet SD 1.x / 2.x / XL, SD3, FLUX, PixArt, ...). Its :class:`PipelineFamily`
object, bound to one pipeline, answers everything generation needs to know about it: the initial-noise layout,
the image sizes it accepts (and why, for error messages), its default size, the text encoders it runs with their
token limits and positions, its default T5 ``max_sequence_length``, the call keywords that keep a generation
what was asked for, and how it hands a prompt to its tokenizers. The attention families
(``captum_diffusion.attention.families.AttentionFamily``) extend this class with what attention maps need, and
every family lives in one module of ``captum_diffusion/attention/`` with one line in the registry
``captum_diffusion.attention.registry.FAMILIES``.

This module imports nothing of the project but ``checks``, so both ``generation`` and ``attention`` build on it.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from captum_diffusion import checks

#: a tokenizer whose ``model_max_length`` is at least this is unbounded (T5 tokenizers say ~1e30)
UNBOUNDED_TOKENS = 10**6


@dataclass(frozen=True)
class TextEncoder:
    """One text encoder a pipeline runs on the prompt.

    Parameters
    ----------
    name : str
        The pipeline component, e.g. ``"text_encoder_3"``.
    kind : str
        ``"CLIP"`` or ``"T5"``.
    tokenizer : object
        The tokenizer that feeds it.
    limit : int
        The most tokens it keeps, start / end tokens included; the pipeline silently truncates the rest.
    offset : int or None
        The first position of its tokens in the text sequence the denoiser attends to (SD3: CLIP at 0, T5 at
        77); ``None`` when its tokens are not positions of their own there (SDXL's and SD3's second CLIP share the
        first one's positions, FLUX's CLIP only gives a pooled vector).
    """

    name: str
    kind: str
    tokenizer: object
    limit: int
    offset: int | None = None

    def count(self, prompts: list[str]) -> list[int]:
        """Tokens of each prompt under this encoder's tokenizer.

        Parameters
        ----------
        prompts : list of str
            Prompts as the pipeline hands them to the tokenizer (see :meth:`PipelineFamily.tokenized_prompt`).

        Returns
        -------
        list of int
            Token counts, special tokens included, nothing truncated.
        """
        return [len(ids) for ids in self.tokenizer(prompts, truncation=False, verbose=False)["input_ids"]]


class PipelineFamily:
    """The description of one pipeline family, bound to a pipeline of that family.

    Subclasses set the class attributes and override the methods where their family differs; the defaults
    describe a UNet-like layout (noise ``(in_channels, h / s, w / s)``, sizes multiples of the VAE factor ``s``).

    Parameters
    ----------
    pipeline : diffusers.DiffusionPipeline
        A pipeline of this family.

    Attributes
    ----------
    name : str
        The family's name (``"unet"``, ``"sd3"``, ...).
    pipeline_classes : tuple of str
        diffusers pipeline class names of the family (subclasses are found through their bases).
    denoiser_attribute : str
        The pipeline component that predicts the noise (``"unet"`` or ``"transformer"``).
    t5_tokenizer : str or None
        The tokenizer component that feeds T5 (``None``: the family has no T5, hence no ``max_sequence_length``).
    text_key_kinds : tuple of str
        Encoder kinds in the order their tokens lie in the denoiser's text sequence (SD3: ``("CLIP", "T5")``).
    call_keywords : dict
        Keywords every pipeline call of the family gets.
    size_explanation : str
        Why sizes are multiples of :meth:`size_multiple`, for error messages.
    """

    name = "?"
    pipeline_classes: tuple[str, ...] = ()
    denoiser_attribute = "transformer"
    t5_tokenizer: str | None = None
    text_key_kinds: tuple[str, ...] = ()
    call_keywords: dict = {}
    size_explanation = "its vae_scale_factor"

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.denoiser = getattr(pipeline, self.denoiser_attribute, None)

    @classmethod
    def matches(cls, pipeline) -> bool:
        """Whether ``pipeline`` belongs to this family: its class or a base is one of ``pipeline_classes``."""
        return any(base.__name__ in cls.pipeline_classes for base in type(pipeline).__mro__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.pipeline).__name__})"

    # ------------------------------------------------------------------------------------------------ sizes
    @property
    def vae_scale_factor(self) -> int | None:
        """Pixels per latent position (the VAE's downsampling factor), ``None`` if the pipeline has none."""
        scale = getattr(self.pipeline, "vae_scale_factor", None)
        return scale if isinstance(scale, int) and not isinstance(scale, bool) else None

    def size_multiple(self) -> int | None:
        """Image heights and widths must be multiples of this many pixels (see ``size_explanation``).

        Returns
        -------
        int or None
            The VAE factor here; families with patches or packing multiply it. ``None``: unknown.
        """
        return self.vae_scale_factor

    def default_sample_size(self) -> int | None:
        """The pipeline's default latent side (``denoiser.config.sample_size``), ``None`` if unknown."""
        sample = getattr(getattr(self.denoiser, "config", None), "sample_size", None)
        return sample if isinstance(sample, int) else None

    def default_size(self) -> tuple[int, int]:
        """The pipeline's default image size, what it makes when called without ``height`` / ``width``.

        Returns
        -------
        tuple of int
            ``(height, width)`` in pixels.

        Raises
        ------
        ValueError
            If the pipeline has no default size (then give ``height`` and ``width``).
        """
        sample, scale = self.default_sample_size(), self.vae_scale_factor
        if sample is None or scale is None:
            raise ValueError(f"{type(self.pipeline).__name__} has no default image size; give height and width")
        return sample * scale, sample * scale

    # ------------------------------------------------------------------------------------------------ noise
    def noise_shape(self, height: int, width: int) -> tuple[int, int, int] | None:
        """The shape of one image's initial Gaussian noise, before any packing.

        Parameters
        ----------
        height, width : int
            Image size in pixels.

        Returns
        -------
        tuple of int or None
            ``(channels, height / s, width / s)`` with ``s`` the VAE factor and the denoiser's input channels;
            ``None`` where the layout is unknown (then the pipeline draws the noise itself).
        """
        scale = self.vae_scale_factor
        if scale is None or self.denoiser is None:
            return None
        return self.denoiser.config.in_channels, height // scale, width // scale

    def pack_latents(self, noise: torch.Tensor) -> torch.Tensor:
        """The noise ``(n, C, h, w)`` in the layout the pipeline takes as ``latents=`` (unchanged here)."""
        return noise

    def initial_latents(self, generators: list[torch.Generator], height: int | None,
                        width: int | None) -> torch.Tensor | None:
        """The ``latents=`` of a pipeline call: one noise sample per generator, each drawn from its own generator
        alone (a row never depends on the others), exactly the noise the pipeline would draw itself.

        Parameters
        ----------
        generators : list of torch.Generator
            One seeded CPU generator per image.
        height, width : int or None
            Image size in pixels (``None``: unknown, no latents).

        Returns
        -------
        torch.Tensor or None
            ``(n, C, h, w)`` (FLUX: packed ``(n, h/2 * w/2, 4 C)``) in the denoiser's dtype; ``None`` where the
            layout or the size is unknown.
        """
        shape = None if height is None or width is None else self.noise_shape(height, width)
        if shape is None:
            return None
        noise = torch.cat([torch.randn((1, *shape), generator=generator) for generator in generators])
        return self.pack_latents(noise).to(dtype=self.denoiser.dtype)

    # ------------------------------------------------------------------------------------------------- text
    def default_max_sequence_length(self) -> int | None:
        """The T5 token limit the pipeline uses when called without ``max_sequence_length`` (the default of its
        ``__call__``: SD3 256, FLUX 512, PixArt-Σ 300); ``None`` for a family without T5."""
        if self.t5_tokenizer is None:
            return None
        parameter = inspect.signature(type(self.pipeline).__call__).parameters.get("max_sequence_length")
        return None if parameter is None or parameter.default is inspect.Parameter.empty else int(parameter.default)

    def text_encoders(self, max_sequence_length: int | None = None) -> list[TextEncoder]:
        """The text encoders the pipeline runs on a prompt, in component order, with their limits and positions.

        Components ``tokenizer``, ``tokenizer_2``, ``tokenizer_3`` (those loaded with their encoder): the one
        named by ``t5_tokenizer`` is T5 with limit ``max_sequence_length``; the others are CLIP with their
        ``model_max_length`` (77). Offsets follow ``text_key_kinds``: the first encoder of each kind there gets the
        next positions of the text sequence.

        Parameters
        ----------
        max_sequence_length : int, optional
            The T5 limit of the call (default: :meth:`default_max_sequence_length`).

        Returns
        -------
        list of TextEncoder
        """
        t5_limit = max_sequence_length or self.default_max_sequence_length()
        found, placed, offset = [], set(), 0
        for name in ("tokenizer", "tokenizer_2", "tokenizer_3"):
            tokenizer = getattr(self.pipeline, name, None)
            encoder_name = name.replace("tokenizer", "text_encoder")
            if tokenizer is None or getattr(self.pipeline, encoder_name, "absent") is None:  # e.g. SD3 without T5
                continue
            if name == self.t5_tokenizer:
                kind, limit = "T5", t5_limit
            elif getattr(tokenizer, "model_max_length", UNBOUNDED_TOKENS) < UNBOUNDED_TOKENS:
                kind, limit = "CLIP", int(tokenizer.model_max_length)
            else:
                continue
            found.append(TextEncoder(encoder_name, kind, tokenizer, limit))
        ordered = []
        for kind in self.text_key_kinds:  # the first encoder of each kind holds positions of its own
            encoder = next((e for e in found if e.kind == kind and e.name not in placed), None)
            if encoder is not None:
                placed.add(encoder.name)
                ordered.append((encoder.name, offset))
                offset += encoder.limit or 0
        offsets = dict(ordered)
        return [TextEncoder(e.name, e.kind, e.tokenizer, e.limit, offsets.get(e.name)) for e in found]

    def tokenized_prompt(self, prompt: str) -> str:
        """The prompt as the pipeline hands it to its tokenizers when called with ``call_keywords`` (unchanged
        here; PixArt lower-cases and strips it)."""
        return prompt

    def check_token_limits(self, prompts: list[str], max_sequence_length: int | None = None) -> None:
        """Refuse prompts that a text encoder would truncate (pipelines cut them silently, with a logged warning).

        Parameters
        ----------
        prompts : list of str
            Prompts to generate, each counted as the pipeline tokenizes it (:meth:`tokenized_prompt`).
        max_sequence_length : int, optional
            The T5 limit of the call (default: the pipeline's).

        Raises
        ------
        ValueError
            Naming the first prompt too long, the encoder and its limit.
        """
        texts = [self.tokenized_prompt(prompt) for prompt in prompts]
        for encoder in self.text_encoders(max_sequence_length) if prompts else ():
            for prompt, n_tokens in zip(prompts, encoder.count(texts)):
                if n_tokens > encoder.limit:
                    t5 = encoder.kind == "T5"
                    raise ValueError(
                        f"prompt {checks.shortened(prompt, 60)!r} is {n_tokens} tokens long for {encoder.name} "
                        f"({encoder.kind}, start/end included) but it accepts at most {encoder.limit} "
                        f"({'max_sequence_length' if t5 else 'tokenizer.model_max_length'}); the pipeline would "
                        "silently cut the rest: shorten the prompt" + (" or raise max_sequence_length" if t5 else ""))


class UnregisteredFamily(PipelineFamily):
    """A diffusers pipeline of no registered family: sizes by its VAE factor, its CLIP tokenizers' limits, and no
    noise layout (it draws its own noise from the per-prompt generators)."""

    name = "unregistered"

    def __init__(self, pipeline):
        super().__init__(pipeline)
        unet = getattr(pipeline, "unet", None)
        self.denoiser = unet if unet is not None else self.denoiser

    @classmethod
    def matches(cls, pipeline) -> bool:
        return False

    def noise_shape(self, height: int, width: int) -> None:
        return None
