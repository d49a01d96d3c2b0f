"""What a run is asked to do: ``RunConfig`` (every option of ``diffusion-explain explain``), prompt files, TOML.

Everything is validated here, before a model is loaded or a folder is written, so bad input costs nothing and
leaves nothing behind. Errors are ``ValueError`` / ``TypeError`` naming the option (the CLI turns them into exit
code 2).
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captum_diffusion import checks
from captum_diffusion.words import split_words
from captum_diffusion.words.attribution import METHODS as CAPTUM_METHODS

#: The embedded model's name for ``--model`` (the default).
SHAPES_WORLD = "shapes-world"
#: The embedded transformer (SD3-style MMDiT on the same world) for ``--model``.
SHAPES_WORLD_TRANSFORMER = "shapes-world-transformer"
#: ``--model`` names of the embedded models and their ``load_shapes_world`` family.
EMBEDDED_MODELS = {SHAPES_WORLD: "unet", SHAPES_WORLD_TRANSFORMER: "transformer"}
#: The embedded RATLIP-style GAN (``shapes_world.load_shapes_world_gan``, a ``prompts -> images`` callable).
SHAPES_WORLD_GAN = "shapes-world-gan"
SHAP_METHODS = ("shap-exact", "shap-permutation", "shap-partition")
WORD_METHODS = (*SHAP_METHODS, "lime", *(f"captum-{m}" for m in CAPTUM_METHODS))
#: ``--words interactions``: show the strongest word pairs (exact k-SII from the sub-prompts exact SHAP scores).
INTERACTIONS = "interactions"
ATTENTION_METHODS = ("daam", "none")
SEGMENTERS = ("slic", "daam-kmeans", "sam:CHECKPOINT")
#: Exact SHAP (and with it interactions and deletion curves) is possible up to this many words (2**12 sub-prompts).
MAX_EXACT_WORDS = 12
#: Exact SHAP is the default up to this many words (2**d sub-prompts per seed), permutation sampling above: the rule
#: of ``shap_adapters.text.AUTO_EXACT_WORDS`` (no sampler reached 90% ranks aligned below half the images at 10-12
#: words; benchmarks/estimators.py).
DEFAULT_EXACT_WORDS = 12


@dataclass(frozen=True)
class PromptSpec:
    """One prompt of a run: its text, optionally its own ``seeds`` and the ``words`` to map (attention maps and the
    segment table; every word is a player of the word game either way)."""

    prompt: str
    seeds: tuple[int, ...] | None = None
    words: tuple[str, ...] | None = None

    def __post_init__(self):
        words = split_words(self.prompt)
        if self.seeds is not None:
            object.__setattr__(self, "seeds", _seeds(self.seeds, f"seeds of prompt {self.prompt!r}"))
        if self.words is not None:
            chosen = tuple(checks.string_list(self.words, f"words of prompt {self.prompt!r}", allow_single=False))
            missing = [w for w in chosen if w not in words]
            if not chosen or missing:
                raise ValueError(f"words of prompt {self.prompt!r} must be some of its words {words}, got {list(chosen)}")
            object.__setattr__(self, "words", chosen)


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run. ``settings()`` is what a resumed run must match.

    prompts: the prompts (``PromptSpec``). model: ``"shapes-world"`` (the embedded model), a diffusers model id or
    a local folder. clip: the scorer: ``None`` (the model's own where it ships one, else
    ``openai/clip-vit-base-patch32``), a transformers CLIP id/folder, or ``open_clip:NAME[:PRETRAINED]``.
    device, dtype: where and in which precision the models run (``"float16"``...). seeds: the seeds whose games are
    averaged. steps, guidance, size (pixels, square, or ``(height, width)``): generation settings (``None``: the
    model's defaults). max_sequence_length: the T5 token limit of SD3 / FLUX / PixArt pipelines (``None``: the
    pipeline's own). words: word-attribution methods (``WORD_METHODS``; ``()`` = exact SHAP up to 12 words, else
    permutation). attention: ``"daam"`` or ``"none"`` (``None``: DAAM on UNet, SD3, FLUX, PixArt).
    segments: ``None``, ``"slic"``, ``"daam-kmeans"`` or ``"sam:/path/to/checkpoint.pth"``. lime_samples,
    max_evals (sampling budget of shap-permutation / partition and captum's samplers), batch_size: as in the API.
    ``"interactions"`` among ``words`` and ``faithfulness``: the report shows the strongest word pairs and the
    deletion curve; both read every sub-prompt's payoff, so exact SHAP runs too (up to 12 words).
    """

    prompts: tuple[PromptSpec, ...]
    model: str = SHAPES_WORLD
    clip: str | None = None
    device: str | None = None
    dtype: str | None = None
    seeds: tuple[int, ...] = (0,)
    steps: int | None = None
    guidance: float | None = None
    size: tuple[int, int] | None = None
    max_sequence_length: int | None = None
    words: tuple[str, ...] = ()
    attention: str | None = None
    segments: str | None = None
    lime_samples: int = 200
    max_evals: int | None = None
    batch_size: int = 8
    faithfulness: bool = False

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen dataclass
        prompts = tuple(p if isinstance(p, PromptSpec) else PromptSpec(p) for p in self.prompts)
        if not prompts:
            raise ValueError("prompts: give at least one prompt (arguments or --prompts FILE)")
        set_("prompts", prompts)
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"model must be 'shapes-world', 'shapes-world-transformer', 'shapes-world-gan', a "
                             f"diffusers model id or a local folder, got {self.model!r}")
        if self.clip is not None and (not isinstance(self.clip, str) or not self.clip.strip()):
            raise ValueError(f"clip must be a transformers CLIP id/folder or open_clip:NAME[:PRETRAINED], got {self.clip!r}")
        if self.dtype is not None:
            checks.one_of(self.dtype, ("float32", "float16", "bfloat16"), "dtype")
        set_("seeds", _seeds(self.seeds, "seeds"))
        set_("steps", checks.optional_positive_int(self.steps, "steps"))
        set_("guidance", checks.optional_finite_number(self.guidance, "guidance", low=0.0))
        set_("max_sequence_length", checks.optional_positive_int(self.max_sequence_length, "max_sequence_length"))
        if self.size is not None:
            size = (self.size, self.size) if not isinstance(self.size, (tuple, list)) else tuple(self.size)
            if len(size) != 2:
                raise ValueError(f"size must be one int (square) or (height, width), got {self.size!r}")
            set_("size", tuple(checks.positive_int(s, "size") for s in size))
        words = tuple(checks.string_list(self.words, "words"))
        for method in words:
            checks.one_of(method, (*WORD_METHODS, INTERACTIONS), "words (a word-attribution method)")
        set_("words", tuple(dict.fromkeys(words)))
        if self.attention is not None:
            checks.one_of(self.attention, ATTENTION_METHODS, "attention")
        if self.segments is not None and self.segments not in ("slic", "daam-kmeans"):
            if not (isinstance(self.segments, str) and self.segments.startswith("sam:") and len(self.segments) > 4):
                raise ValueError(f"segments must be one of {SEGMENTERS}, got {self.segments!r}")
        set_("lime_samples", checks.int_at_least(self.lime_samples, 2, "lime_samples"))
        set_("max_evals", checks.optional_positive_int(self.max_evals, "max_evals"))
        set_("batch_size", checks.positive_int(self.batch_size, "batch_size"))
        if not isinstance(self.faithfulness, bool):
            raise TypeError(f"faithfulness must be a bool, got {type(self.faithfulness).__name__} "
                            f"{self.faithfulness!r}")

    def methods_for(self, n_words: int) -> tuple[str, ...]:
        """The word-attribution methods run on a prompt of ``n_words`` words."""
        methods = tuple(m for m in self.words if m != INTERACTIONS)
        # pairs and deletion curves read every sub-prompt's payoff: exact SHAP scores them all
        every_subprompt = (INTERACTIONS in self.words or self.faithfulness) and n_words <= MAX_EXACT_WORDS
        if not methods:
            return ("shap-exact",) if n_words <= DEFAULT_EXACT_WORDS or every_subprompt else ("shap-permutation",)
        if every_subprompt and "shap-exact" not in methods:
            methods = ("shap-exact", *methods)
        return methods

    def seeds_for(self, spec: PromptSpec) -> tuple[int, ...]:
        return spec.seeds if spec.seeds is not None else self.seeds

    def settings(self) -> dict:
        """Everything that determines the results, as JSON-able data (the manifest's ``config``)."""
        data = dataclasses.asdict(self)
        data["prompts"] = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items() if v is not None}
                           for p in data["prompts"]]
        return json.loads(json.dumps(data))

    @classmethod
    def from_settings(cls, data: dict) -> "RunConfig":
        """Inverse of ``settings()``."""
        data = dict(data)
        data["prompts"] = tuple(PromptSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in p.items()})
                                for p in data["prompts"])
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _seeds(value, name: str) -> tuple[int, ...]:
    items = [value] if not isinstance(value, (list, tuple)) else list(value)
    if not items:
        raise ValueError(f"{name} must hold at least one seed, got {value!r}")
    return tuple(dict.fromkeys(checks.seed(s, name) for s in items))


def read_prompt_file(path) -> list[PromptSpec]:
    """Prompts from a file: one prompt per line, or JSON lines ``{"prompt": ..., "seed": 0 | [0, 1], "words":
    [...]}``; blank lines and lines starting with ``#`` are skipped. Errors name the file and the line number."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--prompts {str(path)!r} cannot be read: {error}") from None
    specs = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            if text.startswith("{"):
                record = json.loads(text)
                unknown = set(record) - {"prompt", "seed", "seeds", "words"}
                if unknown or "prompt" not in record:
                    raise ValueError(f"keys must be prompt and optionally seed/seeds/words, got {sorted(record)}")
                seeds = record.get("seeds", record.get("seed"))
                words = record.get("words")
                specs.append(PromptSpec(record["prompt"], None if seeds is None else seeds,
                                        None if words is None else tuple(checks.string_list(words, "words"))))
            else:
                specs.append(PromptSpec(text))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}:{number}: {error}") from None
    if not specs:
        raise ValueError(f"--prompts {str(path)!r} holds no prompt")
    return specs


#: Options a TOML file may set (the CLI's long option names, with "-" as "_"), and "prompts".
CONFIG_KEYS = {f.name for f in dataclasses.fields(RunConfig)} | {"prompts_file", "out"}


def read_config_file(path) -> dict[str, Any]:
    """The options in a TOML file (``--config run.toml``); an unknown key is an error naming it."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"--config {str(path)!r} cannot be read: {error}") from None
    data = {key.replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        raise ValueError(f"--config {str(path)!r}: unknown key(s) {unknown}; valid keys are {sorted(CONFIG_KEYS)}")
    return data
