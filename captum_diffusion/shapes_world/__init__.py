"""ShapesWorld: a world of coloured shapes with exact ground truth, and a tiny Stable Diffusion + CLIP
trained on it and shipped inside the package (``weights/``).

>>> from captum_diffusion.shapes_world import load_shapes_world, DEFAULT_GENERATION
>>> pipe, scorer = load_shapes_world()
>>> image = pipe("a red circle on the left", **DEFAULT_GENERATION.pipeline_kwargs()).images[0]  # 64x64 RGB

A second generator of the same world, an SD3-style transformer (MMDiT, rectified flow) with the same CLIP and
VAE, loads with ``load_shapes_world(family="transformer")`` (a ``StableDiffusion3Pipeline``; its settings are
``TRANSFORMER_GENERATION``).
A third, a RATLIP-style GAN (one forward pass per prompt from the CLIP sentence embedding and noise), loads with
``load_shapes_world_gan()`` (``shapes_world.gan``: a ``prompts -> images`` callable and the same CLIP scorer).

The training scripts are ``scripts/train_shapes_world_{clip,vae,unet,transformer}.py``; the quality figures come
from ``benchmarks/shapes_world_quality.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from captum_diffusion.shapes_world.world import (ALL_PROMPTS, COLOURS, FUNCTION_WORDS, HELD_OUT_PROMPTS,
                                                 IMAGE_SIZE, PAIR_PROMPTS, POSITION_PROMPTS, POSITIONS, SHAPES,
                                                 SINGLE_PROMPTS, TRAIN_PROMPTS, VOCABULARY, DetectedObject,
                                                 ObjectSpec, Rendering, analyse, parse_prompt, render)
from captum_diffusion.generation.settings import GenerationSettings
from captum_diffusion.shapes_world.gan import GAN_DIR, gan_weights_available, load_shapes_world_gan

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
PIPELINE_DIR = WEIGHTS_DIR / "pipeline"
TRANSFORMER_DIR = WEIGHTS_DIR / "transformer"
#: The generator families shipped, with their pipeline folders.
FAMILY_DIRS = {"unet": PIPELINE_DIR, "transformer": TRANSFORMER_DIR}
CLIP_DIR = WEIGHTS_DIR / "clip"
TOKENIZER_DIR = Path(__file__).resolve().parent / "tokenizer"
#: The caption the shipped CLIP embeds a single word in (``CLIPSimilarity.text_template``).
TEXT_TEMPLATE = "a {} and a"


@dataclass(frozen=True)
class ShapesWorldSettings(GenerationSettings):
    """Default generation settings of the shipped model: the core ``GenerationSettings`` (DPM-Solver++ steps,
    guidance scale, size in pixels) with the shipped model's values, plus the image seed."""

    num_inference_steps: int = 10
    guidance_scale: float = 5.0
    height: int = IMAGE_SIZE
    width: int = IMAGE_SIZE
    seed: int = 0

    def pipeline_kwargs(self) -> dict:
        """Keyword arguments for ``pipeline(prompt, **kwargs)`` (everything but the seed and unset settings)."""
        return self.keywords()

    def keywords(self) -> dict:
        """The pipeline keywords that are set (the seed is not one)."""
        return {name: value for name, value in super().keywords().items() if name != "seed"}


DEFAULT_GENERATION = ShapesWorldSettings()
#: Default generation settings of the shipped transformer (flow-matching Euler steps, guidance scale).
TRANSFORMER_GENERATION = ShapesWorldSettings(num_inference_steps=20, guidance_scale=5.0)
#: Each family's default generation settings.
FAMILY_GENERATION = {"unet": DEFAULT_GENERATION, "transformer": TRANSFORMER_GENERATION}


def weights_available(family: str = "unet") -> bool:
    """Whether the trained pipeline of ``family`` (``"unet"`` or ``"transformer"``) and the CLIP are present in
    the package (tests skip when not)."""
    from captum_diffusion import checks

    folder = FAMILY_DIRS[checks.one_of(family, FAMILY_DIRS, "family")]
    return (folder / "model_index.json").is_file() and (CLIP_DIR / "config.json").is_file()


def load_shapes_world(device=None, dtype=None, family: str = "unet"):
    """Load a shipped ShapesWorld model: ``(pipeline, CLIPSimilarity)``.

    Both the pipeline and the CLIP scorer are loaded with ``from_pretrained`` from ``weights/``, the way a hub
    checkpoint is. The pipeline's progress bar is disabled.

    Parameters
    ----------
    device : torch.device or str, optional
        Where the models run (default CPU).
    dtype : torch.dtype, optional
        The models' dtype (default float32).
    family : {"unet", "transformer"}
        ``"unet"`` (a ``StableDiffusionPipeline``, settings ``DEFAULT_GENERATION``) or ``"transformer"``
        (a ``StableDiffusion3Pipeline`` without T5, settings ``TRANSFORMER_GENERATION``).

    Returns
    -------
    tuple of (diffusers.DiffusionPipeline, CLIPSimilarity)
        The pipeline (64x64 RGB images) and the shipped CLIP scorer.

    Raises
    ------
    FileNotFoundError
        When the weights are missing.
    """
    from captum_diffusion import checks

    checks.one_of(family, FAMILY_DIRS, "family")
    import torch
    from diffusers import StableDiffusion3Pipeline, StableDiffusionPipeline

    if not weights_available(family):
        raise FileNotFoundError(f"ShapesWorld {family} weights not found under {WEIGHTS_DIR}; train them with "
                                f"scripts/train_shapes_world_{{clip,vae,{family}}}.py")
    checks.placement(device, dtype)  # before loading anything
    device = torch.device(device if device is not None else "cpu")
    dtype = dtype or torch.float32
    if family == "unet":
        pipe = StableDiffusionPipeline.from_pretrained(str(PIPELINE_DIR), dtype=dtype, safety_checker=None,
                                                       requires_safety_checker=False).to(device)
    else:  # its text encoders are the ShapesWorld CLIP twice, and it has no T5 (zeros in T5's place)
        pipe = StableDiffusion3Pipeline.from_pretrained(str(TRANSFORMER_DIR), dtype=dtype, text_encoder_3=None,
                                                        tokenizer_3=None).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, load_shapes_world_scorer(device, dtype)


def load_shapes_world_scorer(device=None, dtype=None, *, model=None, processor=None):
    """The shipped ShapesWorld CLIP as a ``CLIPSimilarity`` on ``device`` in ``dtype`` (the scorer every ShapesWorld
    model ships with). ``model`` / ``processor``: that CLIP's ``CLIPModel`` / ``CLIPProcessor`` when already
    loaded (the scorer casts the model to ``dtype`` in place); ``None``: loaded from ``CLIP_DIR``."""
    from transformers import CLIPModel, CLIPProcessor

    from captum_diffusion.scoring.clip import CLIPSimilarity

    model = CLIPModel.from_pretrained(str(CLIP_DIR)).eval() if model is None else model
    processor = CLIPProcessor.from_pretrained(str(CLIP_DIR)) if processor is None else processor
    # Its CLIP was trained on whole captions: a bare word lies closest to a blank image, so single words are embedded
    # in a caption-shaped template (the image side and saliency read it from the scorer).
    return CLIPSimilarity(model=model, processor=processor, device=device, dtype=dtype, text_template=TEXT_TEMPLATE)


__all__ = [
    "ALL_PROMPTS", "COLOURS", "CLIP_DIR", "DEFAULT_GENERATION", "DetectedObject", "FUNCTION_WORDS",
    "FAMILY_DIRS", "FAMILY_GENERATION", "ShapesWorldSettings", "HELD_OUT_PROMPTS", "IMAGE_SIZE", "ObjectSpec", "PAIR_PROMPTS", "PIPELINE_DIR",
    "POSITION_PROMPTS", "POSITIONS", "Rendering", "SHAPES", "SINGLE_PROMPTS", "TEXT_TEMPLATE", "TRAIN_PROMPTS", "TRANSFORMER_DIR", "TRANSFORMER_GENERATION", "VOCABULARY",
    "analyse", "load_shapes_world", "load_shapes_world_scorer", "parse_prompt", "render", "weights_available",
    "GAN_DIR", "gan_weights_available", "load_shapes_world_gan",
]
