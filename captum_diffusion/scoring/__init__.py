"""Scoring: the payoffs. Image-text scorers implement ``captum_diffusion.protocols.Scorer`` (one class per file,
subclassing ``EmbeddingScorer``): ``CLIPSimilarity`` (transformers), ``OpenCLIPSimilarity`` (open_clip),
``LatentSimilarity`` (the pipeline's VAE latents). ``PromptScore`` turns a generator and a scorer into the black box
``f(sub_prompts) -> (n,)`` of the word game."""
from __future__ import annotations

from captum_diffusion.lazy import lazy_getattr

_EXPORTS = {
    "EmbeddingScorer": "base",
    "word_scores": "base",
    "OUTPUTS": "base",
    "CLIPSimilarity": "clip",
    "OpenCLIPSimilarity": "open_clip",
    "LatentSimilarity": "latent",
    "PromptScore": "prompt_score",
    "load_scorer": "load",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
