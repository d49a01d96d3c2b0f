"""The generation keywords shared by every object that runs a pipeline: one settings object.

``TextToImage``, ``DAAM`` and a run's configuration (and its proxy games) all pass the same few keywords to a
pipeline call; :class:`GenerationSettings` holds and checks them once, so that a setting added here reaches all
of them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from captum_diffusion import checks


@dataclass(frozen=True)
class GenerationSettings:
    """Keywords of one pipeline call, each ``None`` for the pipeline's own default.

    Parameters
    ----------
    num_inference_steps : int, optional
        Denoising steps (positive).
    guidance_scale : float, optional
        Classifier-free guidance scale (FLUX.1: the distilled guidance fed to the transformer).
    height, width : int, optional
        Image size in pixels; a multiple of the family's size multiple (see ``generation.families``).
    max_sequence_length : int, optional
        The T5 token limit of SD3, FLUX and PixArt pipelines; an error for pipelines without T5.
    """

    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    height: int | None = None
    width: int | None = None
    max_sequence_length: int | None = None

    def __post_init__(self):
        for name in ("num_inference_steps", "height", "width", "max_sequence_length"):
            object.__setattr__(self, name, checks.optional_positive_int(getattr(self, name), name))
        object.__setattr__(self, "guidance_scale", checks.guidance_scale(self.guidance_scale))

    def keywords(self) -> dict:
        """The settings that are not ``None``, as pipeline keywords."""
        return {name: value for name, value in dataclasses.asdict(self).items() if value is not None}

    def replace(self, **changes) -> "GenerationSettings":
        """A copy with ``changes`` applied (checked like the constructor), e.g. a cheaper proxy:
        ``settings.replace(num_inference_steps=4)``."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown generation settings {unknown}; valid: "
                            f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)
