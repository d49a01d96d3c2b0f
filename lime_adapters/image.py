"""LIME over image segments, one label per prompt word (``lime.lime_image.LimeImageExplainer``).

``explain_image(image, prompt, scorer, segmenter)`` runs stock LIME with a ``classifier_fn`` that returns, for a
batch of images with segments hidden, the CLIP cosine similarity to each word: label ``i`` is word ``i``
(``explanation.words[i]``). Scoring, hiding and the dedup cache live in ``captum_diffusion.image.segment_scores``.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Sequence

import numpy as np

from lime.lime_image import ImageExplanation

from captum_diffusion import checks
from captum_diffusion.image.segment_scores import SegmentScorer


class WordImageExplanation(ImageExplanation):
    """lime's ``ImageExplanation`` with one label per word; everything lime offers works on it.

    Declared fields beside lime's: ``words`` (list[str], label ``i`` is ``words[i]``) and ``segment_scorer``
    (the :class:`~captum_diffusion.image.segment_scores.SegmentScorer` that scored the masked images).
    """

    words: list[str]
    segment_scorer: SegmentScorer

    def __init__(self, explanation: ImageExplanation, words: Sequence[str], segment_scorer: SegmentScorer):
        self.__dict__.update(vars(explanation))
        self.words = list(words)
        self.segment_scorer = segment_scorer


@contextlib.contextmanager
def _lime_progress(enabled: bool):
    """LIME 0.2 always shows a tqdm bar over samples; silence it when ``enabled`` is False."""
    import lime.lime_image as lime_image

    original = lime_image.tqdm
    if not enabled:
        lime_image.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        lime_image.tqdm = original


def explain_image(
    image,
    prompt: str,
    scorer,
    segmenter=None,
    *,
    segments=None,
    words: Sequence[str] | None = None,
    num_samples: int = 500,
    hide_color="background",
    text_template: str | None = None,
    deduplicate: bool = True,
    output: str = "cosine",
    batch_size: int = 64,
    kernel_width: float = 0.25,
    seed: int = 0,
    progress: bool = True,
) -> "WordImageExplanation":
    """Which segments of ``image`` raise each word's CLIP similarity, by LIME.

    Parameters
    ----------
    image : PIL.Image.Image or numpy.ndarray
        The generated image (PIL or uint8 array ``(H, W, 3)``; grayscale -> RGB, alpha composited on white).
    prompt : str
        Its prompt; every whitespace word is a label unless ``words`` picks some (each must be in it).
    scorer : captum_diffusion.protocols.Scorer
        ``captum_diffusion.CLIPSimilarity`` (anything with ``embed_images`` / ``embed_texts``).
    segmenter : callable, optional
        Callable image -> ``(H, W)`` label map (default ``SuperpixelSegmenter("slic")``).
    segments : numpy.ndarray, optional
        A precomputed int label map ``(H, W)``, labels ``0..n-1``, matching the image (instead of ``segmenter``).
    words : sequence of str, optional
        The words to explain (default: every word of ``prompt``).
    num_samples : int
        LIME's perturbation samples (at least ``n_segments + 1``).
    hide_color : str or color
        See ``segment_scores.fill_color``.
    text_template : str, optional
        The caption each word is embedded in (default: the scorer's ``text_template``).
    deduplicate : bool
        Embed each distinct masked image once (LIME draws many repeats when segments are few).
    output : {"cosine", "probability", "log_probability"}
        ``"cosine"`` (CLIP similarity to each word, default), ``"probability"`` or ``"log_probability"``
        (zero-shot classification among the words; see ``segment_scores.SegmentScorer``).
    batch_size : int
        Images per ``classifier_fn`` call.
    kernel_width : float
        ``LimeImageExplainer``'s kernel width (> 0).
    seed : int
        LIME's ``random_state`` (sampling and the explainer).
    progress : bool
        Show LIME's tqdm bar.

    Returns
    -------
    WordImageExplanation
        A ``lime.lime_image.ImageExplanation`` with ``local_exp[i]`` for every
        word index ``i``, ``words`` (label names) and ``segment_scorer`` (its ``n_requested`` / ``n_embedded``).

    Raises
    ------
    ValueError
        For words not in the prompt, a label map that does not match the image, or fewer than two segments.
    """
    from lime.lime_image import LimeImageExplainer

    num_samples = checks.int_at_least(num_samples, 2, "num_samples")
    batch_size = checks.positive_int(batch_size, "batch_size")
    kernel_width = checks.finite_number(kernel_width, "kernel_width", low=0.0, low_open=True)
    seed = checks.random_state(seed, "seed")
    segment_scorer = SegmentScorer.from_prompt(image, prompt, scorer, segmenter=segmenter, segments=segments,
                                               words=words, text_template=text_template, hide_color=hide_color,
                                               deduplicate=deduplicate, output=output)
    checks.int_at_least(num_samples, segment_scorer.n_segments + 1, f"num_samples (a regression over "
                        f"{segment_scorer.n_segments} segments needs at least n_segments + 1)")
    explainer = LimeImageExplainer(kernel_width=kernel_width, random_state=seed)
    labels = segment_scorer.segments
    with _lime_progress(progress):
        explanation = explainer.explain_instance(
            segment_scorer.image, segment_scorer.score_images, labels=tuple(range(len(segment_scorer.words))),
            top_labels=None, hide_color=tuple(int(c) for c in segment_scorer.fill), num_samples=num_samples,
            batch_size=batch_size, segmentation_fn=lambda _image: labels, random_seed=seed,
        )
    return WordImageExplanation(explanation, segment_scorer.words, segment_scorer)


def _label(explanation, word) -> int:
    if isinstance(word, str):
        if word not in explanation.words:
            raise ValueError(f"word {word!r} is not one of the explained words {explanation.words}")
        return explanation.words.index(word)
    return checks.index(word, len(explanation.words), "word (a word or its label index)")


def _check_explanation(explanation) -> None:
    if not isinstance(explanation, ImageExplanation) or not hasattr(explanation, "words"):
        raise TypeError(f"explanation must be the WordImageExplanation of lime_adapters.explain_image, got "
                        f"{type(explanation).__name__}")


def segment_weights(explanation) -> np.ndarray:
    """LIME weights per segment and word: ``(n_segments, n_words)`` (rows = segment labels)."""
    _check_explanation(explanation)
    n_segments = int(explanation.segments.max()) + 1
    weights = np.zeros((n_segments, len(explanation.words)))
    for label, pairs in explanation.local_exp.items():
        for segment, weight in pairs:
            weights[segment, label] = weight
    return weights


def word_weight_maps(explanation) -> np.ndarray:
    """Each word's LIME weight painted over its segments' pixels: float ``(n_words, H, W)``."""
    return np.moveaxis(segment_weights(explanation)[explanation.segments], -1, 0)


def top_segments(explanation, word, k: int | None = None) -> list[tuple[int, float]]:
    """``(segment, weight)`` pairs for ``word`` (a word or its label index), highest weight first, ``k`` at most."""
    column = segment_weights(explanation)[:, _label(explanation, word)]
    k = checks.optional_positive_int(k, "k")
    order = np.argsort(-column, kind="stable")[: None if k is None else k]
    return [(int(s), float(column[s])) for s in order]
