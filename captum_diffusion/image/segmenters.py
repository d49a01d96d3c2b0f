"""Segmenters: an image in, an ``(H, W)`` int64 label map out, labels ``0..n-1``, every pixel labelled.

Each segmenter is a callable ``segmenter(image) -> np.ndarray`` and so works directly as LIME's
``segmentation_fn``. Images may be PIL images (any mode) or uint8 arrays ``(H, W)``, ``(H, W, 1)``,
``(H, W, 3)``, ``(H, W, 4)``: grayscale is repeated to RGB and alpha is composited onto white
(``captum_diffusion.convert``).

- ``SAMSegmenter``: Segment Anything masks, ranked by predicted quality x area (Gupta & Kanoria 3.2.2), capped.
- ``SuperpixelSegmenter``: scikit-image slic / quickshift / felzenszwalb.
- ``DAAMKMeansSegmenter``: k-means over each pixel's vector of per-word heat-map values (Gupta & Kanoria 3.2.1).
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from captum_diffusion import checks
from captum_diffusion.convert import to_rgb_array


def relabel(labels) -> np.ndarray:
    """Any integer label map as int64 labels ``0..n-1`` (order of the original values kept)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 2-D integer array (H, W), got dtype {labels.dtype} shape {labels.shape}")
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int64)


def check_label_map(segments, image_shape: Sequence[int], *, min_segments: int = 2,
                    name: str = "segments") -> np.ndarray:
    """Validate a label map for an image of shape ``image_shape`` ``(H, W, ...)``; returns it as int64.

    Raises ``ValueError`` when it is not 2-D integer, does not match the image's ``(H, W)``, is not exactly the
    labels ``0..n-1`` (use ``relabel``), or has fewer than ``min_segments`` segments.
    """
    height, width = _shape(image_shape, "image_shape")
    min_segments = checks.int_at_least(min_segments, 1, "min_segments")
    if hasattr(segments, "detach"):  # torch tensor
        segments = segments.detach().cpu().numpy()
    segments = np.asarray(segments)
    if segments.ndim != 2 or not np.issubdtype(segments.dtype, np.integer):
        raise ValueError(f"{name} must be a 2-D integer label map (H, W); got dtype {segments.dtype} "
                         f"shape {segments.shape}")
    if segments.shape != (height, width):
        raise ValueError(f"{name} has shape {segments.shape} but the image is {(height, width)} (H, W): "
                         "they must match")
    if segments.size == 0:
        raise ValueError(f"{name} is empty (shape {segments.shape}): an image needs at least one pixel")
    present = np.unique(segments)
    if present[0] != 0 or present[-1] != len(present) - 1:
        raise ValueError(
            f"{name} must use the labels 0..n-1 with none missing; got {present[:10].tolist()}"
            f"{'...' if len(present) > 10 else ''}: pass it through captum_diffusion.image.segmenters.relabel"
        )
    if len(present) < min_segments:
        raise ValueError(
            f"{name} has {len(present)} segment(s) but at least {min_segments} are needed to attribute between "
            "regions: use a segmenter that finds more (e.g. more n_segments / clusters, a lower SAM threshold)"
        )
    return segments.astype(np.int64, copy=False)


def _shape(shape, name: str) -> tuple[int, int]:
    """``(H, W)`` of an image shape ``(H, W, ...)``: positive ints (0 only where a 0-pixel image is meant)."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) and not isinstance(shape, np.ndarray):
        raise TypeError(f"{name} must be a shape (H, W, ...), got {type(shape).__name__} {shape!r}")
    if len(shape) < 2:
        raise ValueError(f"{name} must be a shape (H, W, ...), got {tuple(shape)!r}")
    return (checks.int_at_least(shape[0], 0, f"{name}[0] (H)"), checks.int_at_least(shape[1], 0, f"{name}[1] (W)"))


def masks_to_label_map(
    masks: Sequence[Mapping[str, Any]],
    shape: Sequence[int],
    *,
    max_segments: int = 10,
    rank_by: str = "iou_area",
    min_area: int = 1,
) -> np.ndarray:
    """SAM mask records -> label map ``(H, W)`` int64.

    Masks are painted best-first; a pixel belongs to the highest-ranked mask that covers it. Label ``k`` is the
    ``k``-th best kept mask; pixels no kept mask covers form one background segment, the last label.

    Parameters
    ----------
    masks : sequence of dict
        Records as ``SamAutomaticMaskGenerator.generate`` returns them (``output_mode="binary_mask"``):
        dicts with ``"segmentation"`` (bool ``(H, W)``), ``"area"``, ``"predicted_iou"``, ``"stability_score"``.
    shape : sequence of int
        The image's ``(H, W)`` in pixels.
    max_segments : int
        At most this many segments in the result, the background segment included.
    rank_by : {"iou_area", "area", "predicted_iou", "stability_area"}
        ``"iou_area"`` (predicted_iou x area, default), ``"area"``, ``"predicted_iou"``,
        ``"stability_area"`` (stability_score x area).
    min_area : int
        A mask that keeps fewer pixels than this after higher-ranked masks took theirs is dropped.

    Returns
    -------
    numpy.ndarray
        Label map ``(H, W)`` int64 with labels ``0..n-1``, ``n <= max_segments``; the last label is the
        background.
    """
    if rank_by not in _RANK_KEYS:
        raise ValueError(f"rank_by must be one of {sorted(_RANK_KEYS)}, got {rank_by!r}")
    checks.int_at_least(max_segments, 2, "max_segments (objects plus background)")
    min_area = checks.int_at_least(min_area, 0, "min_area")
    height, width = _shape(shape, "shape")
    if height == 0 or width == 0:
        raise ValueError(f"shape must be a non-empty image's (H, W), got {tuple(shape)!r}")
    masks = checks.sequence(masks, "masks")
    for i, record in enumerate(masks):
        if not isinstance(record, Mapping):
            raise TypeError(f"masks[{i}] must be a SAM mask record (a dict), got {type(record).__name__}")
        missing = sorted({"segmentation", *_RANK_FIELDS[rank_by]} - set(record))
        if missing:
            raise ValueError(f"masks[{i}] lacks {missing} (SamAutomaticMaskGenerator records have 'segmentation', "
                             f"'area', 'predicted_iou', 'stability_score')")
    scores = []
    for i, record in enumerate(masks):
        try:
            score = _RANK_KEYS[rank_by](record)
        except TypeError:
            score = None
        scores.append(checks.finite_number(score, f"masks[{i}] ranking score ({rank_by} from "
                                                  f"{ {k: record[k] for k in _RANK_FIELDS[rank_by]} })"))
    order = sorted(range(len(masks)), key=lambda i: (-scores[i], i))
    labels = np.full((height, width), -1, dtype=np.int64)
    n_objects = 0
    for i in order:
        if n_objects == max_segments - 1 or (labels >= 0).all():
            break
        mask = np.asarray(masks[i]["segmentation"])
        if mask.shape != (height, width):
            raise ValueError(f"masks[{i}]['segmentation'] has shape {mask.shape}, expected {(height, width)}")
        mask = checks.binary_matrix(mask, width, f"masks[{i}]['segmentation']", "pixel")
        claimed = mask & (labels < 0)
        if claimed.sum() >= max(min_area, 1):
            labels[claimed] = n_objects
            n_objects += 1
    labels[labels < 0] = n_objects
    return labels  # already 0..n-1: each kept mask claimed pixels, the background label is next


_RANK_FIELDS = {"iou_area": ("predicted_iou", "area"), "area": ("area",), "predicted_iou": ("predicted_iou",),
                "stability_area": ("stability_score", "area")}
_RANK_KEYS = {
    "iou_area": lambda r: r["predicted_iou"] * r["area"],
    "area": lambda r: r["area"],
    "predicted_iou": lambda r: r["predicted_iou"],
    "stability_area": lambda r: r["stability_score"] * r["area"],
}


class SAMSegmenter:
    """Segment Anything: the automatic mask generator's masks, ranked, capped, overlaps resolved.

    ``segmenter(image)`` returns the label map ``(H, W)`` int64; ``segmenter.generate(image)`` the raw mask
    records.

    Parameters
    ----------
    model : segment_anything.modeling.Sam, optional
        A built SAM model (optional when ``checkpoint`` is given).
    checkpoint : str or os.PathLike, optional
        Path of a SAM checkpoint file (e.g. ``sam_vit_b_01ec64.pth``), loaded with
        ``sam_model_registry[model_type](checkpoint=...)``.
    model_type : {"vit_b", "vit_l", "vit_h", "default"}
        The SAM architecture of ``checkpoint``.
    max_segments : int
        At most this many segments, the background included (10, as the paper caps objects).
    rank_by, min_area
        See ``masks_to_label_map``.
    device : torch.device or str, optional
        Where SAM runs (default: where its weights are).
    **generator_kwargs
        Passed to ``SamAutomaticMaskGenerator`` (``points_per_side``, ``pred_iou_thresh``, ...).
    """

    def __init__(self, model=None, *, checkpoint=None, model_type: str = "vit_b", max_segments: int = 10,
                 rank_by: str = "iou_area", min_area: int = 1, device=None, **generator_kwargs):
        from segment_anything import SamAutomaticMaskGenerator, sam_model_registry
        from segment_anything.modeling import Sam

        checks.placement(device, None)
        if model is None:
            if checkpoint is None:
                raise ValueError("give either model (a segment_anything Sam) or checkpoint (a SAM .pth file path)")
            if not isinstance(checkpoint, (str, os.PathLike)):
                raise TypeError(f"checkpoint must be a path (str or os.PathLike) of a SAM .pth file, got "
                                f"{type(checkpoint).__name__} {checkpoint!r}")
            if model_type not in sam_model_registry:
                raise ValueError(f"model_type must be one of {sorted(sam_model_registry)}, got {model_type!r}")
            from pathlib import Path

            if not Path(checkpoint).is_file():
                raise FileNotFoundError(f"SAM checkpoint not found: {checkpoint!r}")
            model = sam_model_registry[model_type](checkpoint=str(checkpoint))
        elif not isinstance(model, Sam):
            raise TypeError(f"model must be a segment_anything.modeling.Sam, got {type(model).__name__}")
        if device is not None:
            model = model.to(device)
        masks_to_label_map([], (1, 1), max_segments=max_segments, rank_by=rank_by)  # validates the arguments
        self.model = model.eval()
        self.max_segments, self.rank_by, self.min_area = max_segments, rank_by, min_area
        self.generator = SamAutomaticMaskGenerator(model, output_mode="binary_mask", **generator_kwargs)

    def generate(self, image) -> list[dict]:
        """SAM's raw mask records for ``image`` (see ``SamAutomaticMaskGenerator.generate``)."""
        return self.generator.generate(to_rgb_array(image))

    def __call__(self, image) -> np.ndarray:
        rgb = to_rgb_array(image)
        return masks_to_label_map(self.generator.generate(rgb), rgb.shape[:2], max_segments=self.max_segments,
                                  rank_by=self.rank_by, min_area=self.min_area)


class SuperpixelSegmenter:
    """scikit-image superpixels: ``method`` in ``"slic"``, ``"quickshift"``, ``"felzenszwalb"``.

    ``**kwargs`` go to the scikit-image function (defaults: slic ``n_segments=10, compactness=10, start_label=0``;
    quickshift ``kernel_size=4, max_dist=200, ratio=0.2`` as LIME uses; felzenszwalb ``scale=100, sigma=0.5,
    min_size=50``). Results are relabelled to ``0..n-1``.
    """

    DEFAULTS = {
        "slic": {"n_segments": 10, "compactness": 10.0, "start_label": 0},
        "quickshift": {"kernel_size": 4, "max_dist": 200, "ratio": 0.2, "rng": 0},
        "felzenszwalb": {"scale": 100, "sigma": 0.5, "min_size": 50},
    }
    #: the numeric options checked up front: name -> ("int" | "positive" | "non_negative", lowest value)
    DOMAINS = {
        "slic": {"n_segments": ("int", 1), "compactness": ("positive", 0.0), "sigma": ("non_negative", 0.0),
                 "max_num_iter": ("int", 1)},
        "quickshift": {"kernel_size": ("positive", 0.0), "max_dist": ("positive", 0.0), "ratio": ("non_negative", 0.0),
                       "sigma": ("non_negative", 0.0)},
        "felzenszwalb": {"scale": ("positive", 0.0), "sigma": ("non_negative", 0.0), "min_size": ("int", 0)},
    }

    def __init__(self, method: str = "slic", **kwargs):
        import inspect

        import skimage.segmentation as seg

        checks.one_of(method, sorted(self.DEFAULTS), "method")
        accepted = set(inspect.signature(getattr(seg, method)).parameters) - {"image"}
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise TypeError(f"skimage.segmentation.{method} takes no {unknown}; its options are {sorted(accepted)}")
        for name, (kind, low) in self.DOMAINS.get(method, {}).items():
            if name in kwargs:
                if kind == "int":
                    checks.int_at_least(kwargs[name], low, name)
                else:
                    checks.finite_number(kwargs[name], name, low=low, low_open=kind == "positive")
        self.method = method
        self.kwargs = {**self.DEFAULTS[method], **kwargs}

    def __call__(self, image) -> np.ndarray:
        import skimage.segmentation as seg

        rgb = to_rgb_array(image)
        if self.method == "quickshift":
            labels = seg.quickshift(rgb.astype(np.float64) / 255.0, **self.kwargs)
        else:
            labels = getattr(seg, self.method)(rgb, **self.kwargs)
        return relabel(labels)


def _nonempty(words) -> list:
    words = checks.sequence(words, "words")
    if not words:
        raise ValueError("words is empty: give None (every word) or at least one word")
    return words


class DAAMKMeansSegmenter:
    """Cluster pixels by their vector of per-word heat-map values (DAAM maps) with scikit-learn's ``KMeans``.

    ``segmenter(image)`` returns the ``(H, W)`` label map; the image only supplies the output size.

    Parameters
    ----------
    heat_maps : torch.Tensor or numpy.ndarray
        Per-word maps ``(n_words, h, w)`` (any non-negative scale); bilinearly resized to the image's
        ``(H, W)`` when called, then each word's map is scaled to [0, 1].
    n_clusters : int
        k of k-means (the result may have fewer segments if pixels coincide).
    spatial_weight : float
        Weight of the pixel's (row, column) in [0, 1] appended to its feature vector, so that
        clusters also gather nearby pixels (0 = heat values only; at most 1e6).
    seed : int
        ``KMeans(random_state=seed)``.
    """

    def __init__(self, heat_maps, n_clusters: int = 4, *, spatial_weight: float = 0.25, seed: int = 0):
        maps = torch.as_tensor(checks.numeric_array(heat_maps, "heat_maps"))
        if maps.ndim != 3 or min(maps.shape) < 1:
            raise ValueError(f"heat_maps must be (n_words, h, w) with every size >= 1, got shape {tuple(maps.shape)}")
        checks.int_at_least(n_clusters, 2, "n_clusters")
        # above ~1e6 the heat values no longer matter, and far above it k-means' squared distances overflow
        spatial_weight = checks.finite_number(spatial_weight, "spatial_weight", low=0.0, high=1e6)
        seed = checks.random_state(seed, "seed")
        self.heat_maps = maps.float()
        self.n_clusters, self.spatial_weight, self.seed = n_clusters, spatial_weight, seed

    @classmethod
    def from_daam(cls, result, image: int = 0, words: Sequence | None = None, **kwargs) -> "DAAMKMeansSegmenter":
        """Build from DAAM's maps: image ``image``'s maps of ``words``. ``**kwargs`` go to the constructor.

        ``result``: the ``captum_diffusion.attention.DAAMResult`` of ``DAAM(pipe).explain(...)`` (``words``: labels
        such as ``"red"`` / ``"a#1"`` or indices; default all of the image's words), or the float tensor
        ``(n_images, n_words, H, W)`` of ``DAAM(pipe).attribute(...)`` (``words``: indices only; default all).
        """
        if isinstance(result, torch.Tensor):
            if result.ndim != 4:
                raise ValueError(f"result must be DAAM.attribute's (n_images, n_words, H, W) tensor, got shape "
                                 f"{tuple(result.shape)}")
            maps = result[checks.index(image, result.shape[0], "image")]
            if words is None:
                return cls(maps, **kwargs)
            indices = [checks.index(w, maps.shape[0], "words[i] (a tensor has no labels: give indices)")
                       for w in _nonempty(words)]
            return cls(maps[indices], **kwargs)
        if not (hasattr(result, "heatmaps") and hasattr(result, "heatmap")):
            raise TypeError(f"result must be a captum_diffusion.attention.DAAMResult (DAAM.explain) or the tensor of "
                            f"DAAM.attribute, got {type(result).__name__}")
        image = checks.index(image, len(result.heatmaps), "image")
        if words is None:
            maps = result.heatmaps[image]
        else:
            maps = torch.stack([result.heatmap(word, image) for word in _nonempty(words)])
        return cls(maps, **kwargs)

    def features(self, height: int, width: int) -> np.ndarray:
        """Per-pixel features ``(H * W, n_words [+ 2])``: word maps scaled to [0, 1], plus weighted coordinates."""
        maps = torch.nn.functional.interpolate(self.heat_maps[None], size=(height, width), mode="bilinear",
                                               align_corners=False)[0]
        low = maps.flatten(1).min(1).values[:, None, None]
        span = (maps.flatten(1).max(1).values[:, None, None] - low).clamp_min(1e-12)
        columns = [((maps - low) / span).flatten(1).T.numpy()]
        if self.spatial_weight > 0:
            rows, cols = np.mgrid[0:height, 0:width]
            coords = np.stack([rows.ravel() / max(height - 1, 1), cols.ravel() / max(width - 1, 1)], 1)
            columns.append(self.spatial_weight * coords)
        return np.concatenate(columns, 1).astype(np.float64)

    def __call__(self, image) -> np.ndarray:
        from sklearn.cluster import KMeans

        height, width = to_rgb_array(image).shape[:2]
        features = self.features(height, width)
        k = min(self.n_clusters, len(np.unique(features.round(6), axis=0)))
        if k < 2:
            return np.zeros((height, width), dtype=np.int64)
        labels = KMeans(n_clusters=k, n_init=4, random_state=self.seed).fit_predict(features)
        return relabel(labels.reshape(height, width))
