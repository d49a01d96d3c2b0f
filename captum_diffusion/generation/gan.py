"""GAN-style text-to-image generators (GALIP / RATLIP family) as ``prompts -> list[PIL.Image]`` callables.

Such a generator makes an image in one forward pass from a CLIP sentence embedding and a noise vector.
``CLIPConditionedGenerator`` wraps any of them for the word-level adapters (through ``TextToImage``) and the
image side: every prompt gets its own noise from its own seeded ``torch.Generator`` and its own forward
pass (RATLIP's generator mixes the prompts of a batch, so batching prompts would change the images).

``AffineGenerator`` is a small DF-GAN-like network (conditional affine blocks) for tests and examples.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import PIL.Image
import torch
from torch import nn

from captum_diffusion import checks


class _AffineBlock(nn.Module):
    """Upsample x2, 3x3 conv, then a per-channel scale and shift predicted from the condition (DF-GAN's idea)."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.affine = nn.Sequential(nn.Linear(cond_dim, out_channels), nn.ReLU(),
                                    nn.Linear(out_channels, 2 * out_channels))

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv(nn.functional.interpolate(h, scale_factor=2, mode="nearest"))
        gamma, beta = self.affine(cond)[:, :, None, None].chunk(2, dim=1)
        return nn.functional.leaky_relu(h * (1 + gamma) + beta, 0.2)


class AffineGenerator(nn.Module):
    """``forward(noise (B, z_dim), sentence (B, cond_dim)) -> images (B, 3, S, S)`` in [-1, 1] (tanh).

    A 4x4 seed from the noise, then ``log2(S / 4)`` upsampling blocks each modulated by ``[sentence, noise]``.
    ``image_size`` must be a power of two >= 8.
    """

    def __init__(self, cond_dim: int, z_dim: int = 32, channels: int = 32, image_size: int = 32):
        super().__init__()
        cond_dim = checks.positive_int(cond_dim, "cond_dim")
        z_dim = checks.positive_int(z_dim, "z_dim")
        channels = checks.positive_int(channels, "channels")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8 \
                or image_size & (image_size - 1):
            raise ValueError(f"image_size must be a power of two >= 8 (an int), got {image_size!r}")
        n_blocks = int(round(math.log2(image_size / 4)))
        self.z_dim, self.cond_dim, self.image_size = z_dim, cond_dim, image_size
        self.seed_layer = nn.Linear(z_dim, channels * 16)
        self.blocks = nn.ModuleList(_AffineBlock(channels, channels, cond_dim + z_dim) for _ in range(n_blocks))
        self.to_rgb = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, noise: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        cond = torch.cat([sentence, noise], dim=1)
        h = self.seed_layer(noise).view(noise.shape[0], -1, 4, 4)
        for block in self.blocks:
            h = block(h, cond)
        return torch.tanh(self.to_rgb(h))


class CLIPConditionedGenerator(nn.Module):
    """A one-pass text-to-image generator as a ``prompts -> list[PIL.Image.Image]`` callable.

    ``__call__(prompts, generator=None)``: ``generator`` is None (noise from ``seed``), one ``torch.Generator``
    or a list of one per prompt (``TextToImage`` passes such a list). The empty prompt ``""`` is allowed.
    Attribute ``n_forward`` counts generator forward passes (one per prompt); it is left out of the cache identity
    (``cache_identity_exclude``, see ``captum_diffusion.generation.identity``), everything else is in it.

    Parameters
    ----------
    generator : callable
        ``generator(noise (1, z_dim), sentence (1, d)) -> (1, 3, H, W)`` images in ``value_range``
        (an ``nn.Module`` or any callable, e.g. ``lambda z, s: galip_netG(z, s, eval=True)``).
    text_encoder : transformers.CLIPModel or callable
        A ``transformers.CLIPModel`` / ``CLIPTextModelWithProjection`` (then give ``tokenizer``), or
        a callable ``texts -> (n, d)`` sentence embeddings (e.g. GALIP's ``CLIP_TXT_ENCODER`` after
        ``clip.tokenize``).
    tokenizer : transformers.CLIPTokenizer, optional
        The CLIP tokenizer for a transformers ``text_encoder``.
    z_dim : int, optional
        Noise size (default: ``generator.z_dim``).
    seed : int
        The seed of every prompt's noise when no ``generator=`` list is passed to ``__call__``.
    normalize : bool
        Unit-normalise the sentence embedding first (default False, as GALIP feeds it raw).
    value_range : tuple of float
        The generator's output range ``(low, high)``, mapped to 0..255.
    device : torch.device or str, optional
        Where noise and embeddings go (default: the generator's parameters' device, else CPU).
    """

    cache_identity_exclude = ("n_forward",)

    def __init__(self, generator: Callable, text_encoder, tokenizer=None, *, z_dim: int | None = None, seed: int = 0,
                 normalize: bool = False, value_range: tuple[float, float] = (-1.0, 1.0), device=None):
        super().__init__()
        if not callable(generator):
            raise TypeError(f"generator must be callable (noise, sentence) -> images, got {type(generator).__name__}")
        if not callable(text_encoder):
            raise TypeError(f"text_encoder must be a transformers CLIP model or a callable texts -> (n, d), "
                            f"got {type(text_encoder).__name__}")
        if isinstance(text_encoder, nn.Module) and hasattr(text_encoder, "config") and tokenizer is None:
            raise ValueError("tokenizer is required with a transformers text_encoder (pass the CLIP tokenizer)")
        own = getattr(generator, "z_dim", None)  # a generator that states its noise size (AffineGenerator does)
        z_dim = own if z_dim is None else z_dim
        z_dim = checks.positive_int(z_dim, "z_dim (the generator's noise size)")
        if isinstance(own, int) and own != z_dim:
            raise ValueError(f"z_dim={z_dim} but the generator takes noise of size {own} (generator.z_dim)")
        seed = checks.seed(seed)
        if isinstance(value_range, (str, bytes)) or np.ndim(value_range) != 1 or len(value_range) != 2:
            raise ValueError(f"value_range must be (low, high), the generator's output range, got {value_range!r}")
        low = checks.finite_number(value_range[0], "value_range[0] (low)")
        high = checks.finite_number(value_range[1], "value_range[1] (high)")
        if not low < high:
            raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
        value_range = (low, high)
        checks.placement(device, None)
        self.generator, self.text_encoder, self.tokenizer = generator, text_encoder, tokenizer
        self.z_dim, self.seed, self.normalize, self.value_range = z_dim, seed, normalize, tuple(value_range)
        self._device = device
        self.n_forward = 0

    @property
    def device(self) -> torch.device:
        if self._device is not None:
            return torch.device(self._device)
        params = list(self.parameters())
        return params[0].device if params else torch.device("cpu")

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Sentence embeddings ``(n, d)`` float32 for ``prompts``."""
        prompts = list(prompts)
        if hasattr(self.text_encoder, "config"):
            tokens = self.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt").to(self.device)
            inputs = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
            if hasattr(self.text_encoder, "get_text_features"):
                out = self.text_encoder.get_text_features(**inputs)
            else:
                out = self.text_encoder(**inputs)
            if not isinstance(out, torch.Tensor):
                out = out.text_embeds if getattr(out, "text_embeds", None) is not None else out.pooler_output
        else:
            out = self.text_encoder(prompts)
            out = out[0] if isinstance(out, tuple) else out  # GALIP's encoder returns (sentence, words)
        out = torch.as_tensor(out).float().to(self.device)
        return nn.functional.normalize(out, dim=-1) if self.normalize else out

    def _generators(self, n: int, generator) -> list[torch.Generator]:
        if generator is None:
            return [torch.Generator().manual_seed(self.seed) for _ in range(n)]
        if isinstance(generator, torch.Generator):
            return [generator] * n
        if not isinstance(generator, (list, tuple)):
            raise TypeError(f"generator must be None, a torch.Generator or a list of {n} (one per prompt), got "
                            f"{type(generator).__name__}")
        generators = list(generator)
        if len(generators) != n or not all(isinstance(g, torch.Generator) for g in generators):
            raise ValueError(f"generator must be None, a torch.Generator or a list of {n} (one per prompt)")
        return generators

    @torch.no_grad()
    def images_tensor(self, prompts: Sequence[str], generator=None) -> torch.Tensor:
        """Images ``(n, 3, H, W)`` float in [0, 1], one forward pass per prompt."""
        prompts = checks.string_list(prompts, "prompts")
        if not prompts:
            return torch.zeros(0, 3, 1, 1)
        sentences = self.encode(prompts)
        if sentences.ndim != 2 or len(sentences) != len(prompts) or not torch.isfinite(sentences).all():
            raise ValueError(f"text_encoder must return finite sentence embeddings (n, d), one per prompt; got shape "
                             f"{tuple(sentences.shape)} for {len(prompts)} prompts")
        cond_dim = getattr(self.generator, "cond_dim", None)
        if isinstance(cond_dim, int) and sentences.shape[1] != cond_dim:
            raise ValueError(f"text_encoder gives {sentences.shape[1]}-d sentence embeddings but the generator takes "
                             f"cond_dim={cond_dim}: they must match")
        rows = []
        low, high = self.value_range
        for sentence, gen in zip(sentences, self._generators(len(prompts), generator)):
            noise = torch.randn(1, self.z_dim, generator=gen).to(self.device)
            out = self.generator(noise, sentence[None])
            self.n_forward += 1
            if not isinstance(out, torch.Tensor) or out.ndim != 4 or out.shape[:2] != (1, 3):
                raise ValueError(f"generator returned {type(out).__name__} "
                                 f"{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}; expected images (1, 3, H, W)")
            if not torch.isfinite(out).all():
                raise ValueError(f"generator returned NaN / inf pixels for the prompt {prompts[len(rows)]!r}")
            rows.append(((out.float() - low) / (high - low)).clamp(0, 1).cpu())
        return torch.cat(rows)

    def __call__(self, prompts: Sequence[str], generator=None) -> list[PIL.Image.Image]:
        """One RGB PIL image per prompt."""
        pixels = self.images_tensor(prompts, generator)
        arrays = (pixels.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        return [PIL.Image.fromarray(a) for a in arrays]

    forward = __call__
