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

    Parameters
    ----------
    images : PIL.Image.Image or numpy.ndarray or sequence of them
        One image or a sequence (PIL or uint8 ``(H, W, 3)`` arrays), paired with ``prompts`` in order.
    prompts : str or sequence of str
        One prompt per image (a single str is used for every image).
    scorer : CLIPSimilarity
        ``captum_diffusion.CLIPSimilarity`` (or anything with ``embed_images`` / ``embed_texts`` returning
        unit-norm ``(n, d)`` tensors).
    reduction : {"mean", "none"}
        ``"mean"`` (a float, the dataset score) or ``"none"`` (float64 array ``(n,)``).
    clamp : bool
        Clip negative scores to 0 (torchmetrics' definition); RATLIP states none, so off by default.

    Returns
    -------
    float or numpy.ndarray
        ``100 * cos(image_i, prompt_i)``: units of cosine x 100, in [-100, 100] ([0, 100] with ``clamp``);
        a float with ``reduction="mean"``, a float64 array ``(n,)`` with ``"none"``.

    Raises
    ------
    ValueError
        When ``images`` is empty, the number of prompts differs from the number of images, or ``reduction`` is
        not one of the two choices.
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
