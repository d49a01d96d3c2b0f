"""What differs between families of diffusers text-to-image pipelines, in one place.

A *family* is a pipeline layout: ``"unet"`` (Stable Diffusion 1.x / 2.x / XL and any pipeline with a ``unet``),
``"sd3"`` (``StableDiffusion3Pipeline``: MMDiT, CLIP + CLIP + T5), ``"flux"`` (``FluxPipeline``: MMDiT, CLIP + T5,
packed latents, guidance embedded instead of classifier-free guidance) and ``"pixart"`` (``PixArtSigmaPipeline`` /
``PixArtAlphaPipeline``: DiT with cross-attention to T5). Per family this module knows the initial-noise layout,
the image sizes the family accepts, the text encoders it runs with their token limits, and the call keywords
that keep a generation what was asked for. ``generation.TextToImage`` and ``attention`` read it from here.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from captum_diffusion import checks

FAMILIES = ("unet", "sd3", "flux", "pixart")
#: families whose pipeline call takes ``max_sequence_length`` (the T5 token limit)
T5_FAMILIES = ("sd3", "flux", "pixart")
#: diffusers pipeline class name -> family (subclasses are found through their bases)
PIPELINE_CLASSES = {"StableDiffusion3Pipeline": "sd3", "FluxPipeline": "flux", "PixArtSigmaPipeline": "pixart",
                    "PixArtAlphaPipeline": "pixart"}
#: keywords every call of the family gets: PixArt's resolution binning would generate at another size than the
#: seeded latents were drawn for (then resize), and its caption cleaning rewrites the prompt (lower case, no URLs,
#: ...), so a word game would no longer play the words it lists
CALL_KEYWORDS = {"pixart": {"use_resolution_binning": False, "clean_caption": False}}


def pipeline_family(pipeline) -> str | None:
    """The family of a diffusers pipeline (one of ``FAMILIES``), by its class (and bases) or, for any other
    pipeline with a ``unet``, ``"unet"``; ``None`` for anything else."""
    for cls in type(pipeline).__mro__:
        if cls.__name__ in PIPELINE_CLASSES:
            return PIPELINE_CLASSES[cls.__name__]
    return "unet" if getattr(pipeline, "unet", None) is not None else None


def denoiser(pipeline) -> torch.nn.Module | None:
    """The model that predicts the noise: ``pipeline.unet`` or ``pipeline.transformer`` (``None`` if neither)."""
    unet = getattr(pipeline, "unet", None)
    return unet if unet is not None else getattr(pipeline, "transformer", None)


def size_multiple(pipeline) -> int | None:
    """Image heights and widths must be multiples of this many pixels: the VAE's downsampling factor, times the
    transformer's patch size (SD3, PixArt) or times 2 for FLUX's 2x2 latent packing."""
    family, scale = pipeline_family(pipeline), getattr(pipeline, "vae_scale_factor", None)
    if family is None or not isinstance(scale, int):
        return None
    if family == "flux":
        return scale * 2
    if family in ("sd3", "pixart"):
        return scale * int(denoiser(pipeline).config.patch_size)
    return scale


def default_size(pipeline) -> int | None:
    """The pipeline's default image side in pixels (its own default when called without ``height`` / ``width``)."""
    scale, model = getattr(pipeline, "vae_scale_factor", None), denoiser(pipeline)
    if pipeline_family(pipeline) == "flux":
        sample = getattr(pipeline, "default_sample_size", None)
    else:
        sample = getattr(getattr(model, "config", None), "sample_size", None)
    return sample * scale if isinstance(sample, int) and isinstance(scale, int) else None


def noise_shape(pipeline, height: int, width: int) -> tuple[int, int, int]:
    """``(channels, height / s, width / s)`` of one image's initial Gaussian noise before any packing (s = the
    VAE's ``vae_scale_factor``): the UNet's or transformer's input channels (16 for SD3, 4 for PixArt); FLUX draws
    ``in_channels / 4`` (16) channels, which ``initial_latents`` packs 2x2 into ``(h/2 * w/2, 64)`` tokens."""
    scale, config = pipeline.vae_scale_factor, denoiser(pipeline).config
    if pipeline_family(pipeline) == "flux":
        return config.in_channels // 4, 2 * (height // (scale * 2)), 2 * (width // (scale * 2))
    return config.in_channels, height // scale, width // scale


def initial_latents(pipeline, generators: list[torch.Generator], height: int, width: int) -> torch.Tensor:
    """The ``latents=`` of a pipeline call: one noise sample ``noise_shape`` per generator (each drawn from its own
    generator alone, so a row never depends on the others), in the family's layout and the denoiser's dtype:
    ``(n, C, h, w)``, or for FLUX packed ``(n, h/2 * w/2, 4 C)``, exactly the noise the pipeline itself would
    draw from the same list of generators."""
    shape = noise_shape(pipeline, height, width)
    noise = torch.cat([torch.randn((1, *shape), generator=generator) for generator in generators])
    if pipeline_family(pipeline) == "flux":
        noise = pack_flux_latents(noise)
    return noise.to(dtype=denoiser(pipeline).dtype)


def pack_flux_latents(latents: torch.Tensor) -> torch.Tensor:
    """FLUX's 2x2 packing: ``(n, C, h, w)`` -> ``(n, h/2 * w/2, 4 C)``, tokens in row-major order over the
    ``(h/2, w/2)`` grid, each token's channels ordered (C, dy, dx)."""
    n, channels, height, width = latents.shape
    patches = latents.view(n, channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(n, (height // 2) * (width // 2), channels * 4)


def default_max_sequence_length(pipeline) -> int | None:
    """The T5 token limit the pipeline uses when called without ``max_sequence_length`` (SD3 256, FLUX 512,
    PixArt-Σ 300: the default of its ``__call__``); ``None`` for a family without T5."""
    if pipeline_family(pipeline) not in T5_FAMILIES:
        return None
    parameter = inspect.signature(type(pipeline).__call__).parameters.get("max_sequence_length")
    return None if parameter is None or parameter.default is inspect.Parameter.empty else int(parameter.default)


@dataclass(frozen=True)
class TextEncoderLimit:
    """One text encoder a pipeline runs on the prompt: its component name (``"text_encoder_3"``), its kind
    (``"CLIP"``, ``"T5"``), the tokenizer that feeds it and the most tokens it keeps (start / end tokens
    included); the pipeline silently truncates anything longer."""
    name: str
    kind: str
    tokenizer: object
    limit: int

    def count(self, prompts: list[str]) -> list[int]:
        """Tokens of each prompt under this encoder's tokenizer (special tokens included, nothing truncated)."""
        return [len(ids) for ids in self.tokenizer(prompts, truncation=False, verbose=False)["input_ids"]]


def text_encoders(pipeline, max_sequence_length: int | None = None) -> list[TextEncoderLimit]:
    """The text encoders ``pipeline`` runs on a prompt, with the token limit of each: CLIP tokenizers their
    ``model_max_length`` (77); T5 ``max_sequence_length`` (default: ``default_max_sequence_length``). UNet
    pipelines: ``tokenizer`` (and ``tokenizer_2`` for SDXL); SD3: two CLIP and ``tokenizer_3`` (T5, when
    ``text_encoder_3`` is loaded); FLUX: CLIP and ``tokenizer_2`` (T5); PixArt: ``tokenizer`` (T5)."""
    family = pipeline_family(pipeline)
    t5_limit = max_sequence_length or default_max_sequence_length(pipeline)
    t5_names = {"sd3": ("tokenizer_3",), "flux": ("tokenizer_2",), "pixart": ("tokenizer",)}.get(family, ())
    found = []
    for name in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        tokenizer = getattr(pipeline, name, None)
        encoder_name = name.replace("tokenizer", "text_encoder")
        if tokenizer is None or getattr(pipeline, encoder_name, "absent") is None:  # e.g. SD3 loaded without T5
            continue
        if name in t5_names:
            found.append(TextEncoderLimit(encoder_name, "T5", tokenizer, t5_limit))
        elif getattr(tokenizer, "model_max_length", 10**9) < 10**6:
            found.append(TextEncoderLimit(encoder_name, "CLIP", tokenizer, tokenizer.model_max_length))
    return found


def tokenized_text(pipeline, prompt: str) -> str:
    """The prompt as ``pipeline`` hands it to its tokenizers (called with ``CALL_KEYWORDS``): PixArt lower-cases
    and strips it (its ``_text_preprocessing`` without caption cleaning); the others leave it as it is."""
    return prompt.lower().strip() if pipeline_family(pipeline) == "pixart" else prompt


def check_token_limits(pipeline, prompts: list[str], max_sequence_length: int | None = None) -> None:
    """Raise ``ValueError`` naming the first prompt that a text encoder of ``pipeline`` would truncate (see
    ``text_encoders``; each prompt counted as the pipeline tokenizes it, ``tokenized_text``), the encoder and its
    limit; pipelines otherwise cut it silently, with a logged warning."""
    texts = [tokenized_text(pipeline, prompt) for prompt in prompts]
    for encoder in text_encoders(pipeline, max_sequence_length) if prompts else ():
        for prompt, n_tokens in zip(prompts, encoder.count(texts)):
            if n_tokens > encoder.limit:
                source = "max_sequence_length" if encoder.kind == "T5" else "tokenizer.model_max_length"
                raise ValueError(
                    f"prompt {checks.shortened(prompt, 60)!r} is {n_tokens} tokens long for {encoder.name} ({encoder.kind}, start/end "
                    f"included) but it accepts at most {encoder.limit} ({source}); the pipeline would silently cut "
                    "the rest: shorten the prompt" + (" or raise max_sequence_length" if encoder.kind == "T5" else "")
                )
