"""ShapesWorld's word classes, for ``diffusion-explain summary`` (``runs.summary.summarize``): the world's own
vocabulary groups (``world.COLOURS``, ``SHAPES``, ``POSITIONS``, ``FUNCTION_WORDS``), so they cannot drift from it.

The same mapping as a ``--word-classes`` TOML file would read::

    colour = ["red", "green", "blue", "yellow"]
    shape = ["circle", "square", "triangle"]
    position = ["left", "right", "top", "bottom"]
    function = ["a", "on", "the", "and"]
"""
from __future__ import annotations

from captum_diffusion.shapes_world.world import COLOURS, FUNCTION_WORDS, POSITIONS, SHAPES

__all__ = ["WORD_CLASSES"]

#: Class name -> its words (lower case), every word of the ShapesWorld vocabulary in exactly one class.
WORD_CLASSES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": tuple(SHAPES),
    "position": tuple(POSITIONS),
    "function": tuple(FUNCTION_WORDS),
}
