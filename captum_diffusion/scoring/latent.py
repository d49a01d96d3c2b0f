"""``LatentSimilarity``: cosine of the pipeline's own VAE latents (the paper's "next step", no CLIP needed)."""
from __future__ import annotations

import numpy as np
import torch

from captum_diffusion import checks
from captum_diffusion.convert import as_rgb_image, as_rgb_images
from captum_diffusion.scoring.base import batches, cosine


class LatentSimilarity:
    """Cosine similarity of the pipeline's own VAE latents (no CLIP needed; the paper's suggested next payoff).

    Each image is resized (bicubic) to the reference image's size, scaled to [-1, 1] and encoded with
    ``vae.encode(x).latent_dist.mean`` (deterministic), then put in the space the denoiser works in,
    ``(mean - shift_factor) * scaling_factor`` with the VAE config's values (SD3 and FLUX VAEs have 16 channels and
    a ``shift_factor``; without the shift their latents share a common offset that inflates every cosine; SD 1.x /
    2.x / XL VAEs have no shift, and a positive scale leaves a cosine unchanged); latents ``(C, H/s, W/s)`` are
    flattened and compared by cosine. Note this payoff is spatial: the same object elsewhere in the image scores
    lower.

    Parameters
    ----------
    source : TextToImage or diffusers.DiffusionPipeline or diffusers.AutoencoderKL
        A ``TextToImage`` wrapping a diffusers pipeline, a diffusers pipeline with a ``vae``, or a
        diffusers ``AutoencoderKL`` (anything whose ``encode`` returns ``latent_dist`` or ``latents``).
    batch_size : int
        Images encoded per forward pass.
    """

    def __init__(self, source, *, batch_size: int = 8):
        vae = getattr(source, "pipeline", None) or source  # a generator over a pipeline: its pipeline
        vae = getattr(vae, "vae", vae)
        if not isinstance(vae, torch.nn.Module) or not callable(getattr(vae, "encode", None)):
            raise TypeError(
                "source must be a TextToImage over a diffusers pipeline, a pipeline with a .vae, or a diffusers "
                f"AutoencoderKL; got {type(source).__name__}"
            )
        self.vae = vae
        self.batch_size = checks.positive_int(batch_size, "batch_size")
        blocks = getattr(getattr(vae, "config", None), "block_out_channels", None)
        #: the encoder's downsampling factor: images smaller than this on a side cannot be encoded
        self.scale_factor = 2 ** (len(blocks) - 1) if isinstance(blocks, (list, tuple)) and blocks else 1
        config = getattr(vae, "config", None)
        #: latents are ``(mean - shift_factor) * scaling_factor`` (0 and 1 when the VAE config has none)
        self.shift_factor = float(getattr(config, "shift_factor", None) or 0.0)
        self.scaling_factor = float(getattr(config, "scaling_factor", None) or 1.0)

    @torch.no_grad()
    def embed_images(self, images, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Unit-norm flattened, shifted and scaled VAE latents, shape ``(n, C * H/s * W/s)``, float32, CPU.

        ``size`` is ``(width, height)`` in pixels to resize to (default: the first image's size)."""
        images = as_rgb_images(images)
        if size is not None:
            if isinstance(size, (str, bytes)) or np.ndim(size) != 1 or len(size) != 2:
                raise ValueError(f"size must be (width, height) in pixels or None, got {size!r}")
            size = tuple(checks.positive_int(v, "size (width, height)") for v in size)
        if not images:
            return torch.zeros(0, 0)
        size = size or images[0].size
        if min(size) < self.scale_factor:
            raise ValueError(f"images (resized to size {size}, width x height) must be at least {self.scale_factor} "
                             f"pixels on each side for this VAE (its downsampling factor)")
        parameter = next(self.vae.parameters())
        chunks = []
        for batch in batches(images, self.batch_size):
            pixels = np.stack([np.asarray(image.resize(size, resample=3)) for image in batch])  # 3 = BICUBIC
            x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            encoded = self.vae.encode(x.to(parameter.device, parameter.dtype))
            latents = encoded.latent_dist.mean if hasattr(encoded, "latent_dist") else encoded.latents
            latents = (latents.float() - self.shift_factor) * self.scaling_factor
            chunks.append(torch.nn.functional.normalize(latents.flatten(1), dim=-1).cpu())
        return torch.cat(chunks)

    def image_similarity(self, images, reference_image) -> np.ndarray:
        """Cosine between each image's latents and ``reference_image``'s: float64 array ``(n,)``."""
        reference_image = as_rgb_image(reference_image, "reference_image")
        if min(reference_image.size) < self.scale_factor:
            raise ValueError(f"reference_image is {reference_image.width}x{reference_image.height} pixels; this VAE "
                             f"needs at least {self.scale_factor} on each side")
        reference = self.embed_images([reference_image])
        return cosine(self.embed_images(images, size=reference_image.size), reference)[:, 0]
