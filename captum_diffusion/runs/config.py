"""What a run is asked to do: ``RunConfig`` (every option of ``diffusion-explain explain``), prompt files, TOML.

Everything is validated here, before a model is loaded or a folder is written, so bad input costs nothing and
leaves nothing behind. Errors are ``ValueError`` / ``TypeError`` naming the option (the CLI turns them into exit
code 2). The CLI's options are derived from ``RunConfig``'s fields (their ``help`` and ``cli`` metadata), so the
two cannot drift.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from captum_diffusion import checks
from captum_diffusion.runs.methods import REGISTRY, WORD_METHODS
from captum_diffusion.runs.models import (EMBEDDED_MODELS, SHAPES_WORLD, SHAPES_WORLD_GAN,  # noqa: F401 - old home
                                          SHAPES_WORLD_TRANSFORMER)
from captum_diffusion.words import split_words
from captum_diffusion.words.game import MAX_EXACT_WORDS
from captum_diffusion.words.multifidelity import MAX_WORDS as MULTIFIDELITY_MAX_WORDS

__all__ = ["PromptSpec", "RunConfig", "read_prompt_file", "read_config_file", "parse_size", "CONFIG_KEYS",
           "WORD_METHODS", "MAX_EXACT_WORDS", "DEFAULT_EXACT_WORDS"]

SHAP_METHODS = tuple(m for m in WORD_METHODS if m.startswith("shap-"))
#: ``--words interactions``: show the strongest word pairs (exact k-SII from the sub-prompts exact SHAP scores).
INTERACTIONS = "interactions"
ATTENTION_METHODS = ("daam", "none")
DTYPES = ("float32", "float16", "bfloat16")
SEGMENTERS = ("slic", "daam-kmeans", "sam:CHECKPOINT")
#: Exact SHAP is the default up to this many words (2**d sub-prompts per seed), permutation sampling above: the rule
#: of ``shap_adapters.text.AUTO_EXACT_WORDS`` (no sampler reached 90% ranks aligned below half the images at 10-12
#: words; benchmarks/estimators.py), which is :data:`MAX_EXACT_WORDS` (``words.game``).
DEFAULT_EXACT_WORDS = MAX_EXACT_WORDS
#: ``--threads`` when neither it nor ``OMP_NUM_THREADS`` is given, on one process: torch's CPU threads. One,
#: measured by ``benchmarks/overhead.py threads`` (ShapesWorld, batches of 8, 1 and 2 threads interleaved on 2 shared
#: cores): see the README's "Threads".
DEFAULT_THREADS = 1
#: Fields that change how fast a run goes, not its results: left out of :meth:`RunConfig.settings`, so a run resumes
#: under other values (the manifest records them in ``launch``).
RUNTIME_FIELDS = ("threads",)
#: Keys a JSON-lines prompt entry or a TOML ``prompts`` table may hold.
PROMPT_KEYS = ("prompt", "seed", "seeds", "words")


def _option(default, help: str, **cli):
    """A ``RunConfig`` field with its CLI ``help`` and argparse keywords (``cli``) as metadata."""
    return field(default=default, metadata={"help": help, "cli": cli})


def parse_size(text: str) -> int | tuple[int, int]:
    """``--size``: ``"N"`` -> ``N``, ``"HxW"`` -> ``(H, W)`` in pixels (checked by ``RunConfig``).

    Raises
    ------
    ValueError
        When ``text`` is not one or two integers joined by ``x``.
    """
    parts = str(text).lower().split("x")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        raise ValueError(f"size must be N or HxW in pixels, got {text!r}") from None
    if len(numbers) not in (1, 2):
        raise ValueError(f"size must be N or HxW in pixels, got {text!r}")
    return numbers[0] if len(numbers) == 1 else tuple(numbers)


@dataclass(frozen=True)
class PromptSpec:
    """One prompt of a run.

    Parameters
    ----------
    prompt : str
        The prompt's text; its words (whitespace split) are the players of the word game.
    seeds : tuple of int, optional
        The prompt's own seeds (``None``: the run's).
    words : tuple of str, optional
        Words to map (attention maps and the segment table), some of the prompt's words; every word is a player of
        the word game either way.
    """

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

    @classmethod
    def from_mapping(cls, entry: "str | Mapping[str, Any] | PromptSpec") -> "PromptSpec":
        """A prompt from a JSON line or a TOML ``prompts`` entry: ``{"prompt": ..., "seed": 0 | [0, 1],
        "words": [...]}`` (``seed`` and ``seeds`` are the same key), a plain string, or a ``PromptSpec`` (kept).

        Raises
        ------
        ValueError
            For other keys, a missing ``prompt``, or an entry that is neither a string nor a mapping.
        """
        if isinstance(entry, PromptSpec):
            return entry
        if isinstance(entry, str):
            return cls(entry)
        if not isinstance(entry, Mapping):
            raise ValueError(f"prompts entries must be strings or tables, got {entry!r}")
        unknown = set(entry) - set(PROMPT_KEYS)
        if unknown or "prompt" not in entry:
            raise ValueError(f"prompt entries must have 'prompt' and optionally seed/seeds/words, got {sorted(entry)}")
        seeds = entry.get("seeds", entry.get("seed"))
        words = entry.get("words")
        return cls(entry["prompt"], seeds, None if words is None else tuple(checks.string_list(words, "words")))


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run; ``settings()`` is what a resumed run must match.

    Each field's ``help`` (field metadata) is its ``diffusion-explain explain --OPTION`` help text; a field added
    here is an option of the CLI and a key of ``--config`` files.

    Parameters
    ----------
    prompts : tuple of PromptSpec
        The prompts (strings are made ``PromptSpec``).

    Notes
    -----
    Every other field is documented by its ``help`` (``diffusion-explain explain --help`` prints them). ``size`` is
    pixels, square (one int) or ``(height, width)``; ``words=()`` means exact SHAP up to :data:`DEFAULT_EXACT_WORDS`
    words, else permutation sampling (with ``budget`` below 1: shap-multifidelity). ``"interactions"`` among
    ``words`` and ``faithfulness`` read every sub-prompt's payoff, so exact SHAP runs too (up to
    :data:`MAX_EXACT_WORDS` words).
    """

    prompts: tuple[PromptSpec, ...]
    model: str = _option(SHAPES_WORLD, "'shapes-world' (default: the embedded UNet), 'shapes-world-transformer' (the "
                         "embedded SD3-style transformer), 'shapes-world-gan' (the embedded RATLIP-style GAN), a "
                         "diffusers id or a local folder")
    clip: str | None = _option(None, "scorer: a transformers CLIP id/folder or open_clip:NAME[:PRETRAINED] (default: "
                               "the model's own scorer where it ships one, else openai/clip-vit-base-patch32)")
    device: str | None = _option(None, "torch device, e.g. cuda (default: cpu)")
    dtype: str | None = _option(None, "precision of the models (default: the model's)", choices=DTYPES)
    seeds: tuple[int, ...] = _option((0,), "seeds whose games are averaged (default: 0)")
    steps: int | None = _option(None, "denoising steps (default: the model's)")
    guidance: float | None = _option(None, "guidance scale (default: the model's)")
    size: tuple[int, int] | None = _option(None, "image size in pixels: N or HxW (default: the model's)",
                                           type=parse_size)
    max_sequence_length: int | None = _option(None, "T5 token limit of SD3 / FLUX / PixArt pipelines (default: the "
                                              "pipeline's own: 256, 512, 300)")
    words: tuple[str, ...] = _option((), f"word-attribution methods, several allowed: {', '.join(WORD_METHODS)} "
                                     f"(default: shap-exact up to {DEFAULT_EXACT_WORDS} words, shap-permutation "
                                     f"above; with --budget below 1, shap-multifidelity up to "
                                     f"{MULTIFIDELITY_MAX_WORDS} words); add '{INTERACTIONS}' for the strongest word "
                                     "pairs in the report (exact k-SII, from exact SHAP's sub-prompts)",
                                     metavar="METHOD")
    attention: str | None = _option(None, "attention maps (default: daam where the pipeline is a UNet, SD3, FLUX or "
                                    "PixArt one)", choices=ATTENTION_METHODS)
    segments: str | None = _option(None, "segment-by-word table: slic, daam-kmeans or sam:CHECKPOINT (default: off)",
                                   metavar="KIND")
    lime_samples: int = _option(200, "lime's perturbation samples (default 200)")
    max_evals: int | None = _option(None, "budget of the sampling methods (default: each library's)")
    batch_size: int = _option(8, "images per pipeline call (default 8)")
    threads: int | None = _option(None, "torch CPU threads of each process (default: OMP_NUM_THREADS when set, one "
                                  f"per process under a launcher, else {DEFAULT_THREADS}, measured by "
                                  "benchmarks/overhead.py); not a setting of the results: a run resumes with any")
    faithfulness: bool = _option(False, "show the deletion curve of the word ranking beside random orders in the "
                                 "report (from exact SHAP's sub-prompts, no extra image)")
    budget: float | None = _option(None, "shap-multifidelity: the share of exact SHAP's cost (2**d full images per "
                                   "seed) it may spend, in full-image equivalents, in (0, 1] (default 0.5); given "
                                   "below 1 without --words, shap-multifidelity is the default method. A prompt too "
                                   "short for the budget gets exact values (the manifest shows each prompt's cost)")
    until: str | None = _option(None, "shap-multifidelity, adaptive: 'top-K' adds full images where they separate "
                                "the top K words best and stops once they are separated at level 0.95, or when "
                                "--budget is spent (default: spend the budget)", metavar="top-K")
    proxy_steps: int | None = _option(None, "shap-multifidelity: denoising steps of cheap proxy images played on every "
                                      "sub-prompt (default: no proxy; few-step proxies did not pay on ShapesWorld, "
                                      "benchmarks/cost.md)")
    proxy_size: tuple[int, int] | None = _option(None, "shap-multifidelity: size of the proxy images in pixels, N or "
                                                 "HxW (default: the run's)", type=parse_size)
    proxy_cost: float | None = _option(None, "shap-multifidelity: a proxy image's time relative to a full one, used "
                                       "to spend the budget, in (0, 1] (default: steps ratio x pixels ratio, an "
                                       "estimate; the manifest reports the ratio measured in the run)")

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
            checks.one_of(self.dtype, DTYPES, "dtype")
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
            checks.one_of(method, (*REGISTRY, INTERACTIONS), "words (a word-attribution method)")
        set_("words", tuple(dict.fromkeys(words)))
        if self.attention is not None:
            checks.one_of(self.attention, ATTENTION_METHODS, "attention")
        if self.segments is not None and self.segments not in ("slic", "daam-kmeans"):
            if not (isinstance(self.segments, str) and self.segments.startswith("sam:") and len(self.segments) > 4):
                raise ValueError(f"segments must be one of {SEGMENTERS}, got {self.segments!r}")
        set_("lime_samples", checks.int_at_least(self.lime_samples, 2, "lime_samples"))
        set_("max_evals", checks.optional_positive_int(self.max_evals, "max_evals"))
        set_("batch_size", checks.positive_int(self.batch_size, "batch_size"))
        set_("threads", checks.optional_positive_int(self.threads, "threads"))
        if not isinstance(self.faithfulness, bool):
            raise TypeError(f"faithfulness must be a bool, got {type(self.faithfulness).__name__} "
                            f"{self.faithfulness!r}")
        self._check_multifidelity()
        from captum_diffusion.runs.limits import check_config

        check_config(self)  # what cannot run (too many words for exact SHAP, too few samples, ...): refused now

    def _check_multifidelity(self) -> None:
        """``--budget``, ``--until`` and the proxy's options: valid values, given only when shap-multifidelity runs
        (``ValueError`` naming the flag)."""
        from captum_diffusion.runs.multifidelity import NAME, parse_until, uses

        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen dataclass
        if self.budget is not None:
            set_("budget", checks.finite_number(self.budget, "budget (--budget)", low=0.0, high=1.0, low_open=True))
        parse_until(self.until)
        set_("proxy_steps", checks.optional_positive_int(self.proxy_steps, "proxy_steps (--proxy-steps)"))
        if self.proxy_size is not None:
            size = (self.proxy_size,) * 2 if not isinstance(self.proxy_size, (tuple, list)) else tuple(self.proxy_size)
            if len(size) != 2:
                raise ValueError(f"proxy_size (--proxy-size) must be N or HxW in pixels, got {self.proxy_size!r}")
            set_("proxy_size", tuple(checks.positive_int(s, "proxy_size (--proxy-size)") for s in size))
        if self.proxy_cost is not None:
            set_("proxy_cost", checks.finite_number(self.proxy_cost, "proxy_cost (--proxy-cost)", low=0.0, high=1.0,
                                                    low_open=True))
        chosen = [m for m in self.words if m != INTERACTIONS]
        flags = [flag for flag, value in (("--until", self.until), ("--proxy-steps", self.proxy_steps),
                                          ("--proxy-size", self.proxy_size), ("--proxy-cost", self.proxy_cost),
                                          ("--budget", self.budget if chosen else None)) if value is not None]
        if flags and not uses(self):
            raise ValueError(f"{', '.join(flags)} set {NAME}, which this run does not use: add {NAME} to --words "
                             "(or give --budget below 1 without --words)")
        if (self.proxy_steps is not None and self.steps is not None and self.proxy_size is None
                and self.proxy_steps >= self.steps):
            raise ValueError(f"proxy_steps (--proxy-steps) must be below steps (--steps {self.steps}) for a cheaper "
                             f"proxy, got {self.proxy_steps}")

    def methods_for(self, n_words: int) -> tuple[str, ...]:
        """The word-attribution methods run on a prompt of ``n_words`` words.

        Parameters
        ----------
        n_words : int
            The prompt's length in words.

        Returns
        -------
        tuple of str
            Names in ``runs.methods.REGISTRY``: ``words`` without ``interactions``, with ``shap-exact`` first when
            interactions or faithfulness need every sub-prompt (up to :data:`MAX_EXACT_WORDS` words); with no
            method given, ``shap-exact`` up to :data:`DEFAULT_EXACT_WORDS` words, else ``shap-permutation``.
        """
        methods = tuple(m for m in self.words if m != INTERACTIONS)
        # pairs and deletion curves read every sub-prompt's payoff: exact SHAP scores them all
        every_subprompt = (INTERACTIONS in self.words or self.faithfulness) and n_words <= MAX_EXACT_WORDS
        if not methods and self.budget is not None and self.budget < 1 and n_words <= MULTIFIDELITY_MAX_WORDS:
            methods = ("shap-multifidelity",)
        if not methods:
            return ("shap-exact",) if n_words <= DEFAULT_EXACT_WORDS or every_subprompt else ("shap-permutation",)
        if every_subprompt and "shap-exact" not in methods:
            methods = ("shap-exact", *methods)
        return methods

    def seeds_for(self, spec: PromptSpec) -> tuple[int, ...]:
        """The seeds of ``spec``: its own, else the run's."""
        return spec.seeds if spec.seeds is not None else self.seeds

    def generation_settings(self, defaults=None):
        """The run's generation keywords: its options over the model's ``defaults``.

        Parameters
        ----------
        defaults : GenerationSettings, optional
            What the model ships (``runs.models.LoadedModel.settings``); ``None``: the pipeline's own.

        Returns
        -------
        GenerationSettings
            ``steps``, ``guidance``, ``size`` and ``max_sequence_length`` where set, else ``defaults``'.
        """
        from captum_diffusion.generation.settings import GenerationSettings

        defaults = GenerationSettings() if defaults is None else defaults
        height, width = self.size if self.size is not None else (defaults.height, defaults.width)
        return GenerationSettings(
            num_inference_steps=self.steps if self.steps is not None else defaults.num_inference_steps,
            guidance_scale=self.guidance if self.guidance is not None else defaults.guidance_scale,
            height=height, width=width,
            max_sequence_length=(self.max_sequence_length if self.max_sequence_length is not None
                                 else defaults.max_sequence_length))

    def settings(self) -> dict:
        """Everything that determines the results, as JSON-able data (the manifest's ``config``).

        Returns
        -------
        dict
            The fields but :data:`RUNTIME_FIELDS`, tuples as lists, each prompt as ``{"prompt": ..., "seeds": [...], "words": [...]}`` without
            its ``None`` entries.
        """
        data = dataclasses.asdict(self)
        for name in RUNTIME_FIELDS:
            del data[name]
        data["prompts"] = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items() if v is not None}
                           for p in data["prompts"]]
        return json.loads(json.dumps(data))

    @classmethod
    def from_settings(cls, data: dict) -> "RunConfig":
        """The ``RunConfig`` of ``data``, the inverse of :meth:`settings`.

        Parameters
        ----------
        data : dict
            A manifest's ``config``; fields it lacks take their defaults.
        """
        data = dict(data)
        data["prompts"] = tuple(PromptSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in p.items()})
                                for p in data["prompts"])
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _seeds(value, name: str) -> tuple[int, ...]:
    items = [value] if not isinstance(value, (list, tuple)) else list(value)
    if not items:
        raise ValueError(f"{name} must hold at least one seed, got {value!r}")
    return tuple(dict.fromkeys(checks.seed(s, name) for s in items))


def saved_settings(manifest: dict) -> dict | None:
    """A saved run's settings with every setting added since it was saved at its default (so an older run that
    used no new option still resumes); ``None`` when they no longer make a ``RunConfig``."""
    try:
        return RunConfig.from_settings(manifest["config"]).settings()
    except (KeyError, TypeError, ValueError):
        return None


def read_prompt_file(path) -> list[PromptSpec]:
    """Prompts from a file (``--prompts FILE``).

    Parameters
    ----------
    path : str or Path
        One prompt per line, or JSON lines ``{"prompt": ..., "seed": 0 | [0, 1], "words": [...]}`` (read by
        :meth:`PromptSpec.from_mapping`); blank lines and lines starting with ``#`` are skipped. A UTF-8 byte order
        mark is dropped. A JSON array line (``["a red circle", "a blue square"]``) is refused: one prompt per line.

    Returns
    -------
    list of PromptSpec

    Raises
    ------
    ValueError
        Naming the file and the line number, for a bad line, an unreadable or empty file.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--prompts {str(path)!r} cannot be read: {error}") from None
    specs = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            _refuse_json_array(text)
            specs.append(PromptSpec.from_mapping(json.loads(text) if text.startswith("{") else text))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}:{number}: {error}") from None
    if not specs:
        raise ValueError(f"--prompts {str(path)!r} holds no prompt")
    return specs


def _refuse_json_array(text: str) -> None:
    """``ValueError`` for a prompt-file line that is a JSON array (one prompt per line, not a list of prompts)."""
    if text.startswith("["):
        try:
            entries = json.loads(text)
        except ValueError:
            return  # a plain prompt that starts with "["
        if isinstance(entries, list):
            raise ValueError(f"a JSON array of {len(entries)} entries is not one prompt; write one prompt (or one "
                             "JSON object) per line")


#: Types of the keys of a TOML file that are not ``RunConfig`` fields (those are checked by ``RunConfig``).
FILE_KEY_TYPES = {"out": (str, "a string (a folder)"), "prompts_file": (str, "a string (a file)"),
                  "prompts": (list, "a list of prompts (strings or tables)")}


#: Options a TOML file may set (the CLI's long option names, with "-" as "_"), and "prompts".
CONFIG_KEYS = {f.name for f in dataclasses.fields(RunConfig)} | {"prompts_file", "out"}


def read_config_file(path) -> dict[str, Any]:
    """The options in a TOML file (``--config run.toml``).

    Parameters
    ----------
    path : str or Path
        Keys are :data:`CONFIG_KEYS` (option names, ``-`` or ``_``), e.g. ``seeds = [0, 1]``, ``prompts = [...]``.

    Returns
    -------
    dict
        ``{option name with "_": value}``.

    Raises
    ------
    ValueError
        For an unreadable file, an unknown key (naming it and the valid ones), or ``out``, ``prompts_file`` or
        ``prompts`` of the wrong type (naming the key and the type expected; the run's options are checked by
        ``RunConfig``, naming the option).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"--config {str(path)!r} cannot be read: {error}") from None
    data = {key.replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        raise ValueError(f"--config {str(path)!r}: unknown key(s) {unknown}; valid keys are {sorted(CONFIG_KEYS)}")
    for key, (kind, expected) in FILE_KEY_TYPES.items():
        if key in data and not isinstance(data[key], kind):
            raise ValueError(f"--config {str(path)!r}: {key} must be {expected}, got {type(data[key]).__name__} "
                             f"{data[key]!r}")
    return data
