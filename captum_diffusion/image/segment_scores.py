"""The payoff over image segments that the LIME and shap image adapters share.

Given an image, an ``(H, W)`` label map (``0..n-1``), the words of a prompt and a CLIP scorer
(``captum_diffusion.scoring.CLIPSimilarity`` or anything with ``embed_images`` / ``embed_texts``), a
``SegmentScorer`` maps a batch of keep-masks ``(n, n_segments)`` to CLIP cosine similarities
``(n, n_words)`` of the image with the dropped segments hidden. Identical masked images are embedded once
(cache keyed by the masked image's bytes), and the scorer counts requested images and CLIP image forward passes.

Hiding paints a segment with one constant colour (``fill_color``; by default the median colour of the image
border, i.e. the background of a generated object-on-background image). LIME's own default, each segment's
mean colour, is a no-op on flat-coloured regions and is deliberately not offered.

``segment_word_table`` is Gupta & Kanoria's segment-by-word table: the similarity of each segment shown alone
(everything else hidden) to each word.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from captum_diffusion import checks
from captum_diffusion.convert import to_rgb_array
from captum_diffusion.image.segmenters import check_label_map
from captum_diffusion.scoring.base import OUTPUTS, check_scorer, word_scores
from captum_diffusion.words.game import split_words

HIDE_COLORS = ("background", "mean", "gray")


def fill_color(image, hide_color="background") -> np.ndarray:
    """The constant RGB colour (uint8 ``(3,)``) that hides a segment.

    ``hide_color``: ``"background"`` (per-channel median of the image's one-pixel border), ``"mean"`` (the
    whole image's mean colour), ``"gray"`` (128, 128, 128), an int 0..255 (grey level) or an RGB triple 0..255.
    """
    rgb = to_rgb_array(image)
    if isinstance(hide_color, str):
        if hide_color == "background":
            border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
            return np.median(border, axis=0).round().astype(np.uint8)
        if hide_color == "mean":
            return rgb.reshape(-1, 3).mean(0).round().astype(np.uint8)
        if hide_color == "gray":
            return np.full(3, 128, dtype=np.uint8)
        raise ValueError(f"hide_color must be one of {HIDE_COLORS}, an int 0..255 or an RGB triple; got {hide_color!r}")
    invalid = f"hide_color must be one of {HIDE_COLORS}, an int 0..255 or an RGB triple 0..255; got {hide_color!r}"
    if isinstance(hide_color, (bool, np.bool_, bytes)) or hide_color is None:
        raise ValueError(invalid)
    try:
        color = checks.numeric_array(hide_color, "hide_color")
    except TypeError:
        raise ValueError(invalid) from None
    color = np.broadcast_to(color, (3,)) if color.ndim == 0 else color
    if color.shape != (3,) or np.asarray(hide_color).dtype == bool or color.min() < 0 or color.max() > 255:
        raise ValueError(invalid)
    return color.round().astype(np.uint8)


def hide_segments(image: np.ndarray, segments: np.ndarray, keep, fill: np.ndarray) -> np.ndarray:
    """Images with the segments not kept painted ``fill``.

    Parameters
    ----------
    image : numpy.ndarray
        uint8 ``(H, W, 3)``.
    segments : numpy.ndarray
        int ``(H, W)`` labels ``0..n-1``.
    keep : array_like of bool
        ``(n_images, n_segments)`` (or ``(n_segments,)``), True = the segment stays visible.
    fill : numpy.ndarray
        uint8 ``(3,)``, the RGB colour of hidden pixels.

    Returns
    -------
    numpy.ndarray
        uint8 ``(n_images, H, W, 3)``.
    """
    keep = np.atleast_2d(np.asarray(keep, dtype=bool))
    n_segments = int(segments.max()) + 1
    if keep.shape[1] != n_segments:
        raise ValueError(f"keep has {keep.shape[1]} columns but there are {n_segments} segments")
    visible = keep[:, segments]  # (n, H, W)
    return np.where(visible[..., None], image[None], fill[None, None, None]).astype(np.uint8)


def resolve_words(prompt: str, words: Sequence[str] | None = None) -> list[str]:
    """The words to explain: ``split_words(prompt)``, or ``words`` after checking each is a word of ``prompt``."""
    prompt_words = split_words(prompt)
    if words is None:
        return prompt_words
    if isinstance(words, str):
        raise TypeError(f"words must be a sequence of str (e.g. ['red', 'circle']), got the str {words!r}")
    words = checks.string_list(words, "words", allow_single=False)
    if not words:
        raise ValueError("words is empty: give at least one word of the prompt, or None for all of them")
    missing = [w for w in words if w not in prompt_words]
    if missing:
        raise ValueError(f"words {missing} are not words of the prompt {prompt!r}; its words are {prompt_words}")
    return words


class SegmentScorer:
    """CLIP similarity of an image with segments hidden to each of some texts, with a dedup cache.

    Parameters
    ----------
    image : PIL.Image.Image or numpy.ndarray
        PIL or uint8 array ``(H, W, 3)`` (converted to RGB, see ``captum_diffusion.convert.to_rgb_array``).
    segments : numpy.ndarray
        int label map ``(H, W)``, labels ``0..n-1``, at least 2 segments.
    texts : sequence of str
        The texts (one per word) the image is compared to.
    scorer : captum_diffusion.protocols.Scorer
        ``CLIPSimilarity`` or any object with ``embed_images`` / ``embed_texts`` (unit-norm, ``(n, d)``).
    hide_color : str or color
        See ``fill_color``.
    deduplicate : bool
        Embed each distinct masked image once (default); False embeds every requested image
        (for benchmarking the cache).
    output : {"cosine", "probability", "log_probability"}
        ``"cosine"`` (default, the paper's CLIP similarity of the image to each word), ``"probability"``
        or ``"log_probability"`` (CLIP zero-shot classification of the image among the words, see
        ``word_scores``; the logit scale is the scorer model's). Single words are often far from what a CLIP
        saw in training (whole captions): the cosine of *every* word can be highest for a blank image, so
        removing the word's own object raises it; the probabilities compare the words with each other.

    Attributes
    ----------
    n_requested : int
        Images asked for so far.
    n_distinct : int
        Distinct masked images among them.
    n_embedded : int
        Images sent through CLIP's image tower (= ``n_distinct`` with deduplication).
    """

    def __init__(self, image, segments, texts: Sequence[str], scorer, *, hide_color="background",
                 deduplicate: bool = True, output: str = "cosine"):
        check_scorer(scorer)
        checks.one_of(output, OUTPUTS, "output")
        self.image = to_rgb_array(image)
        self.segments = check_label_map(segments, self.image.shape)
        self.texts = checks.string_list(texts, "texts", allow_single=False)
        if not self.texts:
            raise ValueError(f"texts must be a non-empty sequence of str, got {texts!r}")
        self.words = list(self.texts)  # the words the texts stand for (``from_prompt`` sets the bare words)
        self.scorer = scorer
        self.fill = fill_color(self.image, hide_color)
        self._text_embeddings = scorer.embed_texts(self.texts).double().cpu().numpy()  # (k, d)
        self.deduplicate = bool(deduplicate)
        self.output = output
        self.logit_scale = float(getattr(scorer, "logit_scale", 100.0))
        self._cache: dict[bytes, np.ndarray] = {}
        self._seen: set[bytes] = set()
        self.n_requested = 0
        self.n_embedded = 0

    @property
    def n_distinct(self) -> int:
        return len(self._seen)

    @classmethod
    def from_prompt(cls, image, prompt: str, scorer, *, segmenter=None, segments=None, words=None,
                    text_template: str | None = None, hide_color="background", deduplicate: bool = True,
                    output: str = "cosine") -> "SegmentScorer":
        """Segment ``image`` (with ``segmenter``, or take the given ``segments``) and compare it with each word of
        ``prompt`` (or the given ``words``, each of which must be in the prompt), formatted by ``text_template`` (default: the scorer's own ``text_template``)."""
        check_scorer(scorer)  # the cheap checks first: segmenting (SAM) and embedding are slow
        checks.one_of(output, OUTPUTS, "output")
        text_template = checks.text_template(
            getattr(scorer, "text_template", "{}") if text_template is None else text_template)
        words = resolve_words(prompt, words)
        rgb = to_rgb_array(image)
        if segments is None:
            if segmenter is None:
                from captum_diffusion.image.segmenters import SuperpixelSegmenter

                segmenter = SuperpixelSegmenter("slic")
            if not callable(segmenter):
                raise TypeError(f"segmenter must be callable image -> (H, W) label map, got {type(segmenter).__name__}")
            segments = check_label_map(segmenter(rgb), rgb.shape, name="segments (the segmenter's output)")
        elif segmenter is not None:
            raise ValueError("give segmenter or segments, not both")
        scorer_ = cls(rgb, segments, [text_template.format(w) for w in words], scorer, hide_color=hide_color,
                      deduplicate=deduplicate, output=output)
        scorer_.words = words
        return scorer_

    @property
    def n_segments(self) -> int:
        return int(self.segments.max()) + 1

    def images(self, keep) -> np.ndarray:
        """uint8 ``(n, H, W, 3)``: the image with the segments not in ``keep`` ``(n, n_segments)`` hidden."""
        keep = checks.binary_matrix(keep, self.n_segments, "keep", "segment")
        return hide_segments(self.image, self.segments, keep, self.fill)

    def score_images(self, images) -> np.ndarray:
        """Scores ``(n, n_texts)`` float64 (per ``output``) of images ``(n, H, W, 3)`` uint8."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != self.image.shape:
            raise ValueError(f"images must be (n, {', '.join(map(str, self.image.shape))}), got {images.shape}")
        if images.dtype != np.uint8:  # float in [0, 1], uint16, bool: converted as everywhere (no silent cast)
            images = (np.stack([to_rgb_array(image, f"images[{i}]") for i, image in enumerate(images)])
                      if len(images) else images.astype(np.uint8))
        keys = [hashlib.blake2b(img.tobytes(), digest_size=16).digest() for img in images]
        self._seen.update(keys)
        self.n_requested += len(images)
        if not self.deduplicate:
            self.n_embedded += len(images)
            return self._scores(self._embed(images))
        new = {}
        for i, key in enumerate(keys):
            if key not in self._cache and key not in new:
                new[key] = i
        if new:
            for key, row in zip(new, self._embed(images[list(new.values())])):
                self._cache[key] = row
            self.n_embedded += len(new)
        return self._scores(np.stack([self._cache[key] for key in keys]) if keys else np.zeros((0, len(self.texts))))

    def _scores(self, cosine: np.ndarray) -> np.ndarray:
        import torch

        return word_scores(torch.from_numpy(cosine), self.texts, self.output, self.logit_scale).numpy()

    def _embed(self, images: np.ndarray) -> np.ndarray:
        if not len(images):
            return np.zeros((0, len(self.texts)))
        return self.scorer.embed_images(images).double().cpu().numpy() @ self._text_embeddings.T

    def __call__(self, keep) -> np.ndarray:
        """Scores ``(n, n_texts)`` of the image with the segments not in ``keep`` ``(n, n_segments)`` hidden."""
        return self.score_images(self.images(keep))


@dataclass
class SegmentWordTable:
    """CLIP similarity of each segment shown alone to each word: ``values`` ``(n_segments, n_words)``.

    ``image`` (uint8 ``(H, W, 3)``) and ``segments`` (``(H, W)``) are kept for ``plot``.
    """

    values: np.ndarray
    words: list[str]
    image: np.ndarray = field(repr=False)
    segments: np.ndarray = field(repr=False)
    output: str = "cosine"

    @property
    def segment_names(self) -> list[str]:
        return [f"segment {i}" for i in range(len(self.values))]

    def best_segment(self, word) -> int:
        """The segment whose image alone is closest to ``word`` (a word or its index)."""
        if isinstance(word, str):
            if word not in self.words:
                raise ValueError(f"word {word!r} is not one of the table's words {self.words}")
            column = self.words.index(word)
        else:
            column = checks.index(word, len(self.words), "word (a word or its index)")
        return int(np.argmax(self.values[:, column]))

    def to_pandas(self):
        """A ``pandas.DataFrame``: rows ``segment i``, columns the words."""
        import pandas as pd

        return pd.DataFrame(self.values, index=self.segment_names, columns=list(self.words))

    def plot(self, *, cmap: str = "viridis"):
        """A matplotlib Figure: the numbered segments (left) and the segment-by-word heat map (right)."""
        import matplotlib.pyplot as plt
        from skimage.segmentation import mark_boundaries

        fig, (ax_img, ax_tab) = plt.subplots(1, 2, figsize=(4 + 0.9 * len(self.words), 4))
        ax_img.imshow(mark_boundaries(self.image, self.segments, color=(0, 0, 0)))
        for label in range(len(self.values)):
            rows, cols = np.nonzero(self.segments == label)
            ax_img.text(cols.mean(), rows.mean(), str(label), ha="center", va="center", fontsize=9,
                        bbox={"boxstyle": "round", "fc": "white", "alpha": 0.7})
        ax_img.set_axis_off()
        ax_img.set_title("segments")
        im = ax_tab.imshow(self.values, cmap=cmap, aspect="auto")
        ax_tab.set_xticks(range(len(self.words)), self.words, rotation=45, ha="right")
        ax_tab.set_yticks(range(len(self.values)), self.segment_names)
        for (r, c), v in np.ndenumerate(self.values):
            ax_tab.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white")
        ax_tab.set_title("CLIP score of each segment alone")
        fig.colorbar(im, ax=ax_tab, label=self.output.replace("_", " "))
        fig.tight_layout()
        return fig


def segment_word_table(image, prompt: str, scorer, *, segmenter=None, segments=None, words=None,
                       text_template: str | None = None, hide_color="background", output: str = "cosine") -> SegmentWordTable:
    """Gupta & Kanoria's table: CLIP cosine of each segment alone (others hidden) to each word of ``prompt``.

    Arguments as ``SegmentScorer.from_prompt`` (``output="probability"`` gives the zero-shot probabilities
    instead). Returns a ``SegmentWordTable`` (``values`` ``(n_segments, n_words)``).
    """
    scorer_ = SegmentScorer.from_prompt(image, prompt, scorer, segmenter=segmenter, segments=segments, words=words,
                                        text_template=text_template, hide_color=hide_color, output=output)
    values = scorer_(np.eye(scorer_.n_segments, dtype=bool))
    return SegmentWordTable(values, list(scorer_.words), scorer_.image, scorer_.segments, output)
