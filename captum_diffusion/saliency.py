"""Gradient saliency of CLIP's image-to-word similarity with Captum (Gupta & Kanoria 1.3; RATLIP's Grad-CAM).

``CLIPSaliency(model, processor, method).attribute(image, words)`` returns one ``(H, W)`` map per word, at the
image's own resolution, for the cosine between CLIP's embedding of the image and of the word:

- ``"saliency"``: ``captum.attr.Saliency`` (|gradient|), channels summed.
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

Images go through a differentiable copy of the ``CLIPImageProcessor`` steps (shortest-edge resize, centre
crop, normalise), so gradients reach the original pixels; pixels outside the centre crop get 0.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Sequence

import numpy as np
import torch
from torch import nn

from captum_diffusion.scores import _features
from captum_diffusion.segment_scores import OUTPUTS, clip_logit_scale, fill_color, word_scores
from captum_diffusion.segmentation import to_rgb_array

METHODS = ("saliency", "integrated_gradients", "smoothgrad", "guided_backprop", "gradcam")


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


class _ImageWordSimilarity(nn.Module):
    """``forward(x)``: images ``(B, 3, H, W)`` in [0, 1] -> score of each word ``(B, n_words)`` (cosine, or the
    zero-shot (log-)probability among the words, see ``segment_scores.word_scores``)."""

    def __init__(self, model, image_processor, text_embeddings: torch.Tensor, words=(), output: str = "cosine"):
        super().__init__()
        self.model = model
        self.words, self.output = list(words), output
        self.register_buffer("text_embeddings", text_embeddings)
        size = image_processor.size
        crop = image_processor.crop_size
        edge = size["shortest_edge"] if "shortest_edge" in size else min(size["height"], size["width"])
        self.shortest_edge = int(edge)
        self.crop = (int(crop["height"]), int(crop["width"]))
        self.register_buffer("mean", torch.tensor(image_processor.image_mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(image_processor.image_std).view(1, 3, 1, 1))

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        scale = self.shortest_edge / min(height, width)
        return max(round(height * scale), self.crop[0]), max(round(width * scale), self.crop[1])

    def crop_box(self, height: int, width: int) -> tuple[int, int]:
        rh, rw = self.resized_size(height, width)
        return (rh - self.crop[0]) // 2, (rw - self.crop[1]) // 2

    def pixel_values(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        rh, rw = self.resized_size(height, width)
        if (rh, rw) != (height, width):
            x = nn.functional.interpolate(x, size=(rh, rw), mode="bicubic", align_corners=False, antialias=True)
        top, left = self.crop_box(height, width)
        x = x[..., top : top + self.crop[0], left : left + self.crop[1]]
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = self.pixel_values(x).to(next(self.model.parameters()).dtype)
        features = _features(self.model.get_image_features(pixel_values=pixels))
        embedding = nn.functional.normalize(features.float(), dim=-1)
        cosine = embedding @ self.text_embeddings.T
        if self.output == "cosine":
            return cosine
        return word_scores(cosine, self.words, self.output, clip_logit_scale(self.model))


class CLIPSaliency:
    """Per-word gradient maps of CLIP image-word similarity through Captum (see the module docstring).

    Args:
        model: a ``transformers.CLIPModel`` (or a ``CLIPSimilarity``, whose model and processor are used).
        processor: its ``CLIPProcessor`` (tokenizer + image processor).
        method: one of ``"saliency"``, ``"integrated_gradients"``, ``"smoothgrad"``, ``"guided_backprop"``,
            ``"gradcam"``.
        layer: Grad-CAM's vision encoder layer index (default -2).
        baseline: Integrated Gradients' baseline: ``"background"`` (default: the image's border colour, as
            segment hiding uses), ``"black"``, a grey level in [0, 1], or a tensor ``(3, H, W)`` in [0, 1].
        n_steps: IG steps; nt_samples, stdevs: SmoothGrad's sample count and noise std (pixel units in [0, 1]).
        text_template: how each word is embedded (``"{}"``: the bare word).
        output: the explained score: ``"cosine"`` (default), ``"probability"`` or ``"log_probability"`` (CLIP's
            zero-shot classification among the given words; see ``segment_scores.SegmentScorer`` for why).
        device: where to compute (default: the model's device).
    """

    def __init__(self, model, processor=None, method: str = "saliency", *, layer: int = -2, baseline="background",
                 n_steps: int = 32, nt_samples: int = 16, stdevs: float = 0.1, text_template: str = "{}",
                 output: str = "cosine", device=None):
        from transformers import CLIPModel

        if processor is None and hasattr(model, "processor"):
            model, processor = model.model, model.processor
        if not isinstance(model, CLIPModel):
            raise TypeError(f"model must be a transformers.CLIPModel (or a CLIPSimilarity), got {type(model).__name__}")
        if processor is None or not hasattr(processor, "image_processor"):
            raise ValueError("processor must be the model's CLIPProcessor (with .tokenizer and .image_processor)")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        layers = model.vision_model.encoder.layers
        if not -len(layers) <= layer < len(layers):
            raise ValueError(f"layer must index the {len(layers)} vision encoder layers, got {layer}")
        if "{}" not in text_template:
            raise ValueError(f"text_template must contain '{{}}', got {text_template!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.output = output
        self.model = model.eval() if device is None else model.to(device).eval()
        self.processor, self.method, self.layer = processor, method, layer
        self.baseline, self.n_steps, self.nt_samples, self.stdevs = baseline, n_steps, nt_samples, stdevs
        self.text_template = text_template

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _pixels(self, rgb: np.ndarray) -> torch.Tensor:
        """uint8 ``(H, W, 3)`` -> float ``(1, 3, H, W)`` in [0, 1] on the model's device."""
        return torch.tensor(rgb, dtype=torch.float32, device=self.device).permute(2, 0, 1)[None].div(255)

    @torch.no_grad()
    def _text_embeddings(self, words: Sequence[str]) -> torch.Tensor:
        tokens = self.processor.tokenizer([self.text_template.format(w) for w in words], padding=True,
                                          truncation=True, return_tensors="pt").to(self.device)
        features = _features(self.model.get_text_features(input_ids=tokens["input_ids"],
                                                          attention_mask=tokens["attention_mask"]))
        return nn.functional.normalize(features.float(), dim=-1)

    def _baseline(self, rgb: np.ndarray, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.baseline, torch.Tensor):
            base = self.baseline.to(x)
            if base.shape != x.shape[1:]:
                raise ValueError(f"baseline tensor must be (3, H, W) = {tuple(x.shape[1:])}, got {tuple(base.shape)}")
            return base[None]
        if self.baseline == "background":
            color = torch.tensor(fill_color(rgb, "background") / 255.0, dtype=x.dtype, device=x.device)
            return color.view(1, 3, 1, 1).expand_as(x).contiguous()
        if self.baseline == "black":
            return torch.zeros_like(x)
        if isinstance(self.baseline, (int, float)) and 0 <= self.baseline <= 1:
            return torch.full_like(x, float(self.baseline))
        raise ValueError("baseline must be 'background', 'black', a level in [0, 1] or a (3, H, W) tensor, "
                         f"got {self.baseline!r}")

    @contextlib.contextmanager
    def _guided_activations(self):
        mlps = [m for m in self.model.vision_model.modules()
                if isinstance(getattr(m, "activation_fn", None), nn.Module)]
        originals = [m.activation_fn for m in mlps]
        try:
            for mlp in mlps:
                mlp.activation_fn = _GuidedActivation(mlp.activation_fn)
            yield
        finally:
            for mlp, act in zip(mlps, originals):
                mlp.activation_fn = act

    @contextlib.contextmanager
    def _patch_grid(self, net: _ImageWordSimilarity):
        grid_module = _PatchGrid()
        config = self.model.vision_model.config
        grid_h, grid_w = net.crop[0] // config.patch_size, net.crop[1] // config.patch_size

        def hook(_module, _inputs, output):
            tokens = output[0] if isinstance(output, tuple) else output
            cls, patches = tokens[:, :1], tokens[:, 1:]
            grid = grid_module(patches.transpose(1, 2).reshape(patches.shape[0], -1, grid_h, grid_w))
            tokens = torch.cat([cls, grid.flatten(2).transpose(1, 2)], dim=1)
            return (tokens,) + tuple(output[1:]) if isinstance(output, tuple) else tokens

        handle = self.model.vision_model.encoder.layers[self.layer].register_forward_hook(hook)
        try:
            yield grid_module
        finally:
            handle.remove()

    def _gradcam_to_image(self, cam: torch.Tensor, net: _ImageWordSimilarity, height: int, width: int) -> torch.Tensor:
        """Grad-CAM ``(1, 1, h, w)`` on the patch grid -> ``(H, W)`` on the original image (0 outside the crop)."""
        rh, rw = net.resized_size(height, width)
        top, left = net.crop_box(height, width)
        frame = torch.zeros(1, 1, rh, rw, dtype=cam.dtype, device=cam.device)
        frame[..., top : top + net.crop[0], left : left + net.crop[1]] = nn.functional.interpolate(
            cam, size=net.crop, mode="bilinear", align_corners=False)
        return nn.functional.interpolate(frame, size=(height, width), mode="bilinear", align_corners=False)[0, 0]

    def _net(self, words: list[str]) -> nn.Module:
        """The captum forward: pixels ``(1, 3, H, W)`` in [0, 1] -> ``output`` score per word ``(1, n_words)``."""
        return _ImageWordSimilarity(self.model, self.processor.image_processor, self._text_embeddings(words), words,
                                    self.output).to(self.device)

    def attribute(self, image, words: Sequence[str] | str) -> torch.Tensor:
        """Per-word maps for ``image`` (PIL or uint8 array; grayscale/alpha converted as ``to_rgb_array``).

        Args:
            words: the words (a str is one word); each is embedded through ``text_template``.
        Returns:
            float32 CPU tensor ``(n_words, H, W)``; units: the ``output`` score per pixel, channels summed
            (Grad-CAM: non-negative, relative units).
        """
        from captum.attr import (GuidedBackprop, IntegratedGradients, LayerGradCam, NoiseTunnel, Saliency)

        words = [words] if isinstance(words, str) else list(words)
        if not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise ValueError(f"words must be non-empty strings, got {words!r}")
        rgb = to_rgb_array(image)
        height, width = rgb.shape[:2]
        x = self._pixels(rgb).requires_grad_(True)
        net = self._net(words)
        maps = []
        with contextlib.ExitStack() as stack:
            stack.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            options = {}  # the method's keyword arguments to captum's attribute()
            if self.method == "gradcam":
                grid = stack.enter_context(self._patch_grid(net))
                algorithm, options = LayerGradCam(net, grid), {"relu_attributions": True}
            elif self.method == "guided_backprop":
                stack.enter_context(self._guided_activations())
                algorithm = GuidedBackprop(net)
            elif self.method == "integrated_gradients":
                algorithm = IntegratedGradients(net)
                options = {"baselines": self._baseline(rgb, x), "n_steps": self.n_steps,
                           "internal_batch_size": self.n_steps}
            elif self.method == "smoothgrad":
                algorithm = NoiseTunnel(Saliency(net))
                options = {"nt_type": "smoothgrad", "nt_samples": self.nt_samples,
                           "nt_samples_batch_size": self.nt_samples, "stdevs": self.stdevs}
            else:
                algorithm = Saliency(net)
            for target in range(len(words)):
                attr = algorithm.attribute(x, target=target, **options)
                maps.append(self._gradcam_to_image(attr, net, height, width) if self.method == "gradcam"
                            else attr[0].sum(0))
        return torch.stack(maps).detach().float().cpu()

    def similarity(self, image, words: Sequence[str] | str) -> torch.Tensor:
        """The explained scores of ``image`` for each word, ``(n_words,)`` (``output``; same preprocessing)."""
        words = [words] if isinstance(words, str) else list(words)
        x = self._pixels(to_rgb_array(image))
        with torch.no_grad():
            return self._net(words)(x)[0].cpu()

    def plot(self, image, attributions: torch.Tensor, words: Sequence[str], **kwargs):
        """``plot_attributions`` for this method's maps (Grad-CAM and saliency shown as absolute values)."""
        kwargs.setdefault("sign", "absolute_value" if self.method in ("saliency", "smoothgrad", "gradcam") else "all")
        return plot_attributions(image, attributions, words, **kwargs)


def plot_attributions(image, attributions, words: Sequence[str], *, method: str = "blended_heat_map",
                      sign: str = "absolute_value", cmap=None, alpha_overlay: float = 0.6):
    """One panel per word drawn by ``captum.attr.visualization.visualize_image_attr``; returns the Figure.

    ``attributions`` ``(n_words, H, W)`` must match the image's ``(H, W)``. A map with nothing to show for the
    chosen ``sign`` (all zero) is drawn as the plain image titled "(all zero)" instead of tripping captum's assert.
    """
    import matplotlib.pyplot as plt
    from captum.attr import visualization as viz

    rgb = to_rgb_array(image)
    attributions = torch.as_tensor(attributions).detach().float().cpu().numpy()
    words = list(words)
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
