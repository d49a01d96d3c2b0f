"""``CLIPSimilarity``: the :class:`~captum_diffusion.protocols.GradientScorer` for transformers CLIP models."""
from __future__ import annotations

import torch
from torch import nn

from captum_diffusion import checks
from captum_diffusion.convert import as_rgb_images
from captum_diffusion.scoring.base import TorchScorer, batches


def pooled_features(output) -> torch.Tensor:
    """The projected embedding from ``get_image_features`` / ``get_text_features`` (a tensor in transformers 4,
    a ``BaseModelOutputWithPooling`` whose ``pooler_output`` holds it in transformers 5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class CLIPSimilarity(TorchScorer):
    """Cosine similarity in CLIP's joint embedding space (transformers ``CLIPModel`` + ``CLIPProcessor``).

    Images may be PIL images (any mode) or arrays (see ``captum_diffusion.convert``). Embeddings come back
    unit-norm, float32, on the CPU; texts past CLIP's 77 tokens are truncated.

    Parameters
    ----------
    model : str or transformers.CLIPModel
        A model id or local directory for ``CLIPModel.from_pretrained`` (default
        ``"openai/clip-vit-base-patch32"``), or a ``transformers.CLIPModel`` instance.
    processor : transformers.CLIPProcessor, optional
        Required with a model instance; loaded from ``model`` when it is a str.
    device : torch.device or str, optional
        Where the model runs (default: where its weights already are; ``"cpu"`` for a fresh load).
    dtype : torch.dtype, optional
        Model dtype, e.g. ``torch.float16`` on a GPU (default: unchanged).
    batch_size : int
        Images / texts embedded per forward pass.
    text_template : str
        The caption a single word is embedded in on the image side and in saliency
        (``"a photo of a {}"`` suits OpenAI CLIP; ``"{}"`` embeds the bare word).
    """

    def __init__(self, model="openai/clip-vit-base-patch32", processor=None, *, device=None, dtype=None,
                 batch_size: int = 32, text_template: str = "{}"):
        from transformers import CLIPModel, CLIPProcessor

        super().__init__(text_template=text_template, batch_size=batch_size)
        checks.placement(device, dtype)  # the cheap checks before any loading
        if isinstance(model, str):
            loaded = CLIPModel.from_pretrained(model, **({"dtype": dtype} if dtype is not None else {}))
            processor = processor if processor is not None else CLIPProcessor.from_pretrained(model)
            model = loaded
        elif not isinstance(model, CLIPModel):
            raise TypeError(
                f"model must be a model id / local directory (str) or a transformers.CLIPModel, got {type(model).__name__}"
            )
        elif processor is None:
            raise ValueError("processor is required when model is a CLIPModel instance: pass its CLIPProcessor")
        if not callable(processor) or not hasattr(processor, "image_processor"):
            raise TypeError(f"processor must be a transformers CLIPProcessor, got {type(processor).__name__}")
        if device is not None or dtype is not None:
            model = model.to(**checks.placement(device, dtype))
        self.model = model.eval()
        self.processor = processor
        image_processor = processor.image_processor
        size, crop = image_processor.size, image_processor.crop_size
        self.shortest_edge = int(size["shortest_edge"] if "shortest_edge" in size else min(size["height"], size["width"]))
        self.crop = (int(crop["height"]), int(crop["width"]))
        self.mean = torch.tensor(image_processor.image_mean).view(1, 3, 1, 1)
        self.std = torch.tensor(image_processor.image_std).view(1, 3, 1, 1)

    def __repr__(self) -> str:
        return f"CLIPSimilarity({getattr(self.model, 'name_or_path', '') or type(self.model).__name__!r})"

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.projection_dim)

    @torch.no_grad()
    def embed_images(self, images) -> torch.Tensor:
        """Unit-norm CLIP image embeddings ``(n, projection_dim)``, float32, CPU (the processor's preprocessing)."""
        images = as_rgb_images(images)
        chunks = [torch.zeros(0, self.embedding_dim)]
        for batch in batches(images, self.batch_size):
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            chunks.append(self.embed_image_input(pixels.to(self.device)).float().cpu())
        return torch.cat(chunks)

    @torch.no_grad()
    def embed_texts(self, texts) -> torch.Tensor:
        """Unit-norm CLIP text embeddings ``(n, projection_dim)``, float32, CPU; truncated at 77 tokens."""
        texts = checks.string_list(texts, "texts")
        chunks = [torch.zeros(0, self.embedding_dim)]
        for batch in batches(texts, self.batch_size):
            tokens = self.processor(text=batch, padding=True, truncation=True, return_tensors="pt")
            tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
            features = pooled_features(self.model.get_text_features(**tokens))
            chunks.append(nn.functional.normalize(features.float(), dim=-1).cpu())
        return torch.cat(chunks)

    # ----------------------------------------------------------------------- the differentiable image path
    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int, int, int]:
        """``(resized_h, resized_w, top, left, crop_h, crop_w)``: shortest-edge resize, then a centre crop."""
        scale = self.shortest_edge / min(height, width)
        rh, rw = max(round(height * scale), self.crop[0]), max(round(width * scale), self.crop[1])
        return rh, rw, (rh - self.crop[0]) // 2, (rw - self.crop[1]) // 2, self.crop[0], self.crop[1]

    def image_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels ``(B, 3, H, W)`` in [0, 1] -> CLIP's ``pixel_values`` ``(B, 3, crop_h, crop_w)``, differentiably
        (bicubic antialiased resize as the ``CLIPImageProcessor`` does, centre crop, normalise)."""
        rh, rw, top, left, ch, cw = self.crop_box(*pixels.shape[-2:])
        if (rh, rw) != tuple(pixels.shape[-2:]):
            pixels = nn.functional.interpolate(pixels, size=(rh, rw), mode="bicubic", align_corners=False,
                                               antialias=True)
        pixels = pixels[..., top : top + ch, left : left + cw]
        return (pixels - self.mean.to(pixels)) / self.std.to(pixels)

    def embed_image_input(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings ``(B, projection_dim)`` float32 of ``pixel_values`` ``x``, with gradients."""
        features = pooled_features(self.model.get_image_features(pixel_values=x.to(self.device, self.dtype)))
        return nn.functional.normalize(features.float(), dim=-1)

    @property
    def vision_blocks(self) -> list[nn.Module]:
        return list(self.model.vision_model.encoder.layers)

    @property
    def patch_grid(self) -> tuple[int, int]:
        patch = self.model.vision_model.config.patch_size
        return self.crop[0] // patch, self.crop[1] // patch

    def vision_activations(self) -> list[tuple[nn.Module, str]]:
        return [(m, "activation_fn") for m in self.model.vision_model.modules()
                if isinstance(getattr(m, "activation_fn", None), nn.Module)]
