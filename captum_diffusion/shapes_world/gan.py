"""The shipped ShapesWorld GAN: a RATLIP-style one-pass generator (``generation.ratgan.RATGenerator``) conditioned
on the shipped ShapesWorld CLIP's sentence embedding, trained by ``scripts/train_shapes_world_gan.py``.

>>> from captum_diffusion.shapes_world import load_shapes_world_gan
>>> gan, scorer = load_shapes_world_gan()
>>> image = gan(["a red circle on the left"])[0]  # 64x64 RGB, from the noise of torch.Generator().manual_seed(0)

``gan`` is a ``CLIPConditionedGenerator``: a ``prompts -> list[PIL.Image]`` callable that takes one seeded
``torch.Generator`` per prompt (``generator=``), so ``TextToImage(gan, seed=s)`` wraps it like a pipeline.
"""
from __future__ import annotations

from pathlib import Path

GAN_DIR = Path(__file__).resolve().parent / "weights" / "gan"


def gan_weights_available() -> bool:
    """Whether the trained GAN generator and the CLIP are present in the package (tests skip when not)."""
    from captum_diffusion.shapes_world import CLIP_DIR

    return all((GAN_DIR / name).is_file() for name in ("config.json", "model.safetensors")) \
        and (CLIP_DIR / "config.json").is_file()


def load_shapes_world_gan(device=None, dtype=None, seed: int = 0):
    """Load the shipped ShapesWorld GAN: ``(CLIPConditionedGenerator, CLIPSimilarity)``.

    The generator (``RATGenerator.from_pretrained``) and the CLIP (``CLIPModel.from_pretrained``; in float32 one
    copy serves as the GAN's frozen text encoder and as the scorer) load from ``weights/`` offline.

    Parameters
    ----------
    device : torch.device or str, optional
        Where both models run (default CPU).
    dtype : torch.dtype, optional
        dtype of the generator and the scorer (default float32; the sentence embedding is always computed in
        float32).
    seed : int
        The noise seed of every prompt when no ``generator=`` is passed to the GAN.

    Returns
    -------
    tuple of (CLIPConditionedGenerator, CLIPSimilarity)
        A ``prompts -> list of 64x64 RGB PIL images`` callable and the shipped CLIP scorer.

    Raises
    ------
    FileNotFoundError
        When the weights are missing.
    """
    import torch
    from transformers import CLIPModel, CLIPProcessor

    from captum_diffusion import checks
    from captum_diffusion.generation.gan import CLIPConditionedGenerator
    from captum_diffusion.generation.ratgan import RATGenerator
    from captum_diffusion.shapes_world import CLIP_DIR, load_shapes_world_scorer

    checks.placement(device, dtype)
    seed = checks.seed(seed)
    if not gan_weights_available():
        raise FileNotFoundError(f"ShapesWorld GAN weights not found under {GAN_DIR} (or the CLIP under {CLIP_DIR}); "
                                "train them with scripts/train_shapes_world_gan.py")
    device = torch.device(device if device is not None else "cpu")
    dtype = dtype or torch.float32
    generator = RATGenerator.from_pretrained(GAN_DIR, device=device, dtype=dtype)
    clip = CLIPModel.from_pretrained(str(CLIP_DIR)).eval().to(device)
    processor = CLIPProcessor.from_pretrained(str(CLIP_DIR))
    # The generator was trained on unit-normalised sentence embeddings of the whole prompt (get_text_features).
    gan = CLIPConditionedGenerator(generator, clip, processor.tokenizer, seed=seed, normalize=True, device=device)
    # The scorer casts its model to dtype: share the float32 text encoder only when no cast happens.
    return gan, load_shapes_world_scorer(device, dtype, model=clip if dtype == torch.float32 else None,
                                         processor=processor)
