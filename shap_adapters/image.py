"""Shapley values of image segments for each prompt word, with ``shap.Explainer``.

``SegmentMasker`` is a shap masker whose features are the segments of a label map: ``masker(mask, image)``
returns the image with the masked-out segments painted one constant colour. The model is
``SegmentScorer.score_images`` (CLIP cosine to each word, deduplicated), so ``shap.Explainer`` gives one Shapley
value per segment and word. ``explain_image`` returns it as a segment-level ``shap.Explanation``;
``image_explanation`` spreads it over the pixels for ``shap.plots.image``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import shap

from captum_diffusion.image.segment_scores import SegmentScorer, fill_color, hide_segments
from captum_diffusion import checks
from captum_diffusion.convert import to_rgb_array
from captum_diffusion.image.segmenters import check_label_map
from shap_adapters.text import check_max_evals

MAX_EXACT_SEGMENTS = 12
ALGORITHMS = ("auto", "exact", "permutation")


class SegmentMasker(shap.maskers.Masker):
    """A shap masker whose features are the segments of one image.

    The explained instance is the presence vector ``x = np.ones(n_segments)``; ``masker(mask, x)`` returns the
    image (uint8 ``(1, H, W, 3)``) with the segments where ``mask & x`` is False painted ``fill`` (uint8 ``(3,)``, or
    anything ``segment_scores.fill_color`` takes: ``"background"``, a grey level, an RGB triple).
    ``shape`` is ``(1, n_segments)``.
    """

    def __init__(self, image: np.ndarray, segments: np.ndarray, fill: np.ndarray):
        self.image = to_rgb_array(image)
        self.segments = check_label_map(segments, self.image.shape, min_segments=1)
        try:
            self.fill = fill_color(self.image, fill)
        except ValueError as error:
            raise ValueError(f"fill: {error}") from None
        self.shape = (1, int(self.segments.max()) + 1)
        self.clustering = None

    def __call__(self, mask, x):
        keep = self._standardize_mask(mask, x) & (np.asarray(x) != 0)
        return (hide_segments(self.image, self.segments, keep[None], self.fill),)


def explain_image(
    image,
    prompt: str,
    scorer,
    segmenter=None,
    *,
    segments=None,
    words: Sequence[str] | None = None,
    algorithm: str = "auto",
    max_evals: int | None = None,
    hide_color="background",
    text_template: str | None = None,
    deduplicate: bool = True,
    output: str = "cosine",
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> "SegmentExplanation":
    """Shapley value of every segment of ``image`` for every word's CLIP similarity.

    Parameters
    ----------
    image, prompt, scorer, segmenter, segments, words, hide_color, text_template, deduplicate, output
        As ``lime_adapters.image.explain_image`` (the same ``SegmentScorer`` underneath).
    algorithm : {"auto", "exact", "permutation"}
        ``"exact"`` (all ``2**n_segments`` coalitions; at most 12 segments), ``"permutation"``
        (sampling, ``max_evals`` model calls, default 500, at least ``2 * n_segments + 1``: ``ValueError``
        below), or ``"auto"`` (exact up to 12 segments).
    max_evals : int, optional
        Model calls of the permutation sampler (default 500).
    batch_size : int
        Masked images per model call.
    seed : int
        The permutation sampler's seed.
    progress : bool
        Show shap's progress bar.

    Returns
    -------
    SegmentExplanation
        A ``shap.Explanation`` with ``values`` ``(n_segments, n_words)``, ``base_values`` ``(n_words,)`` (all
        segments hidden), ``data`` ones ``(n_segments,)``, ``feature_names`` ``"segment i"``, ``output_names`` the
        words. Exact values are additive: ``values.sum(0) + base_values`` is the similarity of the full image.
        It also has ``segments``, ``image``, ``segment_scorer`` (with its counters).

    Raises
    ------
    ValueError
        For ``algorithm="exact"`` with more than 12 segments, or ``max_evals`` below ``2 * n_segments + 1``.
    """
    checks.one_of(algorithm, ALGORITHMS, "algorithm")
    max_evals = checks.optional_positive_int(max_evals, "max_evals")
    batch_size = checks.positive_int(batch_size, "batch_size")
    seed = checks.random_state(seed, "seed")
    segment_scorer = SegmentScorer.from_prompt(image, prompt, scorer, segmenter=segmenter, segments=segments,
                                               words=words, text_template=text_template, hide_color=hide_color,
                                               deduplicate=deduplicate, output=output)
    n = segment_scorer.n_segments
    if algorithm == "auto":
        algorithm = "exact" if n <= MAX_EXACT_SEGMENTS else "permutation"
    if algorithm == "exact" and n > MAX_EXACT_SEGMENTS:
        raise ValueError(
            f"algorithm='exact' needs 2**{n} = {2 ** n} CLIP evaluations for {n} segments; exact is allowed up to "
            f"{MAX_EXACT_SEGMENTS} segments: use algorithm='permutation' (sampling) or a segmenter with fewer segments"
        )
    if max_evals is not None and algorithm == "permutation":  # exact evaluates all 2**n coalitions regardless
        check_max_evals(max_evals, algorithm, n, "segments")
    masker = SegmentMasker(segment_scorer.image, segment_scorer.segments, segment_scorer.fill)
    if algorithm == "exact":
        explainer = shap.explainers.Exact(segment_scorer.score_images, masker)
        evals = {}
    else:
        explainer = shap.explainers.Permutation(segment_scorer.score_images, masker, seed=seed)
        evals = {"max_evals": 500 if max_evals is None else max_evals}
    raw = explainer(np.ones((1, n)), batch_size=batch_size, silent=not progress, **evals)
    values = np.asarray(raw.values[0], dtype=np.float64).reshape(n, len(segment_scorer.words))
    return SegmentExplanation(values, np.asarray(raw.base_values[0], dtype=np.float64).reshape(-1),
                              segment_scorer=segment_scorer)


class SegmentExplanation(shap.Explanation):
    """A ``shap.Explanation`` over the segments of one image, for each word; every shap plot accepts it.

    ``values`` ``(n_segments, n_words)``, ``base_values`` ``(n_words,)``, ``data`` ones ``(n_segments,)``,
    ``feature_names`` ``"segment i"``, ``output_names`` the words. Declared fields beside shap's: ``image``
    (uint8 ``(H, W, 3)``), ``segments`` (int ``(H, W)``), ``segment_scorer`` (with its counters).
    """

    def __init__(self, values, base_values, *, segment_scorer: SegmentScorer):
        n = segment_scorer.n_segments
        super().__init__(values=values, base_values=base_values, data=np.ones(n),
                         feature_names=[f"segment {i}" for i in range(n)], output_names=list(segment_scorer.words))
        self.segment_scorer = segment_scorer
        self.image = segment_scorer.image
        self.segments = segment_scorer.segments


def image_explanation(explanation: shap.Explanation, image=None, segments=None) -> shap.Explanation:
    """A segment-level explanation spread over pixels for ``shap.plots.image``.

    Returns ``shap.Explanation`` with ``values`` ``(1, H, W, 3, n_words)`` (shap's image layout: each pixel's
    three channels sum to its segment's value), ``data`` uint8 ``(1, H, W, 3)`` and the words as ``output_names``.
    ``image`` / ``segments`` default to the ones ``explain_image`` attached.
    """
    if not isinstance(explanation, shap.Explanation):
        raise TypeError(f"explanation must be the shap.Explanation of explain_image, got {type(explanation).__name__}")
    if image is None and getattr(explanation, "image", None) is None:
        raise ValueError("image is needed: this explanation carries no image (pass the explained image)")
    if segments is None and getattr(explanation, "segments", None) is None:
        raise ValueError("segments is needed: this explanation carries no segments (pass its label map)")
    image = to_rgb_array(explanation.image if image is None else image)
    segments = explanation.segments if segments is None else segments
    values = checks.numeric_array(explanation.values, "explanation.values")
    segments = check_label_map(segments, image.shape, min_segments=1)
    if values.ndim != 2 or values.shape[0] != int(segments.max()) + 1:
        raise ValueError(f"explanation.values must be (n_segments, n_words) matching segments; got {values.shape}")
    pixel_values = np.repeat(values[segments][:, :, None, :] / 3.0, 3, axis=2)
    return shap.Explanation(values=pixel_values[None], base_values=np.asarray(explanation.base_values)[None],
                            data=image[None], output_names=list(explanation.output_names))
