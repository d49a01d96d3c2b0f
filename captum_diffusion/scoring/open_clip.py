"""``OpenCLIPSimilarity``: the :class:`~captum_diffusion.protocols.GradientScorer` for open_clip models.

The scorer Gupta & Kanoria used (open_clip ``ViT-B-16-plus-240``, ``laion400m_e32``) and every other open_clip
CLIP: ``OpenCLIPSimilarity("ViT-B-16-plus-240", "laion400m_e32")``. Embeddings are exactly what an open_clip user
computes (``model.encode_image(preprocess(image))`` / ``model.encode_text(tokenizer(texts))``, normalised).

The differentiable image path (``image_input``) re-does the model's eval transform in torch: shortest-edge resize
(or ``"squash"``) with the transform's interpolation (antialiased, as PIL resizes), torchvision's centre crop,
normalisation with the model's mean / std. It is read off the ``preprocess`` transform (a torchvision ``Compose``
of open_clip's eval steps) or, for any other callable, off ``model.visual.preprocess_cfg``. ``resize_mode="longest"``
(letterbox padding) has no differentiable copy here: ``image_input`` / ``crop_box`` raise for it.

Gradient saliency needs a ViT vision tower (``model.visual.transformer.resblocks``). open_clip's ViTs always put a
class token first and run their blocks batch first (``Transformer.batch_first`` is True throughout open_clip 3.x),
so a block's output is ``(B, 1 + rows * columns, D)`` as Grad-CAM expects, whatever the pooling (``"tok"``,
``"avg"`` or an attentional pooler after the blocks). ResNet and timm towers embed fine but have no
``vision_blocks``: asking for them raises ``TypeError``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import open_clip  # the installed package (absolute import; this module is captum_diffusion.scoring.open_clip)
import torch
from torch import nn

from captum_diffusion import checks
from captum_diffusion.convert import as_rgb_images
from captum_diffusion.scoring.base import TorchScorer, batches

#: model-name prefixes whose weights come with the name (open_clip ignores ``pretrained`` for them)
SCHEMAS = ("hf-hub:", "local-dir:")

_INTERPOLATION = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest-exact",
                  "nearest-exact": "nearest-exact"}
#: eval-transform steps that do not change geometry or values for an RGB PIL image
_PASS_THROUGH = {"MaybeConvertMode", "MaybeToTensor", "ToTensor", "_convert_to_rgb", "PILToTensor",
                 "ConvertImageDtype"}


@dataclass(frozen=True)
class Preprocessing:
    """The geometry and normalisation of an open_clip eval transform.

    ``resize``: ``("shortest", edge, max_size)`` (torchvision ``Resize(int)``), ``("fit", (h, w))`` (open_clip's
    ``ResizeKeepRatio`` with ``longest=0``: the smaller scale that covers ``(h, w)``), ``("squash", (h, w))`` or
    ``None`` (no resize). ``crop``: centre crop ``(h, w)`` or ``None``. ``interpolation``: torch's mode name.
    """

    resize: tuple | None
    crop: tuple[int, int] | None
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    unsupported: str | None = None  # why no differentiable copy exists (raised by image_input / crop_box)

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        if self.resize is None:
            return height, width
        kind = self.resize[0]
        if kind == "squash":
            return tuple(self.resize[1])
        if kind == "fit":  # open_clip.transform.ResizeKeepRatio.get_params with longest=0
            ratio = min(height / self.resize[1][0], width / self.resize[1][1])
            return round(height / ratio), round(width / ratio)
        _, edge, max_size = self.resize  # torchvision.transforms.functional._compute_resized_output_size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = edge, int(edge * long / short)
        if max_size is not None and new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
        return (new_long, new_short) if width <= height else (new_short, new_long)


def _triple(values, name: str) -> tuple[float, float, float]:
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values] * 3)]
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (RGB), got {values}")
    return tuple(values)


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    return (size[0], size[0]) if len(size) == 1 else size


def _interpolation(mode) -> str:
    name = str(getattr(mode, "value", mode)).lower()
    if name not in _INTERPOLATION:
        raise ValueError(f"interpolation {name!r} has no differentiable torch counterpart here")
    return _INTERPOLATION[name]


def parse_preprocess(preprocess) -> Preprocessing | None:
    """The :class:`Preprocessing` of a torchvision ``Compose`` of open_clip eval steps; ``None`` if ``preprocess``
    is no ``Compose``. A ``Compose`` holding other steps gives a ``Preprocessing`` whose ``unsupported`` says why."""
    from torchvision import transforms as T

    if not isinstance(preprocess, T.Compose):
        return None
    resize, crop, interpolation, mean, std, unsupported = None, None, "bicubic", None, None, None
    for step in preprocess.transforms:
        kind = getattr(step, "__name__", type(step).__name__)  # a function's name, else its class's
        try:
            if isinstance(step, T.Resize):
                interpolation = _interpolation(step.interpolation)
                size = step.size if isinstance(step.size, int) or len(step.size) == 1 else tuple(step.size)
                if isinstance(size, tuple):
                    resize = ("squash", _pair(size))
                else:
                    resize = ("shortest", _pair(size)[0], step.max_size)
            elif kind == "ResizeKeepRatio":
                if step.random_scale_prob or step.random_aspect_prob:
                    raise ValueError("ResizeKeepRatio with random scale / aspect is a training transform")
                if step.longest != 0:
                    raise ValueError("resize_mode 'longest' (ResizeKeepRatio(longest=1) + padding) is not supported")
                interpolation = _interpolation(step.interpolation)
                resize = ("fit", _pair(step.size))
            elif isinstance(step, T.CenterCrop) or kind == "CenterCropOrPad":
                crop = _pair(step.size)
            elif isinstance(step, T.Normalize):
                mean, std = _triple(step.mean, "mean"), _triple(step.std, "std")
            elif kind not in _PASS_THROUGH:
                raise ValueError(f"step {step!r} has no differentiable copy")
        except ValueError as error:
            unsupported = unsupported or f"preprocess step {kind}: {error}"
    if mean is None:
        unsupported = unsupported or "preprocess has no Normalize step"
    return Preprocessing(resize, crop, interpolation, mean or (0.0,) * 3, std or (1.0,) * 3, unsupported)


def model_preprocess(model) -> object:
    """open_clip's eval transform for ``model`` from ``model.visual.preprocess_cfg`` (or the legacy
    ``image_size`` / ``image_mean`` / ``image_std``), with open_clip's defaults for anything missing."""
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    cfg = merge_preprocess_dict(PreprocessCfg(), open_clip.get_model_preprocess_cfg(model))
    return image_transform_v2(PreprocessCfg(**cfg), is_train=False)


#: values a resize pass may overshoot [0, 1] by before they are clipped (float noise in flat regions keeps its
#: gradient; PIL's uint8 rounding is 1/255 anyway)
CLIP_TOLERANCE = 1e-3


def _clip(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.clamp(-CLIP_TOLERANCE, 1.0 + CLIP_TOLERANCE)


def resize_like_pil(pixels: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize ``(B, C, H, W)`` pixels in [0, 1] to ``size`` as PIL resizes an 8-bit image, differentiably.

    PIL (what torchvision's ``Resize`` calls on a PIL image) resizes in two antialiased passes, horizontal then
    vertical, and clips each to 0..255; bicubic overshoots at sharp edges, so the clipping matters (one torch
    pass without it differs from PIL by up to 0.12 at a 64 -> 240 px upscale of a ShapesWorld image; two clipped
    passes by 1/255, PIL's rounding). Clipping has no gradient where it bites, as PIL's has none.
    """
    height, width = pixels.shape[-2:]
    if (height, width) == tuple(size):
        return pixels
    if mode not in ("bicubic", "bilinear"):
        return nn.functional.interpolate(pixels, size=size, mode=mode)
    if width != size[1]:
        pixels = _clip(nn.functional.interpolate(pixels, size=(height, size[1]), mode=mode, align_corners=False,
                                                 antialias=True))
    if height != size[0]:
        pixels = _clip(nn.functional.interpolate(pixels, size=tuple(size), mode=mode, align_corners=False,
                                                 antialias=True))
    return pixels


def _is_model(model) -> bool:
    return isinstance(model, nn.Module) and callable(getattr(model, "encode_image", None)) \
        and callable(getattr(model, "encode_text", None)) and isinstance(getattr(model, "visual", None), nn.Module)


def _check_name(name: str, pretrained) -> str | None:
    """Refuse, before any download, a model name open_clip does not know, a missing ``pretrained`` and an
    unknown tag that is no file; returns ``pretrained`` as a str (or None for a schema name)."""
    if not name.strip():
        raise ValueError("model must be an open_clip model name (see open_clip.list_models()), got ''")
    if name.startswith(SCHEMAS):
        return None if pretrained is None else str(pretrained)  # weights come with the name
    if open_clip.get_model_config(name.replace("/", "-")) is None:
        raise ValueError(f"model {name!r} is not an open_clip model name; see open_clip.list_models() "
                         f"(e.g. 'ViT-B-16-plus-240'), or pass an 'hf-hub:' / 'local-dir:' name or a model instance")
    tags = open_clip.list_pretrained_tags_by_model(name.replace("/", "-"))
    if pretrained is None:
        raise ValueError(f"pretrained is required with model={name!r}: a tag ({', '.join(tags) or 'none listed'}) or a "
                         "local checkpoint path; open_clip would otherwise build random weights. Pass a model "
                         "instance (with preprocess and tokenizer) to score with a model you built")
    if isinstance(pretrained, os.PathLike):
        pretrained = os.fspath(pretrained)
    if not isinstance(pretrained, str):
        raise TypeError(f"pretrained must be a str tag or checkpoint path, got {type(pretrained).__name__}")
    if not open_clip.get_pretrained_cfg(name.replace("/", "-"), pretrained) and not os.path.isfile(pretrained):
        raise ValueError(f"pretrained={pretrained!r} is neither a tag of {name!r} ({', '.join(tags) or 'none listed'}) "
                         "nor an existing checkpoint file")
    return pretrained


class OpenCLIPSimilarity(TorchScorer):
    """Cosine similarity in an open_clip model's joint embedding space.

    Images may be PIL images (any mode) or arrays (see ``captum_diffusion.convert``). Embeddings come back
    unit-norm, float32, on the CPU; texts past the tokenizer's context length are truncated by it.

    Parameters
    ----------
    model : str or torch.nn.Module
        An open_clip model name (``open_clip.list_models()``; default ``"ViT-B-16-plus-240"``, the
        Gupta & Kanoria scorer) loaded with ``open_clip.create_model_and_transforms(model, pretrained)``, an
        ``"hf-hub:org/repo"`` / ``"local-dir:path"`` name, or an ``open_clip.CLIP``-like instance (an
        ``nn.Module`` with ``encode_image``, ``encode_text`` and ``visual``).
    pretrained : str or os.PathLike
        With a plain name, a tag (``"laion400m_e32"``; ``open_clip.list_pretrained()``) or a local
        checkpoint file. Required: ``None`` raises ``ValueError`` rather than scoring with random weights.
    preprocess : callable, optional
        open_clip's eval image transform (default: the loaded one; for an instance, built from
        ``model.visual.preprocess_cfg``).
    tokenizer : callable or str, optional
        open_clip tokenizer (callable ``texts -> LongTensor (n, context_length)``) or a model name for
        ``open_clip.get_tokenizer``; required with an instance, ``open_clip.get_tokenizer(model)`` for a name.
    device : torch.device or str, optional
        Where the model runs (default: where its weights are; ``"cpu"`` for a fresh load).
    dtype : torch.dtype, optional
        Model dtype, e.g. ``torch.float16`` on a GPU (default: unchanged).
    batch_size : int
        Images / texts embedded per forward pass.
    text_template : str
        The caption a single word is embedded in on the image side and in saliency (``"{}"``:
        the bare word; ``"a photo of a {}"`` is open_clip's zero-shot style).
    """

    def __init__(self, model="ViT-B-16-plus-240", pretrained=None, *, preprocess=None, tokenizer=None, device=None,
                 dtype=None, batch_size: int = 32, text_template: str = "{}"):
        super().__init__(text_template=text_template, batch_size=batch_size)
        checks.placement(device, dtype)  # the cheap checks before any loading
        self.name, self.pretrained = None, None
        if isinstance(model, str):
            self.name, self.pretrained = model, _check_name(model, pretrained)
            loaded, _, preprocess_val = open_clip.create_model_and_transforms(
                model, pretrained=self.pretrained, device=device if device is not None else "cpu")
            preprocess = preprocess if preprocess is not None else preprocess_val
            tokenizer = tokenizer if tokenizer is not None else open_clip.get_tokenizer(model)
            model = loaded
        elif not _is_model(model):
            raise TypeError("model must be an open_clip model name (str) or an open_clip.CLIP-like nn.Module with "
                            f"encode_image, encode_text and visual; got {type(model).__name__}")
        elif pretrained is not None:
            raise ValueError("pretrained is only used with a model name; a model instance carries its own weights")
        elif tokenizer is None:
            raise ValueError("tokenizer is required when model is an instance: pass open_clip.get_tokenizer(name) "
                             "(or the model name as tokenizer=...)")
        if isinstance(tokenizer, str):
            tokenizer = open_clip.get_tokenizer(tokenizer)
        if not callable(tokenizer):
            raise TypeError(f"tokenizer must be an open_clip tokenizer (callable texts -> token ids), "
                            f"got {type(tokenizer).__name__}")
        if preprocess is None:
            preprocess = model_preprocess(model)
        elif not callable(preprocess):
            raise TypeError(f"preprocess must be open_clip's eval transform (a callable PIL image -> tensor), "
                            f"got {type(preprocess).__name__}")
        if device is not None or dtype is not None:
            model = model.to(**checks.placement(device, dtype))
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.preprocessing = parse_preprocess(preprocess) or parse_preprocess(model_preprocess(model))

    def __repr__(self) -> str:
        if self.name is not None:
            return f"OpenCLIPSimilarity({self.name!r}, pretrained={self.pretrained!r})"
        return f"OpenCLIPSimilarity({type(self.model).__name__})"

    @property
    def embedding_dim(self) -> int:
        dim = getattr(self.model.visual, "output_dim", None)
        return int(dim) if isinstance(dim, int) else int(self.embed_texts([""]).shape[1])

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype the vision tower takes (its first convolution's: open_clip's mixed precision keeps some
        parameters float32)."""
        for module in self.model.visual.modules():
            if isinstance(module, nn.Conv2d):
                return module.weight.dtype
        return next(self.model.visual.parameters()).dtype

    @torch.no_grad()
    def embed_images(self, images) -> torch.Tensor:
        """Unit-norm image embeddings ``(n, d)``, float32, CPU, through open_clip's own ``preprocess``."""
        images = as_rgb_images(images)
        if not images:
            return torch.zeros(0, self.embedding_dim)
        chunks = []
        for batch in batches(images, self.batch_size):
            pixels = torch.stack([self.preprocess(image) for image in batch])
            chunks.append(self.embed_image_input(pixels).cpu())
        return torch.cat(chunks)

    @torch.no_grad()
    def embed_texts(self, texts) -> torch.Tensor:
        """Unit-norm text embeddings ``(n, d)``, float32, CPU (``encode_text(tokenizer(texts))``)."""
        texts = checks.string_list(texts, "texts")
        if not texts:
            return torch.zeros(0, self.embedding_dim)
        chunks = []
        for batch in batches(texts, self.batch_size):
            tokens = torch.as_tensor(self.tokenizer(batch)).to(self.device)
            features = self.model.encode_text(tokens)
            chunks.append(nn.functional.normalize(features.float(), dim=-1).cpu())
        return torch.cat(chunks)

    # ----------------------------------------------------------------------- the differentiable image path
    def _geometry(self) -> Preprocessing:
        if self.preprocessing.unsupported:
            raise ValueError(f"OpenCLIPSimilarity has no differentiable copy of this preprocess "
                             f"({self.preprocessing.unsupported}); gradient saliency needs open_clip's 'shortest' "
                             f"or 'squash' eval transform")
        return self.preprocessing

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int, int, int]:
        """``(resized_h, resized_w, top, left, crop_h, crop_w)``: the transform's resize, then torchvision's
        centre crop (``top = round((resized_h - crop_h) / 2)``)."""
        geometry = self._geometry()
        rh, rw = geometry.resized_size(int(height), int(width))
        ch, cw = geometry.crop if geometry.crop is not None else (rh, rw)
        if ch > rh or cw > rw:
            raise ValueError(f"a {height}x{width} image resizes to {rh}x{rw}, smaller than the {ch}x{cw} crop: the "
                             "transform would pad, which has no differentiable copy here")
        return rh, rw, int(round((rh - ch) / 2.0)), int(round((rw - cw) / 2.0)), ch, cw

    def image_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels ``(B, 3, H, W)`` in [0, 1] -> the vision tower's input ``(B, 3, crop_h, crop_w)``, differentiably
        (the transform's resize, antialiased like PIL's; centre crop; normalise)."""
        if not isinstance(pixels, torch.Tensor) or pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels must be a float tensor (B, 3, H, W) in [0, 1], got "
                             f"{tuple(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__}")
        geometry = self._geometry()
        rh, rw, top, left, ch, cw = self.crop_box(*pixels.shape[-2:])
        pixels = resize_like_pil(pixels, (rh, rw), geometry.interpolation)
        pixels = pixels[..., top : top + ch, left : left + cw]
        mean = torch.tensor(geometry.mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(geometry.std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        return (pixels - mean) / std

    def embed_image_input(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings ``(B, d)`` float32 of the vision tower's input ``x`` (``encode_image``), with
        gradients."""
        features = self.model.encode_image(x.to(self.device, self.input_dtype))
        return nn.functional.normalize(features.float(), dim=-1)

    def _vision_transformer(self) -> nn.Module:
        visual = self.model.visual
        transformer = getattr(visual, "transformer", None)
        if not isinstance(getattr(transformer, "resblocks", None), nn.ModuleList) or not hasattr(visual, "grid_size"):
            raise TypeError("gradient saliency through OpenCLIPSimilarity needs an open_clip VisionTransformer "
                            "vision tower (model.visual.transformer.resblocks, model.visual.grid_size); this model's "
                            f"is {type(visual).__name__}")
        if not getattr(transformer, "batch_first", True):
            raise ValueError("the vision transformer runs sequence first (transformer.batch_first is False); "
                             "Grad-CAM expects batch-first block outputs (B, 1 + patches, D) as open_clip 3.x makes")
        return transformer

    @property
    def vision_blocks(self) -> list[nn.Module]:
        return list(self._vision_transformer().resblocks)

    @property
    def patch_grid(self) -> tuple[int, int]:
        self._vision_transformer()
        rows, columns = self.model.visual.grid_size
        return int(rows), int(columns)

    def vision_activations(self) -> list[tuple[nn.Module, str]]:
        slots = [(block.mlp, "gelu") for block in self._vision_transformer().resblocks
                 if isinstance(getattr(getattr(block, "mlp", None), "gelu", None), nn.Module)]
        if not slots:
            raise TypeError("found no MLP activation (resblock.mlp.gelu) in the vision transformer's blocks")
        return slots
