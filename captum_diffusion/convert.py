"""Image conversion: every image the project accepts becomes 8-bit RGB here, once.

Accepted: a ``PIL.Image.Image`` in any mode, or a numpy array shaped ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or
``(H, W, 4)`` of dtype uint8 (0..255), uint16 (0..65535, scaled), bool (False = black), or float (values in
[0, 1], scaled). Grayscale is repeated to RGB; alpha is composited onto white. This module imports nothing of
the project.
"""
from __future__ import annotations

import numpy as np
import PIL.Image


def _array_to_uint8(image: np.ndarray, name: str) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if image.dtype == np.uint16:
        return np.round(image.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        if image.size and (not np.isfinite(image).all() or image.min() < 0.0 or image.max() > 1.0):
            finite = image[np.isfinite(image)]
            shown = f"[{finite.min()}, {finite.max()}]" if finite.size else "none finite"
            raise ValueError(f"{name} is a float array, so its values must be finite and in [0, 1]; got values "
                             f"{shown}{' and NaN/inf' if finite.size < image.size else ''} (divide 0..255 by 255)")
        return np.round(image * 255.0).astype(np.uint8)
    raise TypeError(f"{name} must be a PIL image or a numpy array of dtype uint8, uint16, bool or float in [0, 1]; "
                    f"got a numpy array of dtype {image.dtype}")


def _pil_to_rgb(image: PIL.Image.Image, name: str) -> PIL.Image.Image:
    if image.width == 0 or image.height == 0:
        raise ValueError(f"{name} is empty ({image.width}x{image.height} pixels)")
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):  # 16/32-bit grey: scale, never clip
        scale = 65535.0 if image.mode.startswith("I;16") else (1.0 if image.mode == "F" else None)
        values = np.asarray(image, dtype=np.float64)
        if scale is None:  # 32-bit int: 16-bit data is usual (PNG 16-bit grey opens as "I")
            scale = 65535.0 if values.max(initial=0) > 255 else 255.0
        return PIL.Image.fromarray(np.round(np.clip(values / scale, 0, 1) * 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:  # e.g. "LAB": PIL converts it only through ImageCms
        raise ValueError(f"{name} has PIL mode {image.mode!r}, which PIL cannot convert to RGB ({error}); convert it "
                         "to 'RGB' first") from None


def as_rgb_image(image, name: str = "image") -> PIL.Image.Image:
    """``image`` (see the module docstring) as an RGB ``PIL.Image.Image``; ``TypeError`` / ``ValueError``
    naming ``name`` for anything else (torch tensors, paths, 0-pixel images, floats outside [0, 1])."""
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
            raise TypeError(f"{name} must be an array shaped (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
                            f"got shape {image.shape}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"{name} is empty (shape {image.shape})")
        image = PIL.Image.fromarray(np.ascontiguousarray(_array_to_uint8(image, name)))
    if not isinstance(image, PIL.Image.Image):
        raise TypeError(f"{name} must be a PIL.Image.Image or a numpy array (H, W, 3); got {type(image).__name__}")
    return _pil_to_rgb(image, name)


def as_rgb_images(images, name: str = "images") -> list[PIL.Image.Image]:
    """A list of RGB PIL images from one image, a ``(n, H, W, C)`` array or a sequence of images."""
    if isinstance(images, PIL.Image.Image) or (isinstance(images, np.ndarray) and images.ndim < 4):
        images = [images]
    if isinstance(images, (str, bytes)):
        raise TypeError(f"{name} must be an image or a sequence of images, got {type(images).__name__}")
    try:
        items = list(images)
    except TypeError:
        raise TypeError(f"{name} must be an image or a sequence of PIL images / arrays; "
                        f"got {type(images).__name__}") from None
    return [as_rgb_image(item, f"{name}[{i}]") for i, item in enumerate(items)]


def to_rgb_array(image, name: str = "image") -> np.ndarray:
    """``image`` as a uint8 array ``(H, W, 3)`` (conversions as in ``as_rgb_image``)."""
    return np.asarray(as_rgb_image(image, name), dtype=np.uint8)
