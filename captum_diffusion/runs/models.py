"""Load the model and scorer a run names: the embedded ShapesWorld model, or a diffusers checkpoint by id / folder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from captum_diffusion.generation.settings import GenerationSettings

#: The embedded model's name for ``--model`` (the default).
SHAPES_WORLD = "shapes-world"
#: The embedded transformer (SD3-style MMDiT on the same world) for ``--model``.
SHAPES_WORLD_TRANSFORMER = "shapes-world-transformer"
#: ``--model`` names of the embedded models and their ``load_shapes_world`` family.
EMBEDDED_MODELS = {SHAPES_WORLD: "unet", SHAPES_WORLD_TRANSFORMER: "transformer"}
#: The embedded RATLIP-style GAN (``shapes_world.load_shapes_world_gan``, a ``prompts -> images`` callable).
SHAPES_WORLD_GAN = "shapes-world-gan"

#: The scorer used when the model ships none and ``--clip`` is not given.
DEFAULT_CLIP = "openai/clip-vit-base-patch32"


@dataclass
class LoadedModel:
    """A run's generator and scorer.

    Parameters
    ----------
    pipeline : object
        A diffusers pipeline, or a ``prompts -> images`` callable (the GAN).
    scorer : protocols.Scorer
        The image-text scorer of the payoff.
    defaults : dict
        Generation settings the model ships, as the manifest records them: ``steps``, ``guidance``, ``size``
        (``(height, width)`` in pixels); ``{}`` when the pipeline's own apply.
    source : str
        What was loaded: the embedded model's folder, a local folder or a hub id.
    """

    pipeline: object
    scorer: object
    defaults: dict
    source: str

    @property
    def settings(self) -> GenerationSettings:
        """:attr:`defaults` as a ``GenerationSettings`` (``None`` where the pipeline's own default applies)."""
        height, width = self.defaults.get("size") or (None, None)
        return GenerationSettings(num_inference_steps=self.defaults.get("steps"),
                                  guidance_scale=self.defaults.get("guidance"), height=height, width=width)

    def generation_settings(self, config) -> GenerationSettings:
        """The settings a run with ``config`` (a ``RunConfig``) generates at on this model: the run's options over
        the model's defaults (``RunConfig.generation_settings``)."""
        return config.generation_settings(self.settings)


def _dtype(name):
    import torch

    return None if name is None else getattr(torch, name)


def load_model(model: str, clip: str | None = None, *, device=None, dtype=None) -> LoadedModel:
    """Load ``model`` (``"shapes-world"``, ``"shapes-world-transformer"``, ``"shapes-world-gan"``, a diffusers hub
    id or a local folder) and its scorer. The GAN's ``pipeline`` is a ``prompts -> images`` callable (one forward
    pass per prompt, no steps, guidance or size to set).

    ``clip``: ``None`` (the model's own scorer where it ships one, else ``DEFAULT_CLIP``) or a spec for
    ``captum_diffusion.scoring.load_scorer``. ``dtype``: ``"float16"`` etc. Raises ``ValueError`` with the cause
    for a missing folder or a model that cannot be loaded (offline and not in the local hub cache, say).
    """
    from captum_diffusion.scoring import load_scorer

    torch_dtype = _dtype(dtype)
    if model == SHAPES_WORLD_GAN:
        from captum_diffusion.shapes_world.gan import GAN_DIR, load_shapes_world_gan

        pipeline, own_scorer = load_shapes_world_gan(device=device, dtype=torch_dtype)
        defaults, source = {}, str(GAN_DIR)
    elif model in EMBEDDED_MODELS:
        from captum_diffusion.shapes_world import FAMILY_DIRS, FAMILY_GENERATION, load_shapes_world

        family = EMBEDDED_MODELS[model]
        pipeline, own_scorer = load_shapes_world(device=device, dtype=torch_dtype, family=family)
        settings = FAMILY_GENERATION[family]
        defaults = {"steps": settings.num_inference_steps, "guidance": settings.guidance_scale,
                    "size": (settings.height, settings.width)}
        source = str(FAMILY_DIRS[family])
    else:
        pipeline, own_scorer, defaults, source = _load_diffusers(model, device, torch_dtype), None, {}, model
    if clip is None:
        scorer = own_scorer if own_scorer is not None else _scorer(load_scorer, DEFAULT_CLIP, device, torch_dtype)
    else:
        scorer = _scorer(load_scorer, clip, device, torch_dtype)
    return LoadedModel(pipeline, scorer, defaults, source)


def _scorer(load_scorer, spec, device, dtype):
    try:
        return load_scorer(spec, device=device, dtype=dtype)
    except (OSError, ValueError, RuntimeError) as error:
        raise ValueError(f"--clip {spec!r} cannot be loaded: {_first_line(error)}") from None


def check_model_folder(model: str) -> None:
    """Refuse a ``--model`` that names a local folder (a path, or something that exists) holding no pipeline; a
    quick check with no import of diffusers (``RunConfig`` runs it through ``runs.limits``).

    Raises
    ------
    ValueError
        Naming ``--model`` and what it should be.
    """
    if model in EMBEDDED_MODELS or model == SHAPES_WORLD_GAN:
        return
    looks_local = model.startswith((".", "/", "~")) or Path(model).expanduser().exists()
    if looks_local and not (Path(model).expanduser() / "model_index.json").is_file():
        raise ValueError(f"--model {model!r}: no diffusers pipeline folder there (model_index.json missing); give "
                         "a folder written by save_pretrained, a hub id, 'shapes-world', 'shapes-world-transformer' or "
                         "'shapes-world-gan'")


def _load_diffusers(model: str, device, dtype):
    from diffusers import DiffusionPipeline

    check_model_folder(model)
    looks_local = model.startswith((".", "/", "~")) or Path(model).expanduser().exists()
    try:
        pipeline = DiffusionPipeline.from_pretrained(str(Path(model).expanduser()) if looks_local else model,
                                                     **({"dtype": dtype} if dtype is not None else {}))
    except (OSError, ValueError, RuntimeError) as error:
        raise ValueError(f"--model {model!r} cannot be loaded: {_first_line(error)}") from None
    if device is not None:
        pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
