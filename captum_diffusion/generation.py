"""Seeded, batched, cached text-to-image generation: the one place where images are made.

``TextToImage`` wraps a diffusers text-to-image pipeline (Stable Diffusion 1.x/2.x, SDXL, any pipeline that takes
``prompt`` and ``latents``) or any callable ``list[str] -> list[PIL.Image]`` (a GAN, a remote service).
Every explainer that shares a ``TextToImage`` shares its cache, so one sub-prompt is generated once.
"""
from __future__ import annotations

import numpy as np
import PIL.Image


def as_rgb_image(image, name: str = "image") -> PIL.Image.Image:
    """``image`` as an RGB ``PIL.Image.Image``.

    Accepts a ``PIL.Image.Image`` in any mode, or a ``numpy.ndarray`` of dtype ``uint8`` shaped ``(H, W)``
    (grayscale), ``(H, W, 1)``, ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA), values 0..255.
    Conversions: grayscale/palette/CMYK/... go through ``PIL.Image.convert("RGB")``; an image with an alpha
    channel (RGBA, LA, PA, palette with transparency) is composited onto a white background.
    Anything else (float arrays, torch tensors, paths) raises ``TypeError`` naming ``name``.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(
                f"{name} must be a PIL image or a uint8 numpy array (H, W, 3); got a numpy array of dtype "
                f"{image.dtype}: convert it, e.g. (np.clip(x, 0, 1) * 255).round().astype(np.uint8)"
            )
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
            raise TypeError(
                f"{name} must be a uint8 array shaped (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {image.shape}"
            )
        image = PIL.Image.fromarray(np.ascontiguousarray(image))
    if not isinstance(image, PIL.Image.Image):
        raise TypeError(
            f"{name} must be a PIL.Image.Image or a uint8 numpy array (H, W, 3); got {type(image).__name__}"
        )
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def as_rgb_images(images, name: str = "images") -> list[PIL.Image.Image]:
    """A list of RGB PIL images from one image or a sequence of images (see ``as_rgb_image``)."""
    if isinstance(images, (PIL.Image.Image, np.ndarray)) and not (
        isinstance(images, np.ndarray) and images.ndim == 4
    ):
        images = [images]
    try:
        items = list(images)
    except TypeError:
        raise TypeError(
            f"{name} must be an image or a sequence of PIL images / uint8 arrays; got {type(images).__name__}"
        ) from None
    return [as_rgb_image(item, f"{name}[{i}]") for i, item in enumerate(items)]
