"""ShapesWorld: a tiny world of flat-coloured shapes on white where the truth of every image is known.

Vocabulary: colours ``red green blue yellow``, shapes ``circle square triangle``, positions
``left right top bottom`` and function words ``a on the and``. Prompts follow three templates:

- ``"a {colour} {shape}"``: one object anywhere;
- ``"a {colour} {shape} on the {position}"``: one object entirely inside that half of the image;
- ``"a {colour} {shape} and a {colour} {shape}"``: the first object in the left half, the second in the right.

:func:`render` draws a 64x64 RGB image of a prompt with ground-truth masks per object and per word;
:func:`analyse` finds the objects in *any* image of this world (a generated one too) by colour and
reports colour, shape, mask, centroid and position. Masks are ``bool`` arrays of shape (64, 64), indexed
``[row, column]`` (``y, x``) in pixels.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from captum_diffusion import checks
from captum_diffusion.convert import to_rgb_array
from captum_diffusion.words import split_words

IMAGE_SIZE = 64
BACKGROUND = (255, 255, 255)
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 200, 20),
}
SHAPES = ("circle", "square", "triangle")
POSITIONS = ("left", "right", "top", "bottom")
FUNCTION_WORDS = ("a", "on", "the", "and")
VOCABULARY = tuple(COLOURS) + SHAPES + POSITIONS + FUNCTION_WORDS

SINGLE_SIZE = (16, 26)  # side of a single object's bounding box in pixels, inclusive range
PAIR_SIZE = (14, 22)  # side of each object's bounding box in a two-object prompt


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a prompt: ``region`` is ``None`` (anywhere) or one of left/right/top/bottom."""

    colour: str
    shape: str
    region: Optional[str] = None


def parse_prompt(prompt: str) -> list[ObjectSpec]:
    """The objects a ShapesWorld prompt asks for, in prompt order.

    Raises ``ValueError`` when ``prompt`` does not follow one of the three templates (see module docstring).
    """
    words = split_words(prompt)
    c, s = list(COLOURS), SHAPES
    if len(words) == 3 and words[0] == "a" and words[1] in c and words[2] in s:
        return [ObjectSpec(words[1], words[2])]
    if (len(words) == 6 and words[0] == "a" and words[1] in c and words[2] in s
            and words[3:5] == ["on", "the"] and words[5] in POSITIONS):
        return [ObjectSpec(words[1], words[2], words[5])]
    if (len(words) == 7 and words[0] == "a" and words[1] in c and words[2] in s and words[3] == "and"
            and words[4] == "a" and words[5] in c and words[6] in s):
        return [ObjectSpec(words[1], words[2], "left"), ObjectSpec(words[5], words[6], "right")]
    raise ValueError(
        f"prompt {prompt!r} is not a ShapesWorld prompt; valid forms are 'a {{colour}} {{shape}}', "
        f"'a {{colour}} {{shape}} on the {{position}}' and 'a {{colour}} {{shape}} and a {{colour}} {{shape}}' "
        f"with colour in {list(COLOURS)}, shape in {list(SHAPES)}, position in {list(POSITIONS)}"
    )


# ----------------------------------------------------------------------------------------------- prompts

def _single_prompts() -> list[str]:
    return [f"a {c} {s}" for c in COLOURS for s in SHAPES]


def _position_prompts() -> list[str]:
    return [f"a {c} {s} on the {p}" for c in COLOURS for s in SHAPES for p in POSITIONS]


def _pair_prompts() -> list[str]:
    objs = [(c, s) for c in COLOURS for s in SHAPES]
    return [f"a {c1} {s1} and a {c2} {s2}" for (c1, s1), (c2, s2) in itertools.product(objs, objs)]


def _is_held_out(prompt: str) -> bool:
    """Held-out rule (fixed, documented): with colour index ci, shape index si (of COLOURS / SHAPES),
    a position prompt is held out when (ci + si) % 4 == position index (one position per colour-shape,
    12 prompts), and a two-object prompt when (3*ci1 + si1 + 3*ci2 + si2) % 4 == 0 (36 prompts).
    Plain "a {colour} {shape}" prompts are never held out (all 12 are needed to learn the objects)."""
    words = prompt.split()
    ci, si = list(COLOURS).index, SHAPES.index
    if len(words) == 6:
        return (ci(words[1]) + si(words[2])) % 4 == POSITIONS.index(words[5])
    if len(words) == 7:
        return (3 * ci(words[1]) + si(words[2]) + 3 * ci(words[5]) + si(words[6])) % 4 == 0
    return False


SINGLE_PROMPTS = _single_prompts()
POSITION_PROMPTS = _position_prompts()
PAIR_PROMPTS = _pair_prompts()
ALL_PROMPTS = SINGLE_PROMPTS + POSITION_PROMPTS + PAIR_PROMPTS
HELD_OUT_PROMPTS = [p for p in ALL_PROMPTS if _is_held_out(p)]
TRAIN_PROMPTS = [p for p in ALL_PROMPTS if not _is_held_out(p)]


# ---------------------------------------------------------------------------------------------- render

class Rendering(NamedTuple):
    """A rendered prompt.

    Attributes
    ----------
    image : PIL.Image.Image
        RGB image, 64x64.
    object_masks : list of numpy.ndarray
        One (64, 64) bool array per object, in prompt order.
    word_masks : list of numpy.ndarray or None
        One entry per word of ``split_words(prompt)``: the (64, 64) bool mask of the word's object
        for colour and shape words, ``None`` for position and function words.
    """

    image: Image.Image
    object_masks: list
    word_masks: list


def _rng(generator) -> np.random.Generator:
    if generator is None:
        return np.random.default_rng()
    if isinstance(generator, (bool, np.bool_)):
        raise TypeError(f"generator must be None, an int seed, a numpy.random.Generator or a torch.Generator, "
                        f"got {generator!r}")
    if isinstance(generator, (int, np.integer)):
        return np.random.default_rng(checks.seed(generator, "generator (a seed)"))
    if isinstance(generator, np.random.Generator):
        return generator
    import torch

    if isinstance(generator, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**63 - 1, (1,), generator=generator)))
    raise TypeError(
        f"generator must be None, an int seed, a numpy.random.Generator or a torch.Generator, "
        f"got {type(generator).__name__}")


def _box(region: Optional[str], side: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random (x0, y0, x1, y1) box of ``side`` pixels entirely inside ``region`` (inclusive corners)."""
    margin, half = 2, IMAGE_SIZE // 2
    xlo, xhi, ylo, yhi = margin, IMAGE_SIZE - margin - side, margin, IMAGE_SIZE - margin - side
    if region == "left":
        xhi = half - 1 - side
    elif region == "right":
        xlo = half + 1
    elif region == "top":
        yhi = half - 1 - side
    elif region == "bottom":
        ylo = half + 1
    x0, y0 = int(rng.integers(xlo, xhi + 1)), int(rng.integers(ylo, yhi + 1))
    return x0, y0, x0 + side - 1, y0 + side - 1


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=fill)
    else:
        raise ValueError(f"shape must be one of {list(SHAPES)}, got {shape!r}")


def render(prompt: str, generator=None) -> Rendering:
    """Draw ``prompt`` (a ShapesWorld prompt) as a 64x64 RGB image on white with its ground-truth masks.

    Object sizes are drawn uniformly from ``SINGLE_SIZE`` (one object) or ``PAIR_SIZE`` (two objects) pixels;
    placement is uniform inside the stated region.

    Parameters
    ----------
    prompt : str
        A ShapesWorld prompt.
    generator : None, int, numpy.random.Generator or torch.Generator
        ``None`` (fresh randomness), an int seed, a ``numpy.random.Generator`` or a
        ``torch.Generator``; the same seed gives the same image.

    Returns
    -------
    Rendering
        (image, object_masks, word_masks).
    """
    specs = parse_prompt(prompt)
    rng = _rng(generator)
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    lo, hi = SINGLE_SIZE if len(specs) == 1 else PAIR_SIZE
    object_masks = []
    for spec in specs:
        box = _box(spec.region, int(rng.integers(lo, hi + 1)), rng)
        _draw(draw, spec.shape, box, COLOURS[spec.colour])
        mask = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
        _draw(ImageDraw.Draw(mask), spec.shape, box, 255)
        object_masks.append(np.asarray(mask) > 0)
    word_masks, obj = [], -1
    for word in split_words(prompt):
        if word in COLOURS:
            obj += 1
        word_masks.append(object_masks[obj] if word in COLOURS or word in SHAPES else None)
    return Rendering(image, object_masks, word_masks)


# --------------------------------------------------------------------------------------------- analyse

@dataclass
class DetectedObject:
    """An object found by :func:`analyse`.

    Attributes
    ----------
    colour : str
        A COLOURS key.
    shape : str
        A SHAPES entry (best template IoU).
    mask : numpy.ndarray
        (64, 64) bool.
    area : int
        Pixels.
    centroid : tuple of float
        (x, y) in pixels.
    horizontal : {"left", "right"}
        Centroid x vs the image middle.
    vertical : {"top", "bottom"}
        Centroid y vs the image middle.
    shape_iou : float
        IoU of the mask with the chosen shape template in its bounding box.
    """

    colour: str
    shape: str
    mask: np.ndarray
    area: int
    centroid: tuple
    horizontal: str
    vertical: str
    shape_iou: float

    def in_region(self, region: str) -> bool:
        """Whether the centroid lies in ``region`` (one of POSITIONS)."""
        if region not in POSITIONS:
            raise ValueError(f"region must be one of {list(POSITIONS)}, got {region!r}")
        return region in (self.horizontal, self.vertical)


def _as_rgb_array(image) -> np.ndarray:
    return to_rgb_array(image, "image").astype(np.float32)  # every accepted image kind, as everywhere


def _shape_templates(box: tuple[int, int, int, int], size: tuple[int, int]) -> dict[str, np.ndarray]:
    templates = {}
    for shape in SHAPES:
        canvas = Image.new("L", (size[1], size[0]), 0)
        _draw(ImageDraw.Draw(canvas), shape, box, 255)
        templates[shape] = np.asarray(canvas) > 0
    return templates


def analyse(image, min_area: int = 20) -> list[DetectedObject]:
    """Find the coloured objects in ``image`` (PIL image or (H, W, 3) array, uint8 or floats in [0, 1]).

    Each pixel is assigned to the nearest of white and the four palette colours (RGB distance); the
    connected components of each colour with at least ``min_area`` pixels are the objects. A component's
    shape is the template (circle, square, upward triangle drawn in its bounding box) with the highest IoU.
    Returns the objects sorted by centroid x (left to right).
    """
    min_area = checks.int_at_least(min_area, 1, "min_area")
    rgb = _as_rgb_array(image)
    palette = np.array([BACKGROUND] + list(COLOURS.values()), dtype=np.float32)
    nearest = np.argmin(((rgb[:, :, None, :] - palette[None, None]) ** 2).sum(-1), axis=-1)
    objects = []
    for index, colour in enumerate(COLOURS, start=1):
        labels, n = ndimage.label(nearest == index)
        for lab in range(1, n + 1):
            mask = labels == lab
            area = int(mask.sum())
            if area < min_area:
                continue
            ys, xs = np.nonzero(mask)
            box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
            ious = {s: float((mask & t).sum() / max(1, (mask | t).sum()))
                    for s, t in _shape_templates(box, mask.shape).items()}
            shape = max(ious, key=ious.get)
            cx, cy = float(xs.mean()), float(ys.mean())
            objects.append(DetectedObject(
                colour=colour, shape=shape, mask=mask, area=area, centroid=(cx, cy),
                horizontal="left" if cx < mask.shape[1] / 2 else "right",
                vertical="top" if cy < mask.shape[0] / 2 else "bottom", shape_iou=ious[shape]))
    return sorted(objects, key=lambda o: o.centroid[0])
