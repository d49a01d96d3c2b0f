"""Seeded, batched, cached text-to-image generation: the one place where images are made.

``TextToImage`` wraps a diffusers text-to-image pipeline (Stable Diffusion 1.x/2.x, SDXL, Stable Diffusion 3 / 3.5,
FLUX.1, PixArt-Σ, any pipeline that takes ``prompt`` and ``latents``) or any callable ``list[str] -> list[PIL.Image]``
(a GAN, a remote service). ``TextToImage(...)`` returns one of two back-ends, both ``TextToImage`` instances
behind the ``captum_diffusion.protocols.Generator`` protocol: :class:`PipelineTextToImage` (what differs between
pipeline families it asks the pipeline's family object, ``generation.families.describe``) and
:class:`CallableTextToImage`. Every explainer that shares a ``TextToImage`` shares its cache, so one sub-prompt
is generated once.
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
from captum_diffusion.generation.settings import GenerationSettings


def _is_diffusers_pipeline(obj) -> bool:
    try:
        from diffusers import DiffusionPipeline
    except ImportError:  # pragma: no cover - diffusers is a dependency
        return False
    return isinstance(obj, DiffusionPipeline)


def _setting(name: str, doc: str) -> property:
    """A read-only property giving the ``GenerationSettings`` field ``name`` of ``generation_settings``."""
    return property(lambda self: getattr(self.generation_settings, name), doc=doc)


class TextToImage:
    """Seeded, batched, cached text-to-image generation.

    ``TextToImage(pipeline_or_callable, ...)`` returns a :class:`PipelineTextToImage` for a diffusers pipeline and
    a :class:`CallableTextToImage` for any other callable; both are ``TextToImage`` instances.

    Parameters
    ----------
    pipeline_or_callable : diffusers.DiffusionPipeline or callable
        A diffusers pipeline that takes ``prompt`` and ``latents`` (``StableDiffusionPipeline``,
        ``StableDiffusionXLPipeline``, ``StableDiffusion3Pipeline``, ``FluxPipeline``, ``PixArtSigmaPipeline``, ...),
        or any callable ``fn(prompts: list[str]) -> list[image]`` (images as PIL or uint8 ``(H, W, 3)`` arrays).
        If the callable accepts a ``generator`` keyword it gets one seeded CPU ``torch.Generator`` per prompt
        (diffusers style); else if it accepts ``seed`` it gets ``seed=seed``; otherwise it must be deterministic by
        itself. The generation settings that are not ``None`` are passed to it as keywords when its signature
        names them (``height=``, ``num_inference_steps=``, ...).
    seed : int
        Every prompt starts from the same noise, drawn from its own CPU ``torch.Generator().manual_seed(seed)`` and
        passed as ``latents=``; schedulers that add noise while sampling (ancestral, SDE) draw it from one more CPU
        generator per prompt, seeded with ``noise_seed(seed)`` (another stream, so that noise is not the initial
        noise again). The noise is laid out as the pipeline's family needs it (``PipelineFamily.initial_latents``:
        4 channels for SD 1.x/2.x/XL and PixArt, 16 for SD3, FLUX's 16 channels packed 2x2 into 64-channel
        tokens). Nothing random depends on the other prompts in a batch or their order. With ``batch_size=1``
        images are bit-identical however they are requested. Batched, float kernels (oneDNN convolutions,
        BLAS/cuBLAS GEMMs) may round differently for another batch shape or row, so a few pixels can differ by one
        grey level (measured on the tiny SD 1.x/2.x/XL test models: at most 1 level, on under 1% of the values;
        Shapley values moved by ~1e-8 there, by up to 6e-5 on ShapesWorld). The cache fixes each image once
        made, so all explainers sharing this object play exactly one game.
    num_inference_steps, guidance_scale : optional
        Passed to the pipeline (``None``: the pipeline's default). FLUX.1 has no classifier-free guidance: its
        ``guidance_scale`` is the distilled guidance fed to the transformer (FLUX.1-dev; ignored by
        FLUX.1-schnell). SD3 and PixArt run classifier-free guidance above 1.
    height, width : int, optional
        Image size in pixels (``None``: the pipeline's default, e.g. ``unet.config.sample_size *
        vae_scale_factor``); multiples of the family's ``size_multiple()`` (the ``vae_scale_factor``, times the
        patch size for SD3 / PixArt, times 2 for FLUX).
    batch_size : int
        Prompts per pipeline call (with classifier-free guidance the UNet sees twice as many).
    device, dtype : optional
        Move the pipeline (or a callable ``torch.nn.Module``) there, in place (``None``: leave it).
    cache_dir : str or os.PathLike, optional
        Also keep images on disk there (lossless PNG + JSON metadata); ``None``: memory only.
    progress : bool
        Show a tqdm bar over the images being generated (the pipeline's own per-step bar is disabled).
    cache_key : str, optional
        A stable name for the generator in cache keys. For a callable it replaces the derived names, code and
        settings (the contents of the tensors it holds are still hashed in), and is required with ``cache_dir``
        when the callable has no identity that survives the process (a lambda or local function, an object of
        unknown kind anywhere in it: see ``captum_diffusion.generation.identity``); for a pipeline it is added to
        the derived identity.
    max_in_memory : int, optional
        Bound the in-memory cache to this many images (least recently used dropped; see ``ImageCache``); useful
        with ``cache_dir`` for thousands of large images. ``None``: no bound.
    max_sequence_length : int, optional
        The T5 token limit of SD3, FLUX and PixArt pipelines (``None``: the pipeline's own default, 256 / 512 /
        300); an error for pipelines without T5. A callable gets it when its signature names it.
    settings : GenerationSettings, optional
        The generation keywords as one object (``num_inference_steps``, ``guidance_scale``, ``height``,
        ``width``, ``max_sequence_length``), instead of or together with the keywords above; a setting given
        both ways raises ``TypeError``. A cheaper proxy of a generator is
        ``TextToImage(pipe, settings=generator.generation_settings.replace(num_inference_steps=4))``: its cache
        keys differ, as every setting is in the key.

    Notes
    -----
    ``__call__(prompts)`` returns one RGB ``PIL.Image.Image`` per prompt. Images are cached under a key made of the
    generator's identity *at that call* (``identity``: the pipeline's class, and each current component's class,
    config and a hash of every weight; or what a callable holds, walked recursively), the settings (``settings``:
    the arguments above, the device, dtype and library versions), the seed and the prompt, never by the prompt
    alone. The identity is re-derived at every call, cheaply (tensor hashes are cached by ``torch``'s version
    counter; ~5 ms per call on ShapesWorld), so a swapped scheduler or component, added layers (a loaded LoRA) or
    weights edited in place never read or overwrite another model's images. ``n_generated`` counts images
    generated, ``n_from_cache`` images returned without generating (including repeats within one call), so their
    sum is the number of images requested. The empty prompt ``""`` is allowed (an unconditional generation, the
    empty coalition). Before anything is made, every prompt to generate is tokenized by every text encoder the
    pipeline runs (``PipelineFamily.text_encoders``: CLIP at 77 tokens, T5 at ``max_sequence_length``, start/end
    tokens included); one that an encoder would truncate raises ``ValueError`` naming the prompt, the encoder and
    its limit, as pipelines otherwise cut it silently (with only a logged warning).
    """

    #: the diffusers pipeline (``None`` for a callable) and its family object (``None`` for a callable)
    pipeline = None
    family = None

    def __new__(cls, pipeline_or_callable=None, *args, **kwargs):
        if cls is TextToImage:
            cls = PipelineTextToImage if _is_diffusers_pipeline(pipeline_or_callable) else CallableTextToImage
        return super().__new__(cls)

    def __init__(self, pipeline_or_callable, *, seed: int = 0, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, height: int | None = None, width: int | None = None,
                 batch_size: int = 8, device=None, dtype=None, cache_dir=None, progress: bool = True,
                 cache_key: str | None = None, max_in_memory: int | None = None,
                 max_sequence_length: int | None = None, settings: GenerationSettings | None = None):
        self.seed = checks.seed(seed)
        requested = _requested(settings, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                               height=height, width=width, max_sequence_length=max_sequence_length)
        self.batch_size = checks.positive_int(batch_size, "batch_size")
        if not isinstance(progress, (bool, np.bool_)):
            raise TypeError(f"progress must be a bool, got {type(progress).__name__} {progress!r}")
        if cache_key is not None and not isinstance(cache_key, str):
            raise TypeError(f"cache_key must be a str or None, got {type(cache_key).__name__} {cache_key!r}")
        if cache_key is not None and not cache_key.strip():
            raise ValueError(f"cache_key must name the generator (a non-empty str) or be None, got {cache_key!r}")
        checks.placement(device, dtype)  # checked before the pipeline is moved
        self.progress, self.cache_key = bool(progress), cache_key
        self.n_generated = 0
        self.n_from_cache = 0
        #: the settings in effect (defaults filled in where the pipeline has them), a ``GenerationSettings``
        self.generation_settings: GenerationSettings = self._bind(pipeline_or_callable, requested, device, dtype)
        self.cache = ImageCache(cache_dir, max_in_memory=max_in_memory)
        _ = self.identity  # derive it now: a generator unfit for the on-disk cache fails here, not at the first call

    # ------------------------------------------------------------------------------- what the back-ends define
    def _bind(self, source, requested: GenerationSettings, device, dtype) -> GenerationSettings:
        """Take ``source`` (moved to ``device`` / ``dtype``), check ``requested`` against it, return the settings
        in effect."""
        raise NotImplementedError

    @property
    def identity(self) -> str:
        """Which generator makes the images, as it is *now* (see ``captum_diffusion.generation.identity``).

        Re-derived on every access, cheaply: tensor hashes are cached by version and only changed tensors are
        rehashed, so swapping a scheduler or a component, loading a LoRA or editing weights in place all give a
        new identity. Raises ``ValueError`` for an on-disk cache when the generator has no cross-process identity
        and no ``cache_key`` was given."""
        raise NotImplementedError

    def generate(self, prompts: list[str]) -> list[PIL.Image.Image]:
        """Images for one batch of at most ``batch_size`` prompts, made now (no cache, no counters).

        Parameters
        ----------
        prompts : list of str

        Returns
        -------
        list of PIL.Image.Image
            One RGB image per prompt.
        """
        raise NotImplementedError

    def placement(self) -> dict:
        """``{"device": type, "dtype": str}`` of the generator's first model, ``{}`` if it has none to tell."""
        return {}

    @property
    def token_limits(self) -> dict[str, int]:
        """``{text encoder component name: token limit}`` for every text encoder run on a prompt (e.g. SD3:
        ``{"text_encoder": 77, "text_encoder_2": 77, "text_encoder_3": 256}``); ``{}`` for a callable."""
        return {}

    def check_prompts(self, prompts: list[str]) -> None:
        """Raise ``ValueError`` for a prompt the generator would silently truncate (nothing to check here)."""

    def pipeline_kwargs(self, n: int) -> dict:
        """The keyword arguments of the pipeline call that makes ``n`` images here (a pipeline back-end only).

        Raises
        ------
        TypeError
            For a callable.
        """
        raise TypeError("pipeline_kwargs is for a TextToImage over a diffusers pipeline, not a callable")

    # ------------------------------------------------------------------------------------------------- shared
    num_inference_steps = _setting("num_inference_steps", "Denoising steps (``None``: the pipeline's default).")
    guidance_scale = _setting("guidance_scale", "Guidance scale (``None``: the pipeline's default).")
    height = _setting("height", "Image height in pixels (``None``: unknown, the generator's own).")
    width = _setting("width", "Image width in pixels (``None``: unknown, the generator's own).")
    max_sequence_length = _setting("max_sequence_length", "The T5 token limit (``None``: no T5).")

    @property
    def settings(self) -> dict:
        """The generation settings in every key: seed, steps, guidance, size, T5 ``max_sequence_length`` (when
        there is one), the pipeline's current device and dtype, and the torch / diffusers / transformers
        versions."""
        settings = {
            "seed": self.seed, "num_inference_steps": self.num_inference_steps, "guidance_scale": self.guidance_scale,
            "height": self.height, "width": self.width, **self.placement(),
            "versions": {"torch": torch.__version__, "diffusers": _version("diffusers"),
                         "transformers": _version("transformers")},
        }
        if self.max_sequence_length is not None:  # absent otherwise: UNet keys stay what they were
            settings["max_sequence_length"] = self.max_sequence_length
        return settings

    @property
    def token_limit(self) -> int | None:
        """The smallest token limit of the text encoders (start/end tokens included), or ``None`` for a plain
        callable. Encoders tokenize differently: ``token_limits`` has each one's."""
        limits = self.token_limits.values()
        return min(limits) if limits else None

    def __repr__(self) -> str:
        source = type(self.pipeline).__name__ if self.pipeline is not None else self.identity
        return (f"TextToImage({source}, seed={self.seed}, steps={self.num_inference_steps}, "
                f"guidance={self.guidance_scale}, size={self.height}x{self.width}, batch_size={self.batch_size}, "
                f"generated={self.n_generated}, from_cache={self.n_from_cache})")

    def cache_keys(self, prompts: Sequence[str]) -> list[str]:
        """The cache keys of ``prompts`` under this generator as it is now, from one derivation of its identity
        and settings (cheaper than :meth:`key` per prompt: the identity costs ~5-10 ms).

        Parameters
        ----------
        prompts : sequence of str

        Returns
        -------
        list of str
            One sha256 hex digest per prompt, equal to ``[self.key(p) for p in prompts]``.
        """
        prompts = checks.string_list(prompts, "prompts", allow_single=False)
        identity, settings = self.identity, self.settings
        return [_key(prompt, identity, settings) for prompt in prompts]

    def key(self, prompt: str) -> str:
        """The cache key of ``prompt`` under this generator as it is now, its settings and seed (a sha256 hex
        digest)."""
        return self.cache_keys([prompt])[0]

    def missing(self, prompts: Sequence[str]) -> list[int]:
        """Positions in ``prompts`` of the images the cache (memory, then disk) does not hold."""
        return [i for i, key in enumerate(self.cache_keys(prompts)) if self.cache.get(key) is None]

    def __call__(self, prompts: Sequence[str]) -> list[PIL.Image.Image]:
        """One RGB image per prompt (copies: mutating them does not touch the cache).

        With ``cache_dir`` each is the image stored there: when another process sharing the folder published a key
        first, its image, not the one generated here (see ``ImageCache``).

        Parameters
        ----------
        prompts : sequence of str

        Returns
        -------
        list of PIL.Image.Image
        """
        prompts = checks.string_list(prompts, "prompts", allow_single=False)
        identity, settings = self.identity, self.settings  # once per call: the generator as it is now
        key_of = {prompt: _key(prompt, identity, settings) for prompt in prompts}
        found = {key: self.cache.get(key) for key in key_of.values()}
        missing = [prompt for prompt, key in key_of.items() if found[key] is None]
        self.check_prompts(missing)
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
                if batch:
                    for prompt, image in self._made(batch, identity, settings, stored=lambda key: False):
                        found[key_of[prompt]] = image
                    bar.update(len(batch))
        self.n_from_cache += len(prompts) - len(missing) + published_meanwhile
        return [found[key_of[prompt]].copy() for prompt in prompts]

    def regenerate(self, prompts: Sequence[str]) -> list[int]:
        """Make every prompt's image again and store only those the cache lacks.

        The prompts (once each, in order) are generated in batches of ``batch_size``, exactly as a call finding
        none of them cached would batch them, so a batch that was partly stored (a run killed while storing it)
        is completed with images of the same batch composition, hence the same pixels, as the stored ones. Each
        image stored gets the same metadata as from a call. ``n_generated`` counts every image made.

        Parameters
        ----------
        prompts : sequence of str

        Returns
        -------
        list of int
            Positions in ``prompts`` whose image was stored (the others were cached already).
        """
        prompts = checks.string_list(prompts, "prompts", allow_single=False)
        identity, settings = self.identity, self.settings
        unique = list(dict.fromkeys(prompts))
        self.check_prompts(unique)  # before anything is made
        stored = set()
        for start in range(0, len(unique), self.batch_size):
            batch = unique[start:start + self.batch_size]
            for prompt, _ in self._made(batch, identity, settings, stored=lambda key: self.cache.get(key) is not None):
                stored.add(prompt)
        return [i for i, prompt in enumerate(prompts) if prompt in stored]

    def _made(self, batch: list[str], identity: str, settings: dict, stored):
        """Generate ``batch``, store each image whose key ``stored(key)`` says is not stored yet, with its
        metadata; yield ``(prompt, image to use)`` for those stored (``put`` returns another writer's image if it
        finished first)."""
        images = self.generate(batch)
        self.n_generated += len(batch)  # counted before storing: a disk error cannot lose the count
        for prompt, image in zip(batch, images):
            key = _key(prompt, identity, settings)
            if not stored(key):
                yield prompt, self.cache.put(key, image, {"prompt": prompt, "generator": identity, **settings})

    def _generators(self, n: int, seed: int | None = None) -> list[torch.Generator]:
        seed = self.seed if seed is None else seed
        return [torch.Generator("cpu").manual_seed(seed) for _ in range(n)]

    def clear_cache(self) -> None:
        """Forget the in-memory images (the on-disk cache, if any, stays)."""
        self.cache.clear()


# ``TextToImage(...)``'s signature is its ``__init__``'s (``__new__`` only picks the back-end): for help() and docs
TextToImage.__signature__ = inspect.signature(TextToImage.__init__).replace(
    parameters=list(inspect.signature(TextToImage.__init__).parameters.values())[1:])


class PipelineTextToImage(TextToImage):
    """The back-end of :class:`TextToImage` over a diffusers pipeline (see there for the parameters).

    Attributes
    ----------
    pipeline : diffusers.DiffusionPipeline
    family : PipelineFamily
        The pipeline's family object (``generation.families.describe``): noise layout, sizes, text encoders,
        call keywords.
    """

    def _bind(self, pipeline, requested: GenerationSettings, device, dtype) -> GenerationSettings:
        self.pipeline = pipeline
        if device is not None or dtype is not None:
            pipeline.to(**checks.placement(device, dtype))
        pipeline.set_progress_bar_config(disable=True)
        self.family = families.describe(pipeline)
        limit = requested.max_sequence_length
        if self.family.t5_tokenizer is None and limit is not None:
            raise ValueError(f"max_sequence_length is the T5 token limit of SD3 / FLUX / PixArt pipelines; "
                             f"{type(pipeline).__name__} has no T5 encoder: leave it None")
        if self.family.t5_tokenizer is not None:
            limit = limit or self.family.default_max_sequence_length()
        height, width = self._size(requested.height, requested.width)
        return requested.replace(height=height, width=width, max_sequence_length=limit)

    def _size(self, height, width) -> tuple[int | None, int | None]:
        """``height``, ``width`` or the family's default, checked against its size multiple."""
        if height is None or width is None:
            try:
                default = self.family.default_size()
            except ValueError:  # no default: the pipeline's own choice, unknown here
                default = (None, None)
            height, width = height or default[0], width or default[1]
        multiple = self.family.size_multiple()
        for value, name in ((height, "height"), (width, "width")):
            if value is not None and multiple is not None and value % multiple:
                raise ValueError(f"{name} must be a multiple of {multiple} for {type(self.pipeline).__name__} "
                                 f"({self.family.size_explanation}), got {value}")
        return height, width

    @property
    def identity(self) -> str:
        identity = pipeline_identity(self.pipeline)
        return identity if self.cache_key is None else f"{self.cache_key}|{identity}"

    def placement(self) -> dict:
        """The device type and dtype of the pipeline's first model (``pipeline.device`` / ``.dtype`` without their
        search for offloading hooks); ``{}`` for a pipeline without models."""
        for component in self.pipeline.components.values():
            parameter = next(component.parameters(), None) if isinstance(component, torch.nn.Module) else None
            if parameter is not None:
                return {"device": parameter.device.type, "dtype": str(parameter.dtype)}
        return {}

    @property
    def token_limits(self) -> dict[str, int]:
        return {encoder.name: encoder.limit for encoder in self.family.text_encoders(self.max_sequence_length)}

    def check_prompts(self, prompts: list[str]) -> None:
        """Raise ``ValueError`` naming a prompt that a text encoder would truncate (``check_token_limits``)."""
        self.family.check_token_limits(prompts, self.max_sequence_length)

    def pipeline_kwargs(self, n: int) -> dict:
        """The keyword arguments (all but ``prompt``) of the pipeline call that makes ``n`` images here.

        Another tool that calls the pipeline with them (e.g. ``DAAM.explain(prompt, **generator.pipeline_kwargs(1))``)
        traces exactly the generation this object makes.

        Parameters
        ----------
        n : int
            Images of the call.

        Returns
        -------
        dict
            The settings, the family's ``call_keywords``, per-prompt ``latents`` (when the family knows its noise
            layout) and the list of ``n`` seeded ``generator``.
        """
        n = checks.positive_int(n, "n")
        kwargs = {**self.generation_settings.keywords(), **self.family.call_keywords}
        latents = self.family.initial_latents(self._generators(n), self.height, self.width)
        if latents is not None:  # the scheduler's own noise then comes from another stream than the latents
            kwargs["latents"] = latents
            kwargs["generator"] = self._generators(n, noise_seed(self.seed))
        else:  # the pipeline draws the latents, then its noise, from one stream
            kwargs["generator"] = self._generators(n)
        return kwargs

    def generate(self, prompts: list[str]) -> list[PIL.Image.Image]:
        kwargs = {"prompt": prompts, "output_type": "pil", "num_images_per_prompt": 1,
                  **self.pipeline_kwargs(len(prompts))}
        images = self.pipeline(**kwargs).images
        return [as_rgb_image(image, "pipeline output") for image in images]


class CallableTextToImage(TextToImage):
    """The back-end of :class:`TextToImage` over a callable ``prompts -> images`` (see there for the parameters)."""

    def _bind(self, function, requested: GenerationSettings, device, dtype) -> GenerationSettings:
        if not callable(function):
            raise TypeError("pipeline_or_callable must be a diffusers text-to-image pipeline or a callable "
                            f"list[str] -> list[PIL.Image]; got {type(function).__name__}")
        self._function = function
        if device is not None or dtype is not None:
            if not isinstance(function, torch.nn.Module):
                raise ValueError("device and dtype apply to a diffusers pipeline or a torch.nn.Module generator only")
            function.to(**checks.placement(device, dtype))
        if requested.max_sequence_length is not None and "max_sequence_length" not in _keyword_parameters(function):
            raise ValueError("max_sequence_length is the T5 token limit of SD3 / FLUX / PixArt pipelines; a "
                             "prompts -> images callable takes none unless its signature names "
                             "max_sequence_length: leave it None")  # it would be ignored
        return requested

    @property
    def identity(self) -> str:
        return callable_identity(self._function, self.cache_key, persistent=self.cache.directory is not None)

    def generate(self, prompts: list[str]) -> list[PIL.Image.Image]:
        parameters = _keyword_parameters(self._function)
        kwargs = {name: value for name, value in self.generation_settings.keywords().items() if name in parameters}
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


def _requested(settings: GenerationSettings | None, **keywords) -> GenerationSettings:
    """The settings asked for: ``settings`` with the keyword arguments that are not ``None`` added (``TypeError``
    for a setting given both ways)."""
    if settings is None:
        return GenerationSettings(**keywords)
    if not isinstance(settings, GenerationSettings):
        raise TypeError(f"settings must be a GenerationSettings or None, got {type(settings).__name__}")
    both = sorted(name for name, value in keywords.items() if value is not None and getattr(settings, name) is not None)
    if both:
        raise TypeError(f"{', '.join(both)} given both as a keyword and in settings; give each once")
    return settings.replace(**{name: value for name, value in keywords.items() if value is not None})


def _keyword_parameters(function) -> set[str]:
    if isinstance(function, torch.nn.Module):  # Module.__call__ is (*args, **kwargs): look at forward
        function = function.forward
    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return set()


def noise_seed(seed: int) -> int:
    """The seed of the per-prompt generator passed to a pipeline as ``generator=`` alongside ``latents``.

    Parameters
    ----------
    seed : int
        The seed the latents are drawn from.

    Returns
    -------
    int
        The first 63 bits of ``sha256(f"scheduler-noise:{seed}")``: deterministic and per prompt like the
        latents, but another stream, so an ancestral / SDE scheduler's injected noise is not the initial noise
        again.
    """
    return int.from_bytes(hashlib.sha256(f"scheduler-noise:{seed}".encode()).digest()[:8], "big") >> 1


def _key(prompt: str, identity: str, settings: dict) -> str:
    payload = json.dumps({"generator": identity, "settings": settings, "prompt": prompt}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


@functools.lru_cache(maxsize=None)
def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - both are dependencies
        return "none"
