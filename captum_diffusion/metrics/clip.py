"""CLIP score (CS) as RATLIP / GALIP report it: 100 x the cosine of CLIP's image and prompt embeddings.

RATLIP (Table 1, "CS") reports the score as 100 x cosine without stating any clamping; we follow it and do
not clamp by default. The torchmetrics / Hessel et al. convention clips negative cosines to 0
(``max(100 cos, 0)``): pass ``clamp=True`` for that.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def clip_score(images, prompts: Sequence[str] | str, scorer, *, reduction: str = "mean", clamp: bool = False):
    """CLIP score of each image against its own prompt.

    Args:
        images: one image or a sequence (PIL or uint8 ``(H, W, 3)`` arrays), paired with ``prompts`` in order.
        prompts: one prompt per image (a single str is used for every image).
        scorer: ``captum_diffusion.CLIPSimilarity`` (or anything with ``embed_images`` / ``embed_texts`` returning
            unit-norm ``(n, d)`` tensors).
        reduction: ``"mean"`` (a float, the dataset score) or ``"none"`` (float64 array ``(n,)``).
        clamp: clip negative scores to 0 (torchmetrics' definition); RATLIP states none, so off by default.

    Returns:
        ``100 * cos(image_i, prompt_i)``: units of cosine x 100, in [-100, 100] ([0, 100] with ``clamp``).
    """
    from captum_diffusion import checks
    from captum_diffusion.convert import as_rgb_images
    from captum_diffusion.scoring.base import check_scorer

    checks.one_of(reduction, ("mean", "none"), "reduction")
    check_scorer(scorer)
    images = as_rgb_images(images)
    single = isinstance(prompts, str)
    prompts = checks.string_list(prompts, "prompts")
    prompts = prompts * len(images) if single else prompts
    if len(prompts) != len(images):
        raise ValueError(f"got {len(images)} images but {len(prompts)} prompts: give one prompt per image")
    if not images:
        raise ValueError("images is empty")
    cosine = (scorer.embed_images(images) * scorer.embed_texts(prompts)).sum(-1).double().numpy()
    scores = 100.0 * (np.maximum(cosine, 0.0) if clamp else cosine)
    return float(scores.mean()) if reduction == "mean" else scores
