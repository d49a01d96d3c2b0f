"""What a run can do, checked before its first image: every refusal of a run's settings that needs no generating.

Two checks, both raising ``ValueError`` with one line naming the option (the CLI exits 2, nothing written):

- :func:`check_config` needs no model (``RunConfig`` calls it as it is made): a ``--model`` folder without a
  pipeline, exact SHAP over more than ``MAX_EXACT_WORDS`` words, seeds of 2**32 or more, ``lime_samples`` below
  ``d + 1``, ``max_evals`` below ``2 d + 1`` for shap's sampling methods, ``--segments daam-kmeans`` without
  attention maps, a missing SAM checkpoint, more than :data:`MAX_STEPS` steps;
- :func:`check_model` needs the loaded model, and runs before the run folder is written: image sizes that are not a
  multiple of the family's ``size_multiple()``, and prompts over a text encoder's token limit (77 CLIP tokens).
"""
from __future__ import annotations

from pathlib import Path

from captum_diffusion.words import split_words
from captum_diffusion.words.game import MAX_EXACT_WORDS

__all__ = ["MAX_STEPS", "check_config", "check_model"]

#: Most denoising steps a run takes: schedulers are trained on 1000 timesteps (``num_train_timesteps``), so more
#: steps only repeat timesteps, while time and memory grow with every step.
MAX_STEPS = 1000

#: Seeds are below this (numpy's ``RandomState``, which lime draws from, takes 32-bit seeds).
MAX_SEED = 2**32

#: shap's sampling methods, whose ``max_evals`` must be at least ``2 d + 1`` (one permutation forward and back).
SAMPLED_SHAP = ("shap-permutation", "shap-partition")


def _prompt_problem(config, spec) -> str | None:
    """Why the methods of ``config`` cannot run on the prompt ``spec``, or ``None``."""
    d = len(split_words(spec.prompt))
    methods = config.methods_for(d)
    if "shap-exact" in methods and d > MAX_EXACT_WORDS:
        return (f"words: shap-exact needs 2**{d} sub-prompts for the {d} words of prompt {spec.prompt[:60]!r}; it is "
                f"limited to {MAX_EXACT_WORDS} words: use shap-permutation")
    if "lime" in methods and config.lime_samples < d + 1:
        return (f"lime_samples={config.lime_samples} is too small for prompt {spec.prompt[:60]!r}: lime fits a "
                f"regression over its {d} words, which needs at least d + 1 = {d + 1} samples")
    if config.max_evals is not None and any(m in methods for m in SAMPLED_SHAP) and config.max_evals < 2 * d + 1:
        return (f"max_evals={config.max_evals} is too small for prompt {spec.prompt[:60]!r}: shap's sampling over "
                f"its {d} words needs at least 2*d + 1 = {2 * d + 1}")
    return None


def check_config(config) -> None:
    """Refuse settings of ``config`` (a ``RunConfig``) that cannot run, with no model loaded.

    Raises
    ------
    ValueError
        One line naming the option and the prompt: see the module docstring.
    """
    from captum_diffusion.runs.models import check_model_folder

    check_model_folder(config.model)  # a local folder without a pipeline: at once, before diffusers is imported
    if config.steps is not None and config.steps > MAX_STEPS:
        raise ValueError(f"steps must be at most {MAX_STEPS} (schedulers are trained on 1000 timesteps; more only "
                         f"repeat them), got {config.steps}")
    for spec in (None, *config.prompts):
        seeds = config.seeds if spec is None else spec.seeds or ()
        if any(seed >= MAX_SEED for seed in seeds):
            where = "seeds" if spec is None else f"seeds of prompt {spec.prompt[:60]!r}"
            raise ValueError(f"{where} must be below 2**32 = {MAX_SEED} (numpy's and lime's generators take 32-bit "
                             f"seeds), got {max(seeds)}")
    if config.segments == "daam-kmeans" and config.attention == "none":
        raise ValueError("segments daam-kmeans clusters the DAAM attention maps: it needs --attention daam (or the "
                         "default), not --attention none")
    if config.segments is not None and config.segments.startswith("sam:"):
        checkpoint = Path(config.segments[4:]).expanduser()
        if not checkpoint.is_file():
            raise ValueError(f"segments {config.segments!r}: the SAM checkpoint {str(checkpoint)!r} is not a file")
    for spec in config.prompts:
        problem = _prompt_problem(config, spec)
        if problem:
            raise ValueError(problem)


def check_model(config, model) -> None:
    """Refuse settings of ``config`` that the loaded ``model`` cannot take, before anything is generated.

    Parameters
    ----------
    config : RunConfig
        The run.
    model : LoadedModel
        ``runs.models.load_model``'s result (``.pipeline``).

    Raises
    ------
    ValueError
        A ``--size`` that is not a multiple of the family's ``size_multiple()`` (saying why, its
        ``size_explanation``), or a prompt over a text encoder's token limit (naming the prompt).
    """
    from captum_diffusion.generation import families

    pipeline = model.pipeline
    try:
        family = families.describe(pipeline)
        multiple = family.size_multiple()
    except (AttributeError, TypeError, ValueError):  # not a diffusers pipeline (the embedded GAN): nothing to check
        return
    for side in config.size or ():
        if multiple and side % multiple:
            raise ValueError(f"size must be a multiple of {multiple} for {type(pipeline).__name__} "
                             f"({family.size_explanation}), got {side}")
    family.check_token_limits([spec.prompt for spec in config.prompts], config.max_sequence_length)
