"""diffusion-explain core. The layout follows the product (see the README's "Architecture"):

- ``generation/``: ``TextToImage`` (seeded, batched, cached), the image cache, generator identity, GAN wrappers
- ``scoring/``: scorers (transformers CLIP, open_clip, VAE latents) and ``PromptScore``, the word game's payoff
- ``words/``: prompt words as players, word-to-token matching, captum attributions over words
- ``attention/``: per-word attention maps (DAAM)
- ``image/``: segmenters, segment scores, gradient saliency
- ``metrics/``, ``datasets/``, ``shapes_world/`` (the embedded model), ``testing`` (tiny random models)
- ``protocols`` (one protocol per role), ``checks`` (argument checks), ``convert`` (image conversion)

Public names are imported lazily so that ``import captum_diffusion`` stays cheap.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

from captum_diffusion.lazy import lazy_getattr

_EXPORTS = {
    "split_words": "words",
    "subprompt": "words",
    "WordGame": "words",
    "evaluate_masks": "words",
    "WordAttribution": "words",
    "WordAttributionResult": "words",
    "load_gupta_kanoria": "datasets",
    "TextToImage": "generation",
    "ImageCache": "generation",
    "GenerationSettings": "generation",
    "CLIPConditionedGenerator": "generation",
    "AffineGenerator": "generation",
    "CLIPSimilarity": "scoring",
    "OpenCLIPSimilarity": "scoring",
    "LatentSimilarity": "scoring",
    "PromptScore": "scoring",
    "DAAM": "attention",
    "DAAMResult": "attention",
    "threshold_maps": "attention",
    "SAMSegmenter": "image",
    "SuperpixelSegmenter": "image",
    "DAAMKMeansSegmenter": "image",
    "masks_to_label_map": "image",
    "SegmentScorer": "image",
    "segment_word_table": "image",
    "CLIPSaliency": "image",
    "SaliencyResult": "image",
    "load_shapes_world": "shapes_world",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"

__getattr__ = lazy_getattr(__name__, _EXPORTS)

#: Module paths of releases before the subpackage layout -> where their contents live now.
MOVED_MODULES = {
    "scores": "scoring",
    "attribution": "words.attribution",
    "tokens": "words.tokens",
    "daam": "attention.daam",
    "segmentation": "image.segmenters",
    "segment_scores": "image.segment_scores",
    "saliency": "image.saliency",
    "gan": "generation.gan",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import captum_diffusion.scores`` (an old path) gives the module at its new path, so old imports work."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package == __name__ and name in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None  # the default module object; exec_module makes it forward to the new one

    def exec_module(self, module):
        target = importlib.import_module(f"{__name__}.{MOVED_MODULES[module.__name__.rpartition('.')[2]]}")
        module.__doc__ = f"Moved to {target.__name__}; names are read from there."
        module.__getattr__ = lambda name: getattr(target, name)


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
