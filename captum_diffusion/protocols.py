"""The roles of the project, one written protocol each. To add a part, implement its protocol in one file of
the package named below; every explainer that takes the role then accepts it.

========================== =============================================== ============================================
role                       protocol                                        where implementations live
========================== =============================================== ============================================
generator                  :class:`Generator` (+ :class:`CachedGenerator`) ``captum_diffusion/generation/``
scorer                     :class:`Scorer` (+ :class:`GradientScorer`)     ``captum_diffusion/scoring/``
segmenter                  :class:`Segmenter`                              ``captum_diffusion/image/segmenters.py``
attention method           :class:`AttentionMethod`                        ``captum_diffusion/attention/``
black box over sub-prompts :data:`PromptFunction`                          ``captum_diffusion/scoring/prompt_score.py``
========================== =============================================== ============================================

This module imports nothing of the project (only typing), so anything may import it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover - for annotations only
    import numpy as np
    import PIL.Image
    import torch

#: The black box being explained: a list of prompts in, one finite score per prompt out, float ``(n,)``.
PromptFunction = Callable[[Sequence[str]], "np.ndarray"]


@runtime_checkable
class Generator(Protocol):
    """Text to images: ``generator(prompts: list[str], **settings) -> list[PIL.Image.Image]``, one per prompt.

    A diffusers text-to-image pipeline also fills the role (``TextToImage`` drives it with per-prompt seeded
    latents). A plain callable gets, when its signature names them, ``generator=`` (one seeded CPU
    ``torch.Generator`` per prompt; the diffusers convention), or ``seed=``, and ``num_inference_steps=``,
    ``guidance_scale=``, ``height=``, ``width=``. Images are PIL or uint8 ``(H, W, 3)`` arrays. Its identity for
    the cache is derived from its weights and arguments where possible; give ``TextToImage(cache_key=...)``
    otherwise.
    """

    def __call__(self, prompts: list[str], **settings: Any) -> list["PIL.Image.Image"]: ...


@runtime_checkable
class CachedGenerator(Generator, Protocol):
    """A :class:`Generator` whose image of a prompt is fixed once made: what ``PromptScore`` plays, as its game
    must be a function of the sub-prompt alone.

    ``cache_keys(prompts) -> list[str]``: one key per prompt (a str), naming the image that prompt gets under the
    generator's identity, settings and seed as they are now; equal keys mean identical images, and any change
    of model, settings or seed changes them. ``TextToImage`` (over a pipeline or a callable) is one.
    """

    def cache_keys(self, prompts: Sequence[str]) -> list[str]: ...


@runtime_checkable
class Scorer(Protocol):
    """An image-text embedding model (CLIP, open_clip): the payoff of the word game and of the image side.

    ``embed_images(images)`` and ``embed_texts(texts)``: unit-norm embeddings, float32 ``(n, d)`` on the CPU,
    computed without gradients; images are PIL or arrays (see ``captum_diffusion.convert``), texts are str
    (truncated at the text tower's token limit). Cosines of these rows are the scores (unitless, [-1, 1]).

    ``text_template``: the caption a single word is embedded in (``"a photo of a {}"`` for OpenAI CLIP); the
    image side formats each word with it. ``logit_scale``: the model's temperature (CLIP's
    ``logit_scale.exp()``, 100 for OpenAI CLIP) for zero-shot probabilities among words.

    ``image_similarity(images, reference_image) -> (n,)`` and ``text_similarity(images, texts) -> (n, k)``
    (float64 cosines) come with :class:`captum_diffusion.scoring.EmbeddingScorer`, the base class to subclass.
    """

    text_template: str
    logit_scale: float

    def embed_images(self, images) -> "torch.Tensor": ...

    def embed_texts(self, texts) -> "torch.Tensor": ...

    def image_similarity(self, images, reference_image) -> "np.ndarray": ...

    def text_similarity(self, images, texts) -> "np.ndarray": ...


@runtime_checkable
class GradientScorer(Scorer, Protocol):
    """A :class:`Scorer` with a differentiable image path, for gradient saliency (captum) through it.

    ``image_input(pixels)``: float ``(B, 3, H, W)`` in [0, 1] on ``device`` -> the vision tower's input
    ``(B, 3, h, w)`` by differentiable resize, centre crop and normalisation (the model's own preprocessing).
    ``crop_box(H, W) -> (resized_h, resized_w, top, left, crop_h, crop_w)``: where that input lies in the
    resized image, so a map on the input can be put back on the original pixels.
    ``embed_image_input(x)``: the unit-norm embeddings ``(B, d)`` of that input, with gradients.
    ``vision_blocks``: the vision transformer's blocks in order (Grad-CAM hooks one; its output holds a class
    token then the ``patch_grid`` tokens, batch first). ``patch_grid``: ``(rows, columns)`` of patches.
    ``vision_activations()``: ``(owner, attribute name)`` of each MLP activation module of the vision tower
    (guided backprop swaps them temporarily). ``device``: where the model runs.
    """

    vision_blocks: Sequence["torch.nn.Module"]
    patch_grid: tuple[int, int]

    @property
    def device(self) -> "torch.device": ...

    def image_input(self, pixels: "torch.Tensor") -> "torch.Tensor": ...

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int, int, int]: ...

    def embed_image_input(self, x: "torch.Tensor") -> "torch.Tensor": ...

    def vision_activations(self) -> list[tuple[Any, str]]: ...


@runtime_checkable
class Segmenter(Protocol):
    """``segmenter(image) -> np.ndarray``: an int64 label map ``(H, W)`` with labels ``0..n-1``, every pixel
    labelled. Works as LIME's ``segmentation_fn`` unchanged."""

    def __call__(self, image) -> "np.ndarray": ...


@runtime_checkable
class AttentionMethod(Protocol):
    """Per-word maps from a text-to-image model's attention during generation.

    ``attribute(prompts, *, words=None, generator=None, settings=None, **generation) -> maps`` returns a tensor
    ``(n_images, n_words, H, W)`` at the image size (captum's contract: a tensor); ``explain(...)``, with the same
    arguments, returns the rich result (images, labels, thresholding, plots). ``settings``: a
    ``generation.settings.GenerationSettings`` (steps, guidance, size, T5 limit), which may also come as plain
    keywords. The package's other explainers keep the same split (``WordAttribution``, ``CLIPSaliency``). Hooks
    must be restored even when generation raises.
    """

    def attribute(self, prompts, **kwargs) -> "torch.Tensor": ...

    def explain(self, prompts, **kwargs) -> Any: ...
