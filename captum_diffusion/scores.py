"""Payoffs: how close a generated image is to a reference (an image or a text).

- ``CLIPSimilarity``: cosine of CLIP embeddings (image-image, the Gupta & Kanoria payoff, and image-text).
- ``LatentSimilarity``: cosine of the pipeline's own VAE latents (the paper's "next step", no CLIP needed).
- ``PromptScore``: the black box ``f(prompts) -> np.ndarray (n,)`` that shap, lime and captum explain: generate
  each sub-prompt with a ``TextToImage`` and score it against the full prompt's image (or text).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from captum_diffusion.generation import TextToImage, _check_batch_size, _placement, as_rgb_image, as_rgb_images
from captum_diffusion.words import split_words


def _batches(items: list, batch_size: int):
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Cosine matrix ``(len(a), len(b))`` of unit-norm rows, in float64, clipped to [-1, 1] (rounding)."""
    return np.clip((a.double() @ b.double().T).numpy(), -1.0, 1.0)


def _features(output) -> torch.Tensor:
    """The projected embedding from ``get_image_features`` / ``get_text_features`` (a tensor in transformers 4,
    a ``BaseModelOutputWithPooling`` whose ``pooler_output`` holds it in transformers 5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class CLIPSimilarity:
    """Cosine similarity in CLIP's joint embedding space (transformers ``CLIPModel`` + ``CLIPProcessor``).

    Args:
        model: a model id or local directory for ``CLIPModel.from_pretrained`` (default
            ``"openai/clip-vit-base-patch32"``), or a ``transformers.CLIPModel`` instance.
        processor: a ``CLIPProcessor`` (required with a model instance; loaded from ``model`` when it is a str).
        device: where the model runs (default: where its weights already are; ``"cpu"`` for a fresh load).
        dtype: model dtype, e.g. ``torch.float16`` on a GPU (default: unchanged).
        batch_size: images / texts embedded per forward pass.

    Images may be PIL images (any mode; alpha is composited on white) or uint8 arrays ``(H, W, 3)``.
    All methods run under ``torch.no_grad()`` on the model's device; embeddings come back as float32 on the CPU.
    """

    def __init__(
        self,
        model="openai/clip-vit-base-patch32",
        processor=None,
        *,
        device=None,
        dtype=None,
        batch_size: int = 32,
    ):
        from transformers import CLIPModel, CLIPProcessor

        self.batch_size = _check_batch_size(batch_size)
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
        if not callable(processor):
            raise TypeError(f"processor must be a transformers CLIPProcessor, got {type(processor).__name__}")
        if device is not None or dtype is not None:
            model = model.to(**_placement(device, dtype))
        self.model = model.eval()
        self.processor = processor

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @torch.no_grad()
    def embed_images(self, images) -> torch.Tensor:
        """Unit-norm CLIP image embeddings, shape ``(n, d)`` (``d`` = the model's ``projection_dim``), float32, CPU."""
        images = as_rgb_images(images)
        if not images:
            return torch.zeros(0, self.model.config.projection_dim)
        chunks = []
        for batch in _batches(images, self.batch_size):
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            features = _features(self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype)))
            chunks.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu())
        return torch.cat(chunks)

    @torch.no_grad()
    def embed_texts(self, texts) -> torch.Tensor:
        """Unit-norm CLIP text embeddings, shape ``(n, d)``, float32, CPU. Texts past CLIP's token limit are truncated."""
        texts = _as_texts(texts)
        if not texts:
            return torch.zeros(0, self.model.config.projection_dim)
        chunks = []
        for batch in _batches(texts, self.batch_size):
            tokens = self.processor(text=batch, padding=True, truncation=True, return_tensors="pt")
            tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
            features = _features(self.model.get_text_features(**tokens))
            chunks.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu())
        return torch.cat(chunks)

    def image_similarity(self, images, reference_image) -> np.ndarray:
        """Cosine between each image and ``reference_image``: float64 array ``(n,)`` in [-1, 1]."""
        reference = self.embed_images([as_rgb_image(reference_image, "reference_image")])
        return _cosine(self.embed_images(images), reference)[:, 0]

    def text_similarity(self, images, texts) -> np.ndarray:
        """Cosine between each image and each text: float64 array ``(n_images, n_texts)`` in [-1, 1]."""
        return _cosine(self.embed_images(images), self.embed_texts(texts))


def _as_texts(texts, name: str = "texts") -> list[str]:
    """A str or a sequence of str -> list of str; ``TypeError`` naming ``name`` (and the bad item) otherwise."""
    if isinstance(texts, str):
        return [texts]
    try:
        items = list(texts)
    except TypeError:
        raise TypeError(f"{name} must be a str or a sequence of str, got {type(texts).__name__}") from None
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(text).__name__}")
    return [str(text) for text in items]


class LatentSimilarity:
    """Cosine similarity of the pipeline's own VAE latents (no CLIP needed; the paper's suggested next payoff).

    Each image is resized (bicubic) to the reference image's size, scaled to [-1, 1] and encoded with
    ``vae.encode(x).latent_dist.mean`` (deterministic); latents ``(C, H/s, W/s)`` are flattened and compared
    by cosine. Note this payoff is spatial: the same object elsewhere in the image scores lower.

    Args:
        source: a ``TextToImage`` wrapping a diffusers pipeline, a diffusers pipeline with a ``vae``, or a
            diffusers ``AutoencoderKL`` (anything whose ``encode`` returns ``latent_dist`` or ``latents``).
        batch_size: images encoded per forward pass.
    """

    def __init__(self, source, *, batch_size: int = 8):
        vae = source.pipeline if isinstance(source, TextToImage) else source
        vae = getattr(vae, "vae", vae)
        if not isinstance(vae, torch.nn.Module) or not callable(getattr(vae, "encode", None)):
            raise TypeError(
                "source must be a TextToImage over a diffusers pipeline, a pipeline with a .vae, or a diffusers "
                f"AutoencoderKL; got {type(source).__name__}"
            )
        self.vae = vae
        self.batch_size = _check_batch_size(batch_size)

    @torch.no_grad()
    def embed_images(self, images, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Unit-norm flattened VAE latents, shape ``(n, C * H/s * W/s)``, float32, CPU.

        ``size`` is ``(width, height)`` in pixels to resize to (default: the first image's size)."""
        images = as_rgb_images(images)
        if not images:
            return torch.zeros(0, 0)
        size = size or images[0].size
        parameter = next(self.vae.parameters())
        chunks = []
        for batch in _batches(images, self.batch_size):
            pixels = np.stack([np.asarray(image.resize(size, resample=3)) for image in batch])  # 3 = BICUBIC
            x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            encoded = self.vae.encode(x.to(parameter.device, parameter.dtype))
            latents = encoded.latent_dist.mean if hasattr(encoded, "latent_dist") else encoded.latents
            chunks.append(torch.nn.functional.normalize(latents.float().flatten(1), dim=-1).cpu())
        return torch.cat(chunks)

    def image_similarity(self, images, reference_image) -> np.ndarray:
        """Cosine between each image's latents and ``reference_image``'s: float64 array ``(n,)``."""
        reference_image = as_rgb_image(reference_image, "reference_image")
        reference = self.embed_images([reference_image])
        return _cosine(self.embed_images(images, size=reference_image.size), reference)[:, 0]


class PromptScore:
    """The black box ``f(prompts) -> np.ndarray (n,)`` that shap, lime and captum explain.

    ``f(sub_prompts)[i]`` generates ``sub_prompts[i]`` with ``generator`` (same seed and settings as the full
    prompt, cached) and scores it with ``scorer`` against the reference:

    - ``reference="image"`` (default, the Gupta & Kanoria payoff): the image of the full ``prompt``;
      ``scorer.image_similarity(images, reference_image)`` (``CLIPSimilarity``, ``LatentSimilarity``) or a plain
      callable ``scorer(images, reference_image) -> (n,)``.
    - ``reference="text"``: the text of ``prompt``; ``scorer.text_similarity(images, [prompt])``.

    A score that is NaN raises ``ValueError`` naming the sub-prompt(s), so no explainer averages a NaN silently.
    Scores are remembered per sub-prompt (images are cached by the generator), so shap, lime and captum
    explaining the same ``PromptScore`` play exactly the same game. New sub-prompts are generated and scored
    ``chunk_size`` at a time, so at most that many images are held at once.
    """

    def __init__(self, generator, scorer, prompt: str, *, reference: str = "image", chunk_size: int = 256):
        if not isinstance(generator, TextToImage):
            raise TypeError(f"generator must be a captum_diffusion.TextToImage, got {type(generator).__name__}")
        split_words(prompt)  # raises on an empty / whitespace-only / non-str prompt
        if reference not in ("image", "text"):
            raise ValueError(f"reference must be 'image' or 'text', got {reference!r}")
        method = "image_similarity" if reference == "image" else "text_similarity"
        if not hasattr(scorer, method) and not (reference == "image" and callable(scorer)):
            raise TypeError(
                f"scorer must have a .{method}(images, ...) method (CLIPSimilarity"
                f"{', LatentSimilarity' if reference == 'image' else ''})"
                f"{' or be a callable (images, reference_image) -> (n,)' if reference == 'image' else ''}; "
                f"got {type(scorer).__name__}"
            )
        self.generator, self.scorer, self.prompt, self.reference = generator, scorer, prompt, reference
        self.chunk_size = _check_batch_size(chunk_size, "chunk_size")
        self._scores: dict[str, float] = {}

    @property
    def reference_image(self):
        """The full prompt's image at the generator's seed and settings (cached after the first call)."""
        return self.generator([self.prompt])[0]

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        """Scores of ``prompts`` (sub-prompts; ``""`` is the empty coalition): float64 array ``(n,)``.

        Each sub-prompt's score is computed once and remembered, so ``f`` is a function of the sub-prompt alone
        (a batched scorer may otherwise round the last bits differently with the batch it is in)."""
        prompts = prompts if isinstance(prompts, str) else list(prompts)
        new = [p for p in dict.fromkeys(self.generator._check_prompts(prompts)) if p not in self._scores]
        for chunk in _batches(new, self.chunk_size):  # bounded memory: images of one chunk at a time
            values = self._score(chunk)
            bad = [p for p, v in zip(chunk, values) if np.isnan(v)]
            if bad:
                raise ValueError(f"scorer returned NaN for sub-prompt(s) {bad[:5]}{' ...' if len(bad) > 5 else ''}")
            self._scores.update(zip(chunk, values.tolist()))
        return np.array([self._scores[p] for p in prompts], dtype=np.float64)

    def _score(self, prompts: list[str]) -> np.ndarray:
        images = self.generator(prompts)
        if self.reference == "image":
            score = getattr(self.scorer, "image_similarity", self.scorer)
            values = np.asarray(score(images, self.reference_image), dtype=np.float64)
        else:
            values = np.asarray(self.scorer.text_similarity(images, [self.prompt]), dtype=np.float64)
            values = values[:, 0] if values.ndim == 2 else values
        if values.shape != (len(images),):
            raise ValueError(f"scorer returned shape {values.shape} for {len(images)} images; expected ({len(images)},)")
        return values

    def __repr__(self) -> str:
        return f"PromptScore({self.prompt!r}, reference={self.reference!r}, scorer={type(self.scorer).__name__})"
