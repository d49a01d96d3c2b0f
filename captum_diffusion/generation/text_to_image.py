"""Seeded, batched, cached text-to-image generation: the one place where images are made.

``TextToImage`` wraps a diffusers text-to-image pipeline (Stable Diffusion 1.x/2.x, SDXL, Stable Diffusion 3 / 3.5,
FLUX.1, PixArt-Σ, any pipeline that takes ``prompt`` and ``latents``) or any callable ``list[str] -> list[PIL.Image]``
(a GAN, a remote service). What differs between pipeline families lives in ``generation.families``.
Every explainer that shares a ``TextToImage`` shares its cache, so one sub-prompt is generated once.
"""
from __future__ import annotations

import collections
import functools
import hashlib
import importlib.metadata
import inspect
import json
from collections.abc import Sequence

import numpy as np
import PIL.Image
import torch
from tqdm.auto import tqdm

from captum_diffusion import checks
from captum_diffusion.convert import as_rgb_image
from captum_diffusion.generation import families
from captum_diffusion.generation.cache import ImageCache
from captum_diffusion.generation.identity import callable_identity, pipeline_identity


def _is_diffusers_pipeline(obj) -> bool:
    try:
        from diffusers import DiffusionPipeline
    except ImportError:  # pragma: no cover - diffusers is a dependency
        return False
    return isinstance(obj, DiffusionPipeline)





class TextToImage:
    """Seeded, batched, cached text-to-image generation.

    Args:
        pipeline_or_callable: a diffusers pipeline that takes ``prompt`` and ``latents`` (``StableDiffusionPipeline``,
            ``StableDiffusionXLPipeline``, ``StableDiffusion3Pipeline``, ``FluxPipeline``, ``PixArtSigmaPipeline``,
            ...), or any callable ``fn(prompts: list[str]) -> list[image]`` (images as PIL or uint8 ``(H, W, 3)``
            arrays). If the callable accepts a ``generator`` keyword it gets one seeded
            CPU ``torch.Generator`` per prompt (diffusers style); else if it accepts ``seed`` it gets ``seed=seed``;
            otherwise it must be deterministic by itself. The settings below that are not ``None`` are passed
            to it as keywords when its signature names them (``height=``, ``num_inference_steps=``, ...).
        seed: every prompt starts from the same noise, drawn from its own CPU ``torch.Generator().manual_seed(seed)``
            and passed as ``latents=``; schedulers that add noise while sampling (ancestral, SDE) draw it from one
            more CPU generator per prompt, seeded with ``noise_seed(seed)`` (another stream, so that noise is not
            the initial noise again). The noise is laid out as the pipeline's family needs it
            (``families.initial_latents``: 4 channels for SD 1.x/2.x/XL and PixArt, 16 for SD3, FLUX's 16 channels
            packed 2x2 into 64-channel tokens). Nothing random depends on the other prompts in a batch or their
            order. With
            ``batch_size=1`` images are bit-identical however they are requested. Batched, float kernels (oneDNN
            convolutions, BLAS/cuBLAS GEMMs) may round differently for another batch shape or row, so a few pixels
            can differ by one grey level (measured on the tiny SD 1.x/2.x/XL test models: at most 1 level, on under
            1% of the values; Shapley values moved by ~1e-8 there, by up to 6e-5 on ShapesWorld). The cache fixes
            each image once made, so all explainers sharing this object play exactly one game.
        num_inference_steps, guidance_scale: passed to the pipeline (``None``: the pipeline's default). FLUX.1 has no
            classifier-free guidance: its ``guidance_scale`` is the distilled guidance fed to the transformer
            (FLUX.1-dev; ignored by FLUX.1-schnell). SD3 and PixArt run classifier-free guidance above 1.
        height, width: image size in pixels (``None``: the pipeline's default, e.g. ``unet.config.sample_size *
            vae_scale_factor``); must be multiples of ``families.size_multiple`` (the ``vae_scale_factor``, times the
            patch size for SD3 / PixArt, times 2 for FLUX).
        max_sequence_length: the T5 token limit of SD3, FLUX and PixArt pipelines (``None``: the pipeline's own
            default, 256 / 512 / 300); an error for pipelines without T5. A callable gets it when its signature
            names it.
        batch_size: prompts per pipeline call (with classifier-free guidance the UNet sees twice as many).
        device, dtype: move the pipeline (or a callable ``torch.nn.Module``) there, in place (``None``: leave it).
        cache_dir: also keep images on disk there (lossless PNG + JSON metadata); ``None``: memory only.
        max_in_memory: bound the in-memory cache to this many images (least recently used dropped; see
            ``ImageCache``); useful with ``cache_dir`` for thousands of large images. ``None``: no bound.
        progress: show a tqdm bar over the images being generated (the pipeline's own per-step bar is disabled).
        cache_key: a stable name for the generator in cache keys. For a callable it replaces the derived names,
            code and settings (the contents of the tensors it holds are still hashed in), and is required with
            ``cache_dir`` when the callable has no identity that survives the process (a lambda or local function,
            an object of unknown kind anywhere in it: see ``captum_diffusion.generation.identity``); for a pipeline
            it is added to the derived identity.

    ``__call__(prompts)`` returns one RGB ``PIL.Image.Image`` per prompt. Images are cached under a key made of the
    generator's identity *at that call* (``identity``: the pipeline's class, and each current component's class,
    config and a hash of every weight; or what a callable holds, walked recursively), the settings (``settings``:
    the arguments above, the device, dtype and library versions), the seed and the prompt, never by the prompt
    alone. The identity is re-derived at every call, cheaply (tensor hashes are cached by ``torch``'s version
    counter; ~5 ms per call on ShapesWorld), so a swapped scheduler or component, added layers (a loaded LoRA) or
    weights edited in place never read or overwrite another model's images. ``n_generated`` counts images
    generated, ``n_from_cache`` images returned without generating (including repeats within one call), so their
    sum is the number of images requested. The empty prompt ``""`` is allowed (an unconditional generation, the
    empty coalition). Before anything is made, every prompt to generate is tokenized by every text encoder the pipeline
    runs (``families.text_encoders``: CLIP at 77 tokens, T5 at ``max_sequence_length``, start/end tokens included); one
    that an encoder would truncate raises ``ValueError`` naming the prompt, the encoder and its limit, as pipelines
    otherwise cut it silently (with only a logged warning).
    """

    def __init__(
        self,
        pipeline_or_callable,
        *,
        seed: int = 0,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        height: int | None = None,
        width: int | None = None,
        batch_size: int = 8,
        device=None,
        dtype=None,
        cache_dir=None,
        progress: bool = True,
        cache_key: str | None = None,
        max_in_memory: int | None = None,
        max_sequence_length: int | None = None,
    ):
        self.seed = checks.seed(seed)
        self.num_inference_steps = checks.optional_positive_int(num_inference_steps, "num_inference_steps")
        self.guidance_scale = checks.guidance_scale(guidance_scale)
        self.batch_size = checks.positive_int(batch_size, "batch_size")
        self.max_sequence_length = checks.optional_positive_int(max_sequence_length, "max_sequence_length")
        if not isinstance(progress, (bool, np.bool_)):
            raise TypeError(f"progress must be a bool, got {type(progress).__name__} {progress!r}")
        if cache_key is not None and not isinstance(cache_key, str):
            raise TypeError(f"cache_key must be a str or None, got {type(cache_key).__name__} {cache_key!r}")
        if cache_key is not None and not cache_key.strip():
            raise ValueError(f"cache_key must name the generator (a non-empty str) or be None, got {cache_key!r}")
        checks.placement(device, dtype)  # checked before the pipeline is moved
        self.progress = bool(progress)
        self.n_generated = 0
        self.n_from_cache = 0

        self.cache_key = cache_key
        if _is_diffusers_pipeline(pipeline_or_callable):
            self.pipeline = pipeline_or_callable
            self._function = None
            if device is not None or dtype is not None:
                self.pipeline.to(**checks.placement(device, dtype))
            self.pipeline.set_progress_bar_config(disable=True)
            self.family = families.pipeline_family(self.pipeline)
            self.height, self.width = self._pipeline_size(height, width)
            if self.family in families.T5_FAMILIES:
                self.max_sequence_length = (self.max_sequence_length
                                            or families.default_max_sequence_length(self.pipeline))
            elif self.max_sequence_length is not None:
                raise ValueError(f"max_sequence_length is the T5 token limit of {families.T5_FAMILIES} pipelines; "
                                 f"{type(self.pipeline).__name__} has no T5 encoder: leave it None")
        elif callable(pipeline_or_callable):
            self.pipeline = None
            self.family = None
            self._function = pipeline_or_callable
            if device is not None or dtype is not None:
                if not isinstance(pipeline_or_callable, torch.nn.Module):
                    raise ValueError("device and dtype apply to a diffusers pipeline or a torch.nn.Module generator only")
                pipeline_or_callable.to(**checks.placement(device, dtype))
            self.height = checks.optional_positive_int(height, "height")
            self.width = checks.optional_positive_int(width, "width")
            if self.max_sequence_length is not None and "max_sequence_length" not in _keyword_parameters(
                    pipeline_or_callable):  # it would be ignored
                raise ValueError("max_sequence_length is the T5 token limit of SD3 / FLUX / PixArt pipelines; a "
                                 "prompts -> images callable takes none unless its signature names "
                                 "max_sequence_length: leave it None")
        else:
            raise TypeError(
                "pipeline_or_callable must be a diffusers text-to-image pipeline or a callable "
                f"list[str] -> list[PIL.Image]; got {type(pipeline_or_callable).__name__}"
            )
        self.cache = ImageCache(cache_dir, max_in_memory=max_in_memory)
        _ = self.identity  # derive it now: a generator unfit for the on-disk cache fails here, not at the first call

    @property
    def identity(self) -> str:
        """Which generator makes the images, as it is *now* (see ``captum_diffusion.generation.identity``).

        Re-derived on every access, cheaply: tensor hashes are cached by version and only changed tensors are
        rehashed, so swapping a scheduler or a component, loading a LoRA or editing weights in place all give a new
        identity. Raises ``ValueError`` for an on-disk cache when the generator has no cross-process identity and no
        ``cache_key`` was given."""
        if self.pipeline is not None:
            identity = pipeline_identity(self.pipeline)
            return identity if self.cache_key is None else f"{self.cache_key}|{identity}"
        return callable_identity(self._function, self.cache_key, persistent=self.cache.directory is not None)

    @property
    def settings(self) -> dict:
        """The generation settings in every key: seed, steps, guidance, size, T5 ``max_sequence_length`` (when there
        is one), the pipeline's current device and dtype, and the torch / diffusers / transformers versions."""
        settings = {
            "seed": self.seed, "num_inference_steps": self.num_inference_steps, "guidance_scale": self.guidance_scale,
            "height": self.height, "width": self.width, **_placement(self.pipeline),
            "versions": {"torch": torch.__version__, "diffusers": _version("diffusers"),
                         "transformers": _version("transformers")},
        }
        if self.max_sequence_length is not None:  # absent otherwise: UNet keys stay what they were
            settings["max_sequence_length"] = self.max_sequence_length
        return settings

    # ---------------------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        source = type(self.pipeline).__name__ if self.pipeline is not None else self.identity
        return (f"TextToImage({source}, seed={self.seed}, steps={self.num_inference_steps}, "
                f"guidance={self.guidance_scale}, size={self.height}x{self.width}, batch_size={self.batch_size}, "
                f"generated={self.n_generated}, from_cache={self.n_from_cache})")

    def _pipeline_size(self, height, width) -> tuple[int | None, int | None]:
        default = families.default_size(self.pipeline)
        multiple = families.size_multiple(self.pipeline) or getattr(self.pipeline, "vae_scale_factor", None)
        sizes = []
        for value, name in ((height, "height"), (width, "width")):
            value = checks.optional_positive_int(value, name) or default
            if value is not None and isinstance(multiple, int) and value % multiple:
                raise ValueError(f"{name} must be a multiple of {multiple} for {type(self.pipeline).__name__} (its "
                                 f"vae_scale_factor{_SIZE_FACTOR.get(self.family, '')}), got {value}")
            sizes.append(value)
        return sizes[0], sizes[1]

    def key(self, prompt: str) -> str:
        """The cache key of ``prompt`` under this generator as it is now, its settings and seed (a sha256 hex
        digest)."""
        return _key(prompt, self.identity, self.settings)

    @property
    def token_limit(self) -> int | None:
        """The smallest token limit of the text encoders (start/end tokens included), or ``None`` for a plain
        callable. Encoders tokenize differently: ``token_limits`` has each one's."""
        limits = self.token_limits.values()
        return min(limits) if limits else None

    @property
    def token_limits(self) -> dict[str, int]:
        """``{text encoder component name: token limit}`` for every text encoder the pipeline runs on a prompt
        (e.g. SD3: ``{"text_encoder": 77, "text_encoder_2": 77, "text_encoder_3": 256}``); ``{}`` for a callable."""
        if self.pipeline is None:
            return {}
        return {encoder.name: encoder.limit
                for encoder in families.text_encoders(self.pipeline, self.max_sequence_length)}

    def _check_token_limit(self, prompts: list[str]) -> None:
        if self.pipeline is not None:
            families.check_token_limits(self.pipeline, prompts, self.max_sequence_length)

    # ---------------------------------------------------------------------------------------------------------
    def __call__(self, prompts: Sequence[str]) -> list[PIL.Image.Image]:
        """One RGB image per prompt (copies: mutating them does not touch the cache). With ``cache_dir`` each is the
        image stored there: when another process sharing the folder published a key first, its image, not the
        one generated here (see ``ImageCache``)."""
        prompts = checks.string_list(prompts, "prompts", allow_single=False)
        identity, settings = self.identity, self.settings  # once per call: the generator as it is now
        key_of = {prompt: _key(prompt, identity, settings) for prompt in prompts}
        keys = [key_of[prompt] for prompt in prompts]
        found = {key: self.cache.get(key) for key in dict.fromkeys(keys)}
        missing = [prompt for prompt, key in key_of.items() if found[key] is None]
        self._check_token_limit(missing)
        queue, published_meanwhile = collections.deque(missing), 0
        with tqdm(total=len(missing), desc="generating", unit="image", disable=not self.progress or not missing,
                  leave=False) as bar:
            while queue:
                batch = []
                while queue and len(batch) < self.batch_size:
                    prompt = queue.popleft()
                    found[key_of[prompt]] = self.cache.get(key_of[prompt])  # another process sharing cache_dir
                    if found[key_of[prompt]] is None:                       # may have made it meanwhile
                        batch.append(prompt)
                    else:
                        published_meanwhile += 1
                        bar.update(1)
                if not batch:
                    break
                images = self._generate(batch)
                self.n_generated += len(batch)  # counted before storing: a disk error cannot lose the count
                for prompt, image in zip(batch, images):
                    key = key_of[prompt]  # put returns the stored image: another writer's if it finished first
                    found[key] = self.cache.put(key, image, {"prompt": prompt, "generator": identity, **settings})
                bar.update(len(batch))
        self.n_from_cache += len(prompts) - len(missing) + published_meanwhile
        return [found[key].copy() for key in keys]

    def _generators(self, n: int, seed: int | None = None) -> list[torch.Generator]:
        seed = self.seed if seed is None else seed
        return [torch.Generator("cpu").manual_seed(seed) for _ in range(n)]

    def _generate(self, prompts: list[str]) -> list[PIL.Image.Image]:
        """Images for one batch of at most ``batch_size`` prompts."""
        return self._call_function(prompts) if self.pipeline is None else self._call_pipeline(prompts)

    def pipeline_kwargs(self, n: int) -> dict:
        """The keyword arguments (all but ``prompt``) of the pipeline call that makes ``n`` images here: settings,
        per-prompt ``latents`` and ``generator`` list. Another tool that calls the pipeline with them (e.g.
        ``DAAM.explain(prompt, **generator.pipeline_kwargs(1))``) traces exactly the generation this object makes."""
        if self.pipeline is None:
            raise TypeError("pipeline_kwargs is for a TextToImage over a diffusers pipeline, not a callable")
        n = checks.positive_int(n, "n")
        kwargs = {name: getattr(self, name) for name in _CALL_SETTINGS if getattr(self, name) is not None}
        kwargs.update(families.CALL_KEYWORDS.get(self.family, {}))
        latents = self._latents(n)
        if latents is not None:  # the scheduler's own noise then comes from another stream than the latents
            kwargs["latents"] = latents
            kwargs["generator"] = self._generators(n, noise_seed(self.seed))
        else:  # the pipeline draws the latents, then its noise, from one stream
            kwargs["generator"] = self._generators(n)
        return kwargs

    def _call_pipeline(self, prompts: list[str]) -> list[PIL.Image.Image]:
        kwargs = {"prompt": prompts, "output_type": "pil", "num_images_per_prompt": 1,
                  **self.pipeline_kwargs(len(prompts))}
        images = self.pipeline(**kwargs).images
        return [as_rgb_image(image, "pipeline output") for image in images]

    def _latents(self, n: int) -> torch.Tensor | None:
        """Initial noise for ``n`` images in the pipeline family's layout (``families.initial_latents``): every row
        drawn from its own CPU generator seeded with ``seed``; ``None`` for pipelines of no known family or size
        (they then draw the same per-prompt noise from the list of generators)."""
        scale = getattr(self.pipeline, "vae_scale_factor", None)
        if self.family is None or not isinstance(scale, int) or self.height is None or self.width is None:
            return None
        return families.initial_latents(self.pipeline, self._generators(n), self.height, self.width)

    def _call_function(self, prompts: list[str]) -> list[PIL.Image.Image]:
        parameters = _keyword_parameters(self._function)
        kwargs = {name: getattr(self, name) for name in _CALL_SETTINGS
                  if name in parameters and getattr(self, name) is not None}
        if "generator" in parameters:
            kwargs["generator"] = self._generators(len(prompts))
        elif "seed" in parameters:
            kwargs["seed"] = self.seed
        output = self._function(prompts, **kwargs)
        if isinstance(output, PIL.Image.Image | np.ndarray) or not isinstance(output, Sequence):
            raise TypeError(
                f"the generator must return a list of PIL images (one per prompt); got {type(output).__name__}"
            )
        if len(output) != len(prompts):
            raise ValueError(f"the generator returned {len(output)} images for {len(prompts)} prompts")
        return [as_rgb_image(image, f"generator output [{i}]") for i, image in enumerate(output)]

    def clear_cache(self) -> None:
        """Forget the in-memory images (the on-disk cache, if any, stays)."""
        self.cache.clear()


_CALL_SETTINGS = ("num_inference_steps", "guidance_scale", "height", "width", "max_sequence_length")
_SIZE_FACTOR = {"sd3": " x the transformer's patch_size", "pixart": " x the transformer's patch_size",
                "flux": " x 2 for FLUX's 2x2 latent packing"}


def _keyword_parameters(function) -> set[str]:
    if isinstance(function, torch.nn.Module):  # Module.__call__ is (*args, **kwargs): look at forward
        function = function.forward
    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return set()


def noise_seed(seed: int) -> int:
    """The seed of the per-prompt generator passed to a pipeline as ``generator=`` alongside ``latents`` drawn
    from ``seed``: the first 63 bits of ``sha256(f"scheduler-noise:{seed}")``. Deterministic and per prompt like the
    latents, but another stream, so an ancestral / SDE scheduler's injected noise is not the initial noise again."""
    return int.from_bytes(hashlib.sha256(f"scheduler-noise:{seed}".encode()).digest()[:8], "big") >> 1


def _placement(pipeline) -> dict:
    """The device type and dtype of the pipeline's first model (``pipeline.device`` / ``.dtype``, without their
    search for offloading hooks); ``{}`` for a callable or a pipeline without models."""
    for component in () if pipeline is None else pipeline.components.values():
        parameter = next(component.parameters(), None) if isinstance(component, torch.nn.Module) else None
        if parameter is not None:
            return {"device": parameter.device.type, "dtype": str(parameter.dtype)}
    return {}


def _key(prompt: str, identity: str, settings: dict) -> str:
    payload = json.dumps({"generator": identity, "settings": settings, "prompt": prompt}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


@functools.lru_cache(maxsize=None)
def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - both are dependencies
        return "none"
