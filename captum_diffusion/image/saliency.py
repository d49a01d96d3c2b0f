"""Gradient saliency of CLIP's image-to-word similarity with Captum (Gupta & Kanoria 1.3; RATLIP's Grad-CAM).

``CLIPSaliency(scorer, method=...).attribute(image, words)`` returns one ``(H, W)`` map per word, at the image's
own resolution, for the cosine between the scorer's embedding of the image and of the word; ``explain(image, words)``
returns them with the image, the words and their scores as a :class:`SaliencyResult` (the package's captum
convention: ``attribute`` gives captum's tensor, ``explain`` the rich result). The scorer is any
``protocols.GradientScorer``: transformers CLIP (``CLIPSimilarity``) or open_clip (``OpenCLIPSimilarity``).

- ``"saliency"``: ``captum.attr.Saliency`` (the absolute gradient), channels summed.
- ``"integrated_gradients"``: ``captum.attr.IntegratedGradients`` from a constant baseline image, channels summed
  (signed; completeness: the map sums to the similarity change from the baseline).
- ``"smoothgrad"``: ``captum.attr.NoiseTunnel(Saliency)`` with ``nt_type="smoothgrad"``.
- ``"guided_backprop"``: ``captum.attr.GuidedBackprop``. Captum overrides the gradient of ``nn.ReLU`` modules
  only and CLIP has none (its MLPs use GELU / quick-GELU), so during the call each vision MLP activation is
  wrapped in an ``nn.ReLU`` subclass that computes the original activation; captum's rule (negative
  gradients at the activation's input set to 0) then applies to it. The model is restored afterwards.
- ``"gradcam"``: ``captum.attr.LayerGradCam`` on the patch tokens of a late vision encoder layer (default the
  second-to-last: the last layer's patch tokens never reach the pooled CLS embedding), reshaped to the patch
  grid ``(D, h, w)``, ReLU'd and bilinearly upsampled to the image.

Images go through the scorer's differentiable copy of its preprocessing (``image_input``: resize, centre crop,
normalise), so gradients reach the original pixels; pixels outside the centre crop get 0.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
from captum.attr import Attribution
from torch import nn

from captum_diffusion import checks
from captum_diffusion.convert import to_rgb_array
from captum_diffusion.image.segment_scores import fill_color
from captum_diffusion.protocols import GradientScorer
from captum_diffusion.scoring.base import OUTPUTS, word_scores

METHODS = ("saliency", "integrated_gradients", "smoothgrad", "guided_backprop", "gradcam")

#: the methods whose maps are non-negative (absolute gradients, ReLU'd Grad-CAM): plotted as absolute values.
_NON_NEGATIVE = ("saliency", "smoothgrad", "gradcam")


class _PatchGrid(nn.Module):
    """Identity on the patch grid ``(B, D, h, w)``: the module Captum's LayerGradCam hooks."""

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return grid


class _GuidedActivation(nn.ReLU):
    """An ``nn.ReLU`` (so captum's GuidedBackprop hooks it) that computes the wrapped activation."""

    def __init__(self, activation: nn.Module):
        super().__init__()
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x)


class _ImageWordScore(nn.Module):
    """captum's forward: pixels ``(B, 3, H, W)`` in [0, 1] -> the ``output`` score of each word ``(B, n_words)``."""

    def __init__(self, scorer, text_embeddings: torch.Tensor, words: Sequence[str], output: str):
        super().__init__()
        self.scorer, self.words, self.output = scorer, list(words), output
        self.register_buffer("text_embeddings", text_embeddings)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        embedding = self.scorer.embed_image_input(self.scorer.image_input(pixels))
        cosines = embedding @ self.text_embeddings.T
        return word_scores(cosines, self.words, self.output, self.scorer.logit_scale)


def as_gradient_scorer(scorer, processor=None):
    """``scorer`` if it implements ``protocols.GradientScorer``; a transformers ``CLIPModel`` with its
    ``processor`` becomes a ``CLIPSimilarity``; anything else raises ``TypeError``."""
    if processor is not None:
        from captum_diffusion.scoring.clip import CLIPSimilarity

        return CLIPSimilarity(scorer, processor)
    if not isinstance(scorer, GradientScorer):
        raise TypeError("scorer must implement captum_diffusion.protocols.GradientScorer (a CLIPSimilarity or "
                        "OpenCLIPSimilarity), or be a transformers CLIPModel given with its processor; got "
                        f"{type(scorer).__name__}")
    return scorer


@dataclass
class SaliencyResult:
    """What :meth:`CLIPSaliency.explain` returns: one image's per-word gradient maps with what they explain.

    Parameters
    ----------
    image : np.ndarray
        The explained image, uint8 ``(H, W, 3)``.
    words : list of str
        The ``n_words`` explained words, in the maps' order.
    heatmaps : torch.Tensor
        float32 CPU ``(n_words, H, W)`` at the image's size: the ``output`` score's attribution per pixel,
        channels summed (Grad-CAM: non-negative, relative units); what :meth:`CLIPSaliency.attribute` returns.
    scores : torch.Tensor
        float32 CPU ``(n_words,)``: the explained score of the image for each word (cosine, probability or log
        probability; :meth:`CLIPSaliency.similarity`).
    method : str
        The saliency method (one of :data:`METHODS`).
    """

    image: np.ndarray
    words: list
    heatmaps: torch.Tensor
    scores: torch.Tensor
    method: str

    def __len__(self) -> int:
        return len(self.words)

    def heatmap(self, word: Union[str, int]) -> torch.Tensor:
        """One word's map.

        Parameters
        ----------
        word : str or int
            A word of :attr:`words` (its first occurrence) or its index.

        Returns
        -------
        torch.Tensor
            ``(H, W)`` float32.
        """
        if isinstance(word, str):
            if word not in self.words:
                raise ValueError(f"word {word!r} has no map; the words are {self.words}")
            return self.heatmaps[self.words.index(word)]
        return self.heatmaps[checks.index(word, len(self.words), "word (a word index)")]

    def plot(self, **kwargs):
        """The image and one panel per word (:func:`plot_attributions`).

        Parameters
        ----------
        **kwargs
            :func:`plot_attributions`' keywords; ``sign`` defaults to ``"absolute_value"`` for the non-negative
            methods (saliency, smoothgrad, gradcam) and ``"all"`` otherwise.

        Returns
        -------
        matplotlib.figure.Figure
            Not shown; the caller saves or shows it.
        """
        kwargs.setdefault("sign", _default_sign(self.method))
        return plot_attributions(self.image, self.heatmaps, self.words, **kwargs)


class CLIPSaliency(Attribution):
    """Per-word gradient maps of a CLIP-like scorer's image-word similarity through Captum (module docstring).

    A ``captum.attr.Attribution`` whose ``forward_func`` is :meth:`similarity` (image, words -> one score per
    word); :meth:`attribute` returns captum's tensor, :meth:`explain` the :class:`SaliencyResult`.

    Parameters
    ----------
    scorer : GradientScorer or transformers.CLIPModel
        A ``protocols.GradientScorer`` (``CLIPSimilarity``, ``OpenCLIPSimilarity``), or a transformers
        ``CLIPModel`` with its ``CLIPProcessor`` as ``processor``.
    processor : transformers.CLIPProcessor, optional
        Only with a ``CLIPModel``.
    method : str, default "saliency"
        One of ``"saliency"``, ``"integrated_gradients"``, ``"smoothgrad"``, ``"guided_backprop"``, ``"gradcam"``.
    layer : int, default -2
        Grad-CAM's vision block index.
    baseline : str, float or torch.Tensor, default "background"
        Integrated Gradients' baseline: ``"background"`` (the image's border colour, as segment hiding uses),
        ``"black"``, a grey level in [0, 1], or a tensor ``(3, H, W)`` in [0, 1].
    n_steps : int, default 32
        Integrated Gradients' steps.
    nt_samples : int, default 16
        SmoothGrad's sample count.
    stdevs : float, default 0.1
        SmoothGrad's noise standard deviation, in pixel units (pixels in [0, 1]).
    text_template : str, optional
        The caption each word is embedded in (default: the scorer's ``text_template``).
    output : str, default "cosine"
        The explained score: ``"cosine"``, ``"probability"`` or ``"log_probability"`` (zero-shot classification
        among the given words; see ``image.segment_scores.SegmentScorer`` for why).

    Examples
    --------
    >>> saliency = CLIPSaliency(clip, method="integrated_gradients")
    >>> saliency.attribute(image, ["dog", "hat"]).shape        # (2, H, W)
    >>> saliency.explain(image, ["dog", "hat"]).plot()         # SaliencyResult -> Figure
    """

    def __init__(self, scorer, processor=None, method: str = "saliency", *, layer: int = -2, baseline="background",
                 n_steps: int = 32, nt_samples: int = 16, stdevs: float = 0.1, text_template: str | None = None,
                 output: str = "cosine"):
        self.scorer = as_gradient_scorer(scorer, processor)
        self.method = checks.one_of(method, METHODS, "method")
        self.layer = checks.index(layer, len(self.scorer.vision_blocks), "layer (a vision block index)")
        self.output = checks.one_of(output, OUTPUTS, "output")
        self.text_template = checks.text_template(self.scorer.text_template if text_template is None
                                                  else text_template)
        self.n_steps = checks.positive_int(n_steps, "n_steps")
        self.nt_samples = checks.positive_int(nt_samples, "nt_samples")
        self.stdevs = checks.finite_number(stdevs, "stdevs (SmoothGrad's noise, pixel units)", low=0.0, high=1.0)
        self.baseline = _check_baseline(baseline)
        super().__init__(self.similarity)

    @property
    def model(self) -> nn.Module:
        return self.scorer.model

    def _pixels(self, rgb: np.ndarray) -> torch.Tensor:
        """uint8 ``(H, W, 3)`` -> float ``(1, 3, H, W)`` in [0, 1] on the scorer's device."""
        return torch.tensor(rgb, dtype=torch.float32, device=self.scorer.device).permute(2, 0, 1)[None].div(255)

    def _baseline(self, rgb: np.ndarray, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.baseline, torch.Tensor):
            base = self.baseline.to(x)
            if base.shape != x.shape[1:]:
                raise ValueError(f"baseline tensor must be (3, H, W) = {tuple(x.shape[1:])}, got {tuple(base.shape)}")
            return base[None]
        if isinstance(self.baseline, str) and self.baseline == "background":
            color = torch.tensor(fill_color(rgb, "background") / 255.0, dtype=x.dtype, device=x.device)
            return color.view(1, 3, 1, 1).expand_as(x).contiguous()
        if isinstance(self.baseline, str) and self.baseline == "black":
            return torch.zeros_like(x)
        if isinstance(self.baseline, (int, float)) and not isinstance(self.baseline, bool) and 0 <= self.baseline <= 1:
            return torch.full_like(x, float(self.baseline))
        raise ValueError("baseline must be 'background', 'black', a level in [0, 1] or a (3, H, W) tensor, "
                         f"got {self.baseline!r}")

    @contextlib.contextmanager
    def _guided_activations(self):
        slots = self.scorer.vision_activations()
        originals = [getattr(owner, name) for owner, name in slots]
        try:
            for (owner, name), activation in zip(slots, originals):
                setattr(owner, name, _GuidedActivation(activation))
            yield
        finally:
            for (owner, name), activation in zip(slots, originals):
                setattr(owner, name, activation)

    @contextlib.contextmanager
    def _patch_grid(self):
        grid_module = _PatchGrid()
        grid_h, grid_w = self.scorer.patch_grid

        def hook(_module, _inputs, output):
            tokens = output[0] if isinstance(output, tuple) else output
            cls, patches = tokens[:, :1], tokens[:, 1:]
            grid = grid_module(patches.transpose(1, 2).reshape(patches.shape[0], -1, grid_h, grid_w))
            tokens = torch.cat([cls, grid.flatten(2).transpose(1, 2)], dim=1)
            return (tokens,) + tuple(output[1:]) if isinstance(output, tuple) else tokens

        handle = self.scorer.vision_blocks[self.layer].register_forward_hook(hook)
        try:
            yield grid_module
        finally:
            handle.remove()

    def _gradcam_to_image(self, cam: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Grad-CAM ``(1, 1, h, w)`` on the patch grid -> ``(H, W)`` on the original image (0 outside the crop)."""
        rh, rw, top, left, ch, cw = self.scorer.crop_box(height, width)
        frame = torch.zeros(1, 1, rh, rw, dtype=cam.dtype, device=cam.device)
        frame[..., top : top + ch, left : left + cw] = nn.functional.interpolate(
            cam, size=(ch, cw), mode="bilinear", align_corners=False)
        return nn.functional.interpolate(frame, size=(height, width), mode="bilinear", align_corners=False)[0, 0]

    def _net(self, words: list[str]) -> nn.Module:
        """The captum forward: pixels ``(1, 3, H, W)`` in [0, 1] -> ``output`` score per word ``(1, n_words)``."""
        texts = [self.text_template.format(w) for w in words]
        return _ImageWordScore(self.scorer, self.scorer.embed_texts(texts).to(self.scorer.device), words,
                               self.output)

    def _algorithm(self, net: nn.Module, rgb: np.ndarray, x: torch.Tensor, stack: contextlib.ExitStack):
        """The captum algorithm for ``self.method`` and its ``attribute`` keyword arguments."""
        from captum.attr import GuidedBackprop, IntegratedGradients, LayerGradCam, NoiseTunnel, Saliency

        if self.method == "gradcam":
            return LayerGradCam(net, stack.enter_context(self._patch_grid())), {"relu_attributions": True}
        if self.method == "guided_backprop":
            stack.enter_context(self._guided_activations())
            return GuidedBackprop(net), {}
        if self.method == "integrated_gradients":
            return IntegratedGradients(net), {"baselines": self._baseline(rgb, x), "n_steps": self.n_steps,
                                              "internal_batch_size": self.n_steps}
        if self.method == "smoothgrad":
            return NoiseTunnel(Saliency(net)), {"nt_type": "smoothgrad", "nt_samples": self.nt_samples,
                                                "nt_samples_batch_size": self.nt_samples, "stdevs": self.stdevs}
        return Saliency(net), {}

    def attribute(self, image, words: Sequence[str] | str) -> torch.Tensor:
        """Per-word maps for ``image`` (captum's contract: a tensor).

        Parameters
        ----------
        image : PIL.Image.Image or np.ndarray
            The image (see ``captum_diffusion.convert``), ``H x W`` pixels.
        words : sequence of str or str
            The words (a str is one word); each is embedded through ``text_template``.

        Returns
        -------
        torch.Tensor
            float32 CPU ``(n_words, H, W)``; units: the ``output`` score per pixel, channels summed (Grad-CAM:
            non-negative, relative units). Pixels outside the scorer's centre crop get 0.
        """
        return self._maps(to_rgb_array(image), _check_words(words))

    def explain(self, image, words: Sequence[str] | str) -> SaliencyResult:
        """Per-word maps for ``image`` with the image, the words and their scores.

        ``image`` and ``words`` are :meth:`attribute`'s.

        Returns
        -------
        SaliencyResult
            ``heatmaps`` (``(n_words, H, W)``, as :meth:`attribute`), ``scores`` (``(n_words,)``, as
            :meth:`similarity`), the image as uint8 ``(H, W, 3)``, the words and the method; ``.plot()``.
        """
        rgb, words = to_rgb_array(image), _check_words(words)
        return SaliencyResult(image=rgb, words=words, heatmaps=self._maps(rgb, words),
                              scores=self._scores(rgb, words), method=self.method)

    def _maps(self, rgb: np.ndarray, words: list[str]) -> torch.Tensor:
        """The maps ``(n_words, H, W)`` of uint8 ``rgb`` ``(H, W, 3)`` for checked ``words``."""
        height, width = rgb.shape[:2]
        x = self._pixels(rgb).requires_grad_(True)
        net = self._net(words)
        maps = []
        with contextlib.ExitStack() as stack:
            stack.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            algorithm, options = self._algorithm(net, rgb, x, stack)
            for target in range(len(words)):
                attr = algorithm.attribute(x, target=target, **options)
                maps.append(self._gradcam_to_image(attr, height, width) if self.method == "gradcam"
                            else attr[0].sum(0))
        return torch.stack(maps).detach().float().cpu()

    def similarity(self, image, words: Sequence[str] | str) -> torch.Tensor:
        """The explained scores of ``image`` for each word (the function the maps attribute).

        ``image`` and ``words`` are :meth:`attribute`'s.

        Returns
        -------
        torch.Tensor
            float32 CPU ``(n_words,)``: the ``output`` score (cosine in [-1, 1], probability or log probability)
            through the same differentiable preprocessing.
        """
        return self._scores(to_rgb_array(image), _check_words(words))

    def _scores(self, rgb: np.ndarray, words: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return self._net(words)(self._pixels(rgb))[0].cpu()

    def plot(self, image, attributions: torch.Tensor, words: Sequence[str], **kwargs):
        """:func:`plot_attributions` for this method's maps (Grad-CAM and saliency shown as absolute values).

        Parameters
        ----------
        image : PIL.Image.Image or np.ndarray
            The explained image, ``H x W``.
        attributions : torch.Tensor or np.ndarray
            ``(n_words, H, W)``, e.g. from :meth:`attribute`.
        words : sequence of str
            The maps' words.
        **kwargs
            :func:`plot_attributions`' keywords.

        Returns
        -------
        matplotlib.figure.Figure
        """
        kwargs.setdefault("sign", _default_sign(self.method))
        return plot_attributions(image, attributions, words, **kwargs)


def _default_sign(method: str) -> str:
    """captum's ``sign`` for plotting a method's maps: absolute values for the non-negative ones."""
    return "absolute_value" if method in _NON_NEGATIVE else "all"


def _check_baseline(baseline):
    """``"background"``, ``"black"``, a grey level in [0, 1] or a finite tensor ``(3, H, W)`` in [0, 1]."""
    invalid = "baseline must be 'background', 'black', a level in [0, 1] or a (3, H, W) tensor in [0, 1], got "
    if isinstance(baseline, str):
        return checks.one_of(baseline, ("background", "black"), "baseline")
    if isinstance(baseline, torch.Tensor):
        values = checks.numeric_array(baseline, "baseline")
        if values.ndim != 3 or values.shape[0] != 3 or values.size == 0 or values.min() < 0 or values.max() > 1:
            raise ValueError(invalid + f"a tensor of shape {tuple(baseline.shape)} with values in "
                             f"[{values.min(initial=0)}, {values.max(initial=0)}]")
        return baseline
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float)):
        raise TypeError(invalid + f"{type(baseline).__name__} {baseline!r}")
    return checks.finite_number(baseline, "baseline", low=0.0, high=1.0)


def _check_words(words) -> list[str]:
    words = checks.string_list(words, "words")
    if not words or not all(w.strip() for w in words):
        raise ValueError(f"words must be a non-empty list of non-empty strings, got {words!r}")
    return words


def plot_attributions(image, attributions, words: Sequence[str], *, method: str = "blended_heat_map",
                      sign: str = "absolute_value", cmap=None, alpha_overlay: float = 0.6):
    """The image, then one panel per word drawn by ``captum.attr.visualization.visualize_image_attr``.

    Parameters
    ----------
    image : PIL.Image.Image or np.ndarray
        The explained image, ``H x W`` pixels.
    attributions : torch.Tensor or np.ndarray
        ``(n_words, H, W)``, matching the image's ``(H, W)``.
    words : sequence of str
        The panels' titles, one per map.
    method, sign, cmap, alpha_overlay
        ``visualize_image_attr``'s arguments (``alpha_overlay`` in [0, 1]).

    Returns
    -------
    matplotlib.figure.Figure
        Not shown. A map with nothing to show for the chosen ``sign`` (all zero) is drawn as the plain image
        titled "(all zero)" instead of tripping captum's assert.
    """
    import matplotlib.pyplot as plt
    from captum.attr import visualization as viz

    rgb = to_rgb_array(image)
    attributions = checks.numeric_array(attributions, "attributions")
    words = checks.string_list(words, "words")
    checks.one_of(method, ("heat_map", "blended_heat_map", "original_image", "masked_image", "alpha_scaling"),
                  "method")
    checks.one_of(sign, ("all", "positive", "negative", "absolute_value"), "sign")
    alpha_overlay = checks.finite_number(alpha_overlay, "alpha_overlay", low=0.0, high=1.0)
    if attributions.ndim != 3 or attributions.shape[0] != len(words) or attributions.shape[1:] != rgb.shape[:2]:
        raise ValueError(f"attributions must be (n_words={len(words)}, H, W) = {(len(words),) + rgb.shape[:2]}, "
                         f"got {attributions.shape}")
    fig, axes = plt.subplots(1, len(words) + 1, figsize=(2.6 * (len(words) + 1), 2.8), squeeze=False)
    axes = axes[0]
    axes[0].imshow(rgb)
    axes[0].set_title("image")
    axes[0].set_axis_off()
    part = {"positive": np.maximum, "negative": np.minimum}.get(sign)
    for ax, word, attr in zip(axes[1:], words, attributions):
        shown = part(attr, 0) if part is not None else attr
        if not np.any(shown) or not np.all(np.isfinite(attr)):
            ax.imshow(rgb)
            ax.set_title(f"{word} (all zero)")
            ax.set_axis_off()
            continue
        viz.visualize_image_attr(attr[:, :, None], rgb / 255.0, method=method, sign=sign, plt_fig_axis=(fig, ax),
                                 use_pyplot=False, title=word, cmap=cmap, alpha_overlay=alpha_overlay)
    fig.tight_layout()
    return fig
