"""Seeded, batched, cached text-to-image generation: the one place where images are made.

``TextToImage`` wraps a diffusers text-to-image pipeline (Stable Diffusion 1.x/2.x, SDXL, any pipeline that takes
``prompt`` and ``latents``) or any callable ``list[str] -> list[PIL.Image]`` (a GAN, a remote service).
Every explainer that shares a ``TextToImage`` shares its cache, so one sub-prompt is generated once.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import inspect
import itertools
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from tqdm.auto import tqdm


def as_rgb_image(image, name: str = "image") -> PIL.Image.Image:
    """``image`` as an RGB ``PIL.Image.Image``.

    Accepts a ``PIL.Image.Image`` in any mode, or a ``numpy.ndarray`` of dtype ``uint8`` shaped ``(H, W)``
    (grayscale), ``(H, W, 1)``, ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA), values 0..255.
    Conversions: grayscale/palette/CMYK/... go through ``PIL.Image.convert("RGB")``; an image with an alpha
    channel (RGBA, LA, PA, palette with transparency) is composited onto a white background.
    Anything else (float arrays, torch tensors, paths) raises ``TypeError`` naming ``name``.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(
                f"{name} must be a PIL image or a uint8 numpy array (H, W, 3); got a numpy array of dtype "
                f"{image.dtype}: convert it, e.g. (np.clip(x, 0, 1) * 255).round().astype(np.uint8)"
            )
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
            raise TypeError(
                f"{name} must be a uint8 array shaped (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {image.shape}"
            )
        image = PIL.Image.fromarray(np.ascontiguousarray(image))
    if not isinstance(image, PIL.Image.Image):
        raise TypeError(
            f"{name} must be a PIL.Image.Image or a uint8 numpy array (H, W, 3); got {type(image).__name__}"
        )
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def as_rgb_images(images, name: str = "images") -> list[PIL.Image.Image]:
    """A list of RGB PIL images from one image or a sequence of images (see ``as_rgb_image``)."""
    if isinstance(images, (PIL.Image.Image, np.ndarray)) and not (
        isinstance(images, np.ndarray) and images.ndim == 4
    ):
        images = [images]
    try:
        items = list(images)
    except TypeError:
        raise TypeError(
            f"{name} must be an image or a sequence of PIL images / uint8 arrays; got {type(images).__name__}"
        ) from None
    return [as_rgb_image(item, f"{name}[{i}]") for i, item in enumerate(items)]


# --------------------------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------------------------


def _check_writable_dir(directory) -> Path:
    """Create ``directory`` if needed and prove it is writable, else raise ``ValueError`` naming ``cache_dir``."""
    try:
        path = Path(os.fspath(directory)).expanduser()
    except TypeError:
        raise TypeError(f"cache_dir must be a str or os.PathLike, got {type(directory).__name__}") from None
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ValueError(f"cache_dir {str(path)!r} is not a writable directory: {error}") from error
    return path


def _atomic_write(path: Path, write) -> None:
    """Write a file atomically: ``write(file_object)`` into a temporary file beside ``path``, then ``os.replace``."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class ImageCache:
    """Images by key: always in memory, optionally also on disk.

    On disk each entry is ``<directory>/<key[:2]>/<key>.png`` (lossless RGB PNG) plus ``<key>.json`` (metadata:
    the key, prompt, seed, settings and generator identity). Both files are written atomically (temporary file +
    ``os.replace``) and the JSON is written last, so an interrupted run leaves either a complete entry or none.
    An entry that cannot be read back (corrupt PNG, bad JSON, a key mismatch) is reported with a ``UserWarning``
    and treated as missing, so it is recomputed and overwritten.

    Args:
        directory: where to persist images (created if missing); ``None`` keeps them in memory only. A directory
            that cannot be created or written raises ``ValueError`` here, before any generation.
        max_in_memory: keep at most this many images in memory, dropping the least recently used (they are
            reloaded from ``directory`` when there is one, else generated again); ``None``: no limit.
    """

    def __init__(self, directory=None, max_in_memory: int | None = None):
        self.directory = None if directory is None else _check_writable_dir(directory)
        self.max_in_memory = _optional_positive_int(max_in_memory, "max_in_memory")
        self._memory: collections.OrderedDict[str, PIL.Image.Image] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._memory)

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.directory / key[:2]
        return folder / f"{key}.png", folder / f"{key}.json"

    def get(self, key: str) -> PIL.Image.Image | None:
        """The cached RGB image for ``key`` (memory first, then disk), or ``None``."""
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        if self.directory is None:
            return None
        png, meta = self._paths(key)
        if not meta.exists():
            return None
        try:
            if json.loads(meta.read_text())["key"] != key:
                raise ValueError("metadata belongs to another key")
            with PIL.Image.open(png) as opened:
                opened.load()
                image = opened.convert("RGB")
        except Exception as error:  # noqa: BLE001 - any unreadable entry is recomputed
            warnings.warn(f"image cache entry {png} is unreadable ({error}); it will be regenerated", stacklevel=3)
            return None
        self._remember(key, image)
        return image

    def put(self, key: str, image: PIL.Image.Image, metadata: dict | None = None) -> None:
        """Store ``image`` (RGB) under ``key`` in memory and, with a directory, on disk (PNG + JSON metadata)."""
        self._remember(key, image)
        if self.directory is None:
            return
        png, meta = self._paths(key)
        png.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(png, lambda file: image.save(file, format="PNG"))
        payload = json.dumps({"key": key, **(metadata or {})}, sort_keys=True, indent=1, default=str)
        _atomic_write(meta, lambda file: file.write(payload.encode()))

    def _remember(self, key: str, image: PIL.Image.Image) -> None:
        self._memory[key] = image
        self._memory.move_to_end(key)
        while self.max_in_memory is not None and len(self._memory) > self.max_in_memory:
            self._memory.popitem(last=False)

    def clear(self) -> None:
        """Forget the in-memory images (files on disk stay)."""
        self._memory.clear()


# --------------------------------------------------------------------------------------------------------------
# Generator identity (part of every cache key)
# --------------------------------------------------------------------------------------------------------------


def _update_with_module(digest, module: torch.nn.Module) -> None:
    """Hash a module's parameter/buffer names, shapes, dtypes and 64 evenly spaced values of each tensor."""
    for name, tensor in itertools.chain(module.named_parameters(), module.named_buffers()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        if tensor.device.type == "meta" or tensor.numel() == 0:
            continue
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 64)][:64]
        digest.update(sample.float().cpu().numpy().tobytes())


def _component_identity(digest, name: str, component) -> None:
    digest.update(f"{name}:{type(component).__module__}.{type(component).__qualname__}".encode())
    config = getattr(component, "config", None)
    if isinstance(config, dict):  # diffusers FrozenDict (models, schedulers)
        digest.update(json.dumps(dict(config), sort_keys=True, default=str).encode())
    elif hasattr(config, "to_json_string"):  # transformers PretrainedConfig
        digest.update(config.to_json_string(use_diff=False).encode())
    if isinstance(component, torch.nn.Module):
        _update_with_module(digest, component)
    elif hasattr(component, "get_vocab"):  # a tokenizer
        digest.update(json.dumps(component.get_vocab(), sort_keys=True).encode())
        digest.update(str(getattr(component, "model_max_length", None)).encode())


def _pipeline_identity(pipeline) -> str:
    digest = hashlib.sha256()
    digest.update(f"{type(pipeline).__qualname__}|{getattr(pipeline, 'name_or_path', '')}".encode())
    for name, component in sorted(pipeline.components.items()):
        _component_identity(digest, name, component)
    return f"{type(pipeline).__name__}:{digest.hexdigest()[:32]}"


def _callable_identity(function, cache_key: str | None, persistent: bool) -> str:
    owner = function if not isinstance(function, functools.partial) else function.func
    name = f"{getattr(owner, '__module__', '?')}.{getattr(owner, '__qualname__', type(owner).__qualname__)}"
    if cache_key is not None:
        return f"callable:{cache_key}"
    if persistent and "<" in name:
        raise ValueError(
            f"the generator {name!r} is a lambda or local function, so it has no stable identity for the on-disk "
            "cache: pass cache_key='<a name that changes whenever the generator changes>'"
        )
    digest = hashlib.sha256(name.encode())
    if isinstance(function, torch.nn.Module):
        _update_with_module(digest, function)
    return f"{name}:{digest.hexdigest()[:16]}"


# --------------------------------------------------------------------------------------------------------------
# TextToImage
# --------------------------------------------------------------------------------------------------------------


def _is_diffusers_pipeline(obj) -> bool:
    try:
        from diffusers import DiffusionPipeline
    except ImportError:  # pragma: no cover - diffusers is a dependency
        return False
    return isinstance(obj, DiffusionPipeline)


def _optional_positive_int(value, name: str):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return value


def _check_batch_size(batch_size, name: str = "batch_size") -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{name} must be a positive int, got {batch_size!r}")
    return batch_size


def _placement(device, dtype) -> dict:
    """The ``.to(...)`` keyword arguments among ``device`` / ``dtype`` that were given (not None)."""
    return {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}


class TextToImage:
    """Seeded, batched, cached text-to-image generation.

    Args:
        pipeline_or_callable: a diffusers pipeline that takes ``prompt`` and ``latents`` (``StableDiffusionPipeline``,
            ``StableDiffusionXLPipeline``, ...), or any callable ``fn(prompts: list[str]) -> list[image]`` (images as
            PIL or uint8 ``(H, W, 3)`` arrays). If the callable accepts a ``generator`` keyword it gets one seeded
            CPU ``torch.Generator`` per prompt (diffusers style); else if it accepts ``seed`` it gets ``seed=seed``;
            otherwise it must be deterministic by itself. The settings below that are not ``None`` are passed
            to it as keywords when its signature names them (``height=``, ``num_inference_steps=``, ...).
        seed: every prompt starts from the same noise, drawn from its own CPU ``torch.Generator().manual_seed(seed)``
            and passed as ``latents=`` (plus one seeded generator per prompt for schedulers that add noise), so
            nothing random depends on the other prompts in a batch or their order. With ``batch_size=1`` images are
            bit-identical however they are requested. Batched, float kernels (oneDNN convolutions, BLAS/cuBLAS
            GEMMs) may round differently for another batch shape or row, so a few pixels can differ by one grey
            level (measured on the tiny SD 1.x/2.x/XL test models: at most 1 level, on under 1% of the values;
            Shapley values moved by ~1e-8 there, by up to 6e-5 on ShapesWorld). The cache fixes each image once
            made, so all explainers sharing this object play exactly one game.
        num_inference_steps, guidance_scale: passed to the pipeline (``None``: the pipeline's default).
        height, width: image size in pixels (``None``: the pipeline's default, ``unet.config.sample_size *
            vae_scale_factor``); must be multiples of the pipeline's ``vae_scale_factor``.
        batch_size: prompts per pipeline call (with classifier-free guidance the UNet sees twice as many).
        device, dtype: move the pipeline (or a callable ``torch.nn.Module``) there, in place (``None``: leave it).
        cache_dir: also keep images on disk there (lossless PNG + JSON metadata); ``None``: memory only.
        max_in_memory: bound the in-memory cache to this many images (least recently used dropped; see
            ``ImageCache``); useful with ``cache_dir`` for thousands of large images. ``None``: no bound.
        progress: show a tqdm bar over the images being generated (the pipeline's own per-step bar is disabled).
        cache_key: a stable name for the generator in cache keys. For a callable it replaces the derived identity
            (module + qualified name, + a weight fingerprint for a ``torch.nn.Module``) and is required with
            ``cache_dir`` for a lambda or local function; for a pipeline it is added to the fingerprint of its
            components (class, config and sampled weights of each).

    ``__call__(prompts)`` returns one RGB ``PIL.Image.Image`` per prompt. Images are cached under a key made of the
    generator's identity (class, config and a weight fingerprint of every component, or the callable's name),
    the settings above, the seed and the prompt, never by the prompt alone. ``n_generated`` counts images
    generated, ``n_from_cache`` images returned without generating (including repeats within one call), so their
    sum is the number of images requested. The empty prompt ``""`` is allowed (an unconditional generation, the
    empty coalition); a prompt past the text encoder's token limit raises ``ValueError`` before anything is made.
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
    ):
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = int(seed)
        self.num_inference_steps = _optional_positive_int(num_inference_steps, "num_inference_steps")
        if guidance_scale is not None and not isinstance(guidance_scale, int | float):
            raise ValueError(f"guidance_scale must be a number or None, got {guidance_scale!r}")
        self.guidance_scale = None if guidance_scale is None else float(guidance_scale)
        self.batch_size = _check_batch_size(batch_size)
        self.progress = bool(progress)
        self.n_generated = 0
        self.n_from_cache = 0

        if _is_diffusers_pipeline(pipeline_or_callable):
            self.pipeline = pipeline_or_callable
            self._function = None
            if device is not None or dtype is not None:
                self.pipeline.to(**_placement(device, dtype))
            self.pipeline.set_progress_bar_config(disable=True)
            self.height, self.width = self._pipeline_size(height, width)
            identity = _pipeline_identity(self.pipeline)
            placement = {"device": self.pipeline.device.type, "dtype": str(self.pipeline.dtype)}
        elif callable(pipeline_or_callable):
            self.pipeline = None
            self._function = pipeline_or_callable
            if device is not None or dtype is not None:
                if not isinstance(pipeline_or_callable, torch.nn.Module):
                    raise ValueError("device and dtype apply to a diffusers pipeline or a torch.nn.Module generator only")
                pipeline_or_callable.to(**_placement(device, dtype))
            self.height = _optional_positive_int(height, "height")
            self.width = _optional_positive_int(width, "width")
            identity = _callable_identity(pipeline_or_callable, cache_key, persistent=cache_dir is not None)
            placement = {}
        else:
            raise TypeError(
                "pipeline_or_callable must be a diffusers text-to-image pipeline or a callable "
                f"list[str] -> list[PIL.Image]; got {type(pipeline_or_callable).__name__}"
            )
        self.identity = identity if cache_key is None or self.pipeline is None else f"{cache_key}|{identity}"
        self.settings = {
            "seed": self.seed, "num_inference_steps": self.num_inference_steps, "guidance_scale": self.guidance_scale,
            "height": self.height, "width": self.width, **placement,
            "versions": {"torch": torch.__version__, "diffusers": _diffusers_version()},
        }
        self.cache = ImageCache(cache_dir, max_in_memory=max_in_memory)

    # ---------------------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        source = type(self.pipeline).__name__ if self.pipeline is not None else self.identity
        return (f"TextToImage({source}, seed={self.seed}, steps={self.num_inference_steps}, "
                f"guidance={self.guidance_scale}, size={self.height}x{self.width}, batch_size={self.batch_size}, "
                f"generated={self.n_generated}, from_cache={self.n_from_cache})")

    def _pipeline_size(self, height, width) -> tuple[int | None, int | None]:
        scale = getattr(self.pipeline, "vae_scale_factor", None)
        unet = getattr(self.pipeline, "unet", None)
        sample = getattr(getattr(unet, "config", None), "sample_size", None)
        default = sample * scale if isinstance(sample, int) and isinstance(scale, int) else None
        sizes = []
        for value, name in ((height, "height"), (width, "width")):
            value = _optional_positive_int(value, name) or default
            if value is not None and isinstance(scale, int) and value % scale:
                raise ValueError(f"{name} must be a multiple of the pipeline's vae_scale_factor {scale}, got {value}")
            sizes.append(value)
        return sizes[0], sizes[1]

    def key(self, prompt: str) -> str:
        """The cache key of ``prompt`` under this generator, its settings and seed (a sha256 hex digest)."""
        payload = json.dumps({"generator": self.identity, "settings": self.settings, "prompt": prompt},
                             sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()

    @property
    def token_limit(self) -> int | None:
        """The text encoder's token limit (start/end tokens included), or ``None`` for a plain callable."""
        limits = [tokenizer.model_max_length for tokenizer in self._tokenizers()]
        return min(limits) if limits else None

    def _tokenizers(self) -> list:
        if self.pipeline is None:
            return []
        found = (getattr(self.pipeline, name, None) for name in ("tokenizer", "tokenizer_2"))
        return [t for t in found if t is not None and getattr(t, "model_max_length", 10**9) < 10**6]

    def _check_prompts(self, prompts) -> list[str]:
        if isinstance(prompts, str):
            raise TypeError(f"prompts must be a sequence of str, not a single str: wrap it, [{prompts!r}]")
        try:
            items = list(prompts)
        except TypeError:
            raise TypeError(f"prompts must be a sequence of str, got {type(prompts).__name__}") from None
        for i, prompt in enumerate(items):
            if not isinstance(prompt, str):  # numpy str_ is a str
                raise TypeError(f"prompts[{i}] must be a str, got {type(prompt).__name__}")
        return [str(prompt) for prompt in items]

    def _check_token_limit(self, prompts: list[str]) -> None:
        for tokenizer in self._tokenizers() if prompts else ():
            limit = tokenizer.model_max_length
            ids = tokenizer(prompts, truncation=False, verbose=False)["input_ids"]
            for prompt, tokens in zip(prompts, ids):
                if len(tokens) > limit:
                    raise ValueError(
                        f"prompt {_short(prompt)!r} is {len(tokens)} tokens long (start/end included) but the text encoder "
                        f"accepts at most {limit} (tokenizer.model_max_length); shorten it"
                    )

    # ---------------------------------------------------------------------------------------------------------
    def __call__(self, prompts: Sequence[str]) -> list[PIL.Image.Image]:
        """One RGB image per prompt (copies: mutating them does not touch the cache)."""
        prompts = self._check_prompts(prompts)
        key_of = {prompt: self.key(prompt) for prompt in prompts}
        keys = [key_of[prompt] for prompt in prompts]
        found = {key: self.cache.get(key) for key in dict.fromkeys(keys)}
        missing = [prompt for prompt, key in key_of.items() if found[key] is None]
        self._check_token_limit(missing)
        with tqdm(total=len(missing), desc="generating", unit="image", disable=not self.progress or not missing,
                  leave=False) as bar:
            for start in range(0, len(missing), self.batch_size):
                batch = missing[start : start + self.batch_size]
                for prompt, image in zip(batch, self._generate(batch)):
                    key = key_of[prompt]
                    self.cache.put(key, image, {"prompt": prompt, "generator": self.identity, **self.settings})
                    found[key] = image
                self.n_generated += len(batch)
                bar.update(len(batch))
        self.n_from_cache += len(prompts) - len(missing)
        return [found[key].copy() for key in keys]

    def _generators(self, n: int) -> list[torch.Generator]:
        return [torch.Generator("cpu").manual_seed(self.seed) for _ in range(n)]

    def _generate(self, prompts: list[str]) -> list[PIL.Image.Image]:
        """Images for one batch of at most ``batch_size`` prompts."""
        return self._call_function(prompts) if self.pipeline is None else self._call_pipeline(prompts)

    def _call_pipeline(self, prompts: list[str]) -> list[PIL.Image.Image]:
        kwargs = {"prompt": prompts, "generator": self._generators(len(prompts)), "output_type": "pil",
                  "num_images_per_prompt": 1}
        for name in ("num_inference_steps", "guidance_scale", "height", "width"):
            if getattr(self, name) is not None:
                kwargs[name] = getattr(self, name)
        latents = self._latents(len(prompts))
        if latents is not None:
            kwargs["latents"] = latents
        images = self.pipeline(**kwargs).images
        return [as_rgb_image(image, "pipeline output") for image in images]

    def _latents(self, n: int) -> torch.Tensor | None:
        """Initial noise ``(n, C, height / s, width / s)`` for a UNet pipeline (s = ``vae_scale_factor``): every
        row drawn from its own CPU generator seeded with ``seed``; ``None`` for pipelines without a UNet (they
        then draw the same per-prompt noise from the list of generators)."""
        unet = getattr(self.pipeline, "unet", None)
        scale = getattr(self.pipeline, "vae_scale_factor", None)
        if unet is None or scale is None or self.height is None or self.width is None:
            return None
        shape = (1, unet.config.in_channels, self.height // scale, self.width // scale)
        rows = [torch.randn(shape, generator=generator) for generator in self._generators(n)]
        return torch.cat(rows).to(dtype=unet.dtype)

    def _call_function(self, prompts: list[str]) -> list[PIL.Image.Image]:
        parameters = _keyword_parameters(self._function)
        kwargs = {name: getattr(self, name) for name in ("num_inference_steps", "guidance_scale", "height", "width")
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


def _keyword_parameters(function) -> set[str]:
    if isinstance(function, torch.nn.Module):  # Module.__call__ is (*args, **kwargs): look at forward
        function = function.forward
    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return set()


def _diffusers_version() -> str:
    try:
        import diffusers
    except ImportError:  # pragma: no cover
        return "none"
    return diffusers.__version__


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
