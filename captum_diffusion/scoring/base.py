"""What every embedding scorer shares: cosines, zero-shot word scores, and the ``EmbeddingScorer`` base class.

A scorer subclasses :class:`EmbeddingScorer` and implements ``embed_images`` / ``embed_texts`` (see
``captum_diffusion.protocols.Scorer``); similarities, word captions and batching come from here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from captum_diffusion import checks
from captum_diffusion.convert import as_rgb_image

#: What the image side and saliency explain for each word: the cosine, or CLIP's zero-shot classification.
OUTPUTS = ("cosine", "probability", "log_probability")


def batches(items: list, batch_size: int):
    """Consecutive slices of ``items`` of at most ``batch_size``."""
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


def cosine(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Cosine matrix ``(len(a), len(b))`` of unit-norm rows, in float64, clipped to [-1, 1] (rounding)."""
    return np.clip((a.double() @ b.double().T).numpy(), -1.0, 1.0)


def word_scores(cosines, texts: Sequence[str], output: str = "cosine", logit_scale: float = 100.0):
    """Turn cosines ``(n, n_texts)`` (torch tensor) into the explained scores.

    ``"cosine"``: unchanged (the paper's CLIP similarity). ``"probability"`` / ``"log_probability"``: CLIP's
    zero-shot classification among the distinct texts, ``softmax(logit_scale * cosine)`` (repeated texts share one
    class and get the same value). Differentiable; returns a tensor of the same shape.
    """
    checks.one_of(output, OUTPUTS, "output")
    if not isinstance(cosines, torch.Tensor):
        cosines = torch.as_tensor(checks.numeric_array(cosines, "cosines"))
    texts = checks.string_list(texts, "texts", allow_single=False)
    if cosines.ndim != 2 or cosines.shape[1] != len(texts):
        raise ValueError(f"cosines must be (n, n_texts) = (n, {len(texts)}) for {len(texts)} texts, got shape "
                         f"{tuple(cosines.shape)}")
    if not torch.isfinite(cosines).all():
        raise ValueError(f"cosines hold {int((~torch.isfinite(cosines)).sum())} NaN / inf value(s)")
    # CLIP clamps its learnt scale at 100; far above it float32 logits overflow and the softmax gives NaN
    logit_scale = checks.finite_number(logit_scale, "logit_scale", low=0.0, low_open=True, high=1e4)
    if output == "cosine":
        return cosines
    distinct = list(dict.fromkeys(texts))
    columns = torch.tensor([distinct.index(t) for t in texts], device=cosines.device)
    first = torch.tensor([texts.index(t) for t in distinct], device=cosines.device)
    logits = logit_scale * cosines[:, first]
    scores = torch.log_softmax(logits, dim=1) if output == "log_probability" else torch.softmax(logits, dim=1)
    return scores[:, columns]


def check_scorer(scorer, name: str = "scorer") -> None:
    """``TypeError`` unless ``scorer`` has ``embed_images`` and ``embed_texts`` (the ``Scorer`` protocol)."""
    if not (callable(getattr(scorer, "embed_images", None)) and callable(getattr(scorer, "embed_texts", None))):
        raise TypeError(f"{name} must implement captum_diffusion.protocols.Scorer (embed_images(images) and "
                        f"embed_texts(texts), e.g. CLIPSimilarity or OpenCLIPSimilarity); got {type(scorer).__name__}")


class EmbeddingScorer:
    """Base class of image-text scorers: subclasses implement ``embed_images`` and ``embed_texts``.

    Parameters
    ----------
    text_template : str
        The caption a single word is embedded in (one ``{}`` slot), e.g. ``"a photo of a {}"``.
    batch_size : int
        Images / texts per forward pass.
    """

    #: the model's temperature for zero-shot probabilities (``logit_scale.exp()``); subclasses read the model's
    logit_scale: float = 100.0

    def __init__(self, *, text_template: str = "{}", batch_size: int = 32):
        self.text_template = checks.text_template(text_template)
        self.batch_size = checks.positive_int(batch_size, "batch_size")

    def embed_images(self, images) -> torch.Tensor:  # pragma: no cover - abstract
        """Unit-norm image embeddings, float32 ``(n, d)`` on the CPU."""
        raise NotImplementedError

    def embed_texts(self, texts) -> torch.Tensor:  # pragma: no cover - abstract
        """Unit-norm text embeddings, float32 ``(n, d)`` on the CPU."""
        raise NotImplementedError

    def captions(self, words: Sequence[str]) -> list[str]:
        """Each word formatted with ``text_template``."""
        return [self.text_template.format(word) for word in checks.string_list(words, "words")]

    def embed_words(self, words: Sequence[str]) -> torch.Tensor:
        """``embed_texts`` of the words' captions, ``(n_words, d)``."""
        return self.embed_texts(self.captions(words))

    def image_similarity(self, images, reference_image) -> np.ndarray:
        """Cosine between each image and ``reference_image``: float64 array ``(n,)`` in [-1, 1]."""
        reference = self.embed_images([as_rgb_image(reference_image, "reference_image")])
        return cosine(self.embed_images(images), reference)[:, 0]

    def text_similarity(self, images, texts) -> np.ndarray:
        """Cosine between each image and each text: float64 array ``(n_images, n_texts)`` in [-1, 1]."""
        return cosine(self.embed_images(images), self.embed_texts(texts))


class TorchScorer(EmbeddingScorer):
    """An :class:`EmbeddingScorer` over one ``torch.nn.Module``: ``device`` / ``dtype`` read off its weights,
    ``logit_scale`` off its ``logit_scale`` parameter (CLIP's and open_clip's attribute name)."""

    model: torch.nn.Module

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def logit_scale(self) -> float:
        scale = getattr(self.model, "logit_scale", None)
        return float(scale.detach().float().exp()) if isinstance(scale, torch.Tensor) else 100.0
