"""diffusion-explain core: generation, scoring, word handling, attributions, segmenters, metrics.

Public names are imported lazily so that ``import captum_diffusion`` stays cheap; each lives in one module.
"""
from __future__ import annotations

from captum_diffusion._lazy import lazy_getattr

_EXPORTS = {
    "split_words": "words",
    "subprompt": "words",
    "WordGame": "words",
    "evaluate_masks": "words",
    "load_gupta_kanoria": "datasets",
    "TextToImage": "generation",
    "ImageCache": "generation",
    "CLIPSimilarity": "scores",
    "LatentSimilarity": "scores",
    "PromptScore": "scores",
    "WordAttribution": "attribution",
    "DAAM": "daam",
    "DAAMResult": "daam",
    "threshold_maps": "daam",
    "SAMSegmenter": "segmentation",
    "SuperpixelSegmenter": "segmentation",
    "DAAMKMeansSegmenter": "segmentation",
    "masks_to_label_map": "segmentation",
    "SegmentScorer": "segment_scores",
    "segment_word_table": "segment_scores",
    "CLIPSaliency": "saliency",
    "CLIPConditionedGenerator": "gan",
    "AffineGenerator": "gan",
    "load_shapes_world": "shapes_world",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"

__getattr__ = lazy_getattr(__name__, _EXPORTS)
