"""The image side: segmenters (``segmenters``: SAM, superpixels, DAAM + k-means; ``protocols.Segmenter``), the
payoff over hidden segments shared by the LIME and shap adapters (``segment_scores``), and gradient saliency
through a scorer with captum (``saliency``)."""
from __future__ import annotations

from captum_diffusion.lazy import lazy_getattr

_EXPORTS = {
    "SAMSegmenter": "segmenters",
    "SuperpixelSegmenter": "segmenters",
    "DAAMKMeansSegmenter": "segmenters",
    "masks_to_label_map": "segmenters",
    "relabel": "segmenters",
    "check_label_map": "segmenters",
    "SegmentScorer": "segment_scores",
    "SegmentWordTable": "segment_scores",
    "segment_word_table": "segment_scores",
    "CLIPSaliency": "saliency",
    "SaliencyResult": "saliency",
    "plot_attributions": "saliency",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
