"""The generation plan of a run, and filling the image cache with it on every process.

**Plan** (:func:`plan_run`). Every process builds the same plan from the run's configuration, with no model and
no disk: for each prompt and seed, the sub-prompts its word-attribution methods will ask for, found by running the
explainers on a :class:`RecordingPayoff` (placeholder payoffs, no image). Sub-prompts are then deduplicated
across prompts per seed ("a red circle" is a sub-prompt of many prompts: generated once for the whole run) and
packed, in the order they are first asked for, into batches of ``batch_size`` of one seed (:class:`Batch`): one
pipeline call each. A batch's contents depend on the configuration only, never on the number of processes nor on
the cache, so every image is made in the same batch (the same float rounding) however the run is split or
resumed.

Which methods are planned is the method registry's to say (:mod:`captum_diffusion.runs.methods`: each
method's ``planned`` flag and the reason). Recording is only valid when the sub-prompts a method asks for do not
depend on the payoff values; ``tests/test_distributed.py`` checks each claim by recording with unrelated
placeholder payoffs. An unplanned method (``shap-partition``: shap's Owen explainer expands first the tree nodes
whose payoff differences are largest) gets its sub-prompts generated while the prompt is explained, by the process
that explains it (they are in the plan anyway when another planned method of the same prompt asks for them); the
manifest counts them (``images_generated_while_explaining``). Exact SHAP is recorded without shap: it asks for every
subset of the words (``methods.every_subset``).

Generation settings per batch. A method may ask for images at other generation settings than the run's (a proxy
game at fewer steps, say, through its runner's ``payoff_at``): those sub-prompts are recorded per settings
(:attr:`PromptPlan.items_at`), deduplicated and packed like the others, into batches that carry their settings
(:attr:`Batch.settings`), and cached under keys that include them.

Filling the cache with the plan is :mod:`captum_diffusion.runs.fill`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Sequence


from captum_diffusion.generation import families
from captum_diffusion.generation.settings import GenerationSettings
from captum_diffusion.runs.config import PromptSpec, RunConfig
from captum_diffusion.runs.methods import PLANNED_METHODS, REGISTRY, UNPLANNED_METHODS
from captum_diffusion.runs.payoffs import PayoffAt, RecordingPayoff, placeholder_value
from captum_diffusion.words import split_words

__all__ = ["Batch", "Plan", "PromptPlan", "RecordingPayoff", "Wave", "plan_prompts", "plan_run", "record",
           "record_items", "placeholder_value", "PLANNED_METHODS", "UNPLANNED_METHODS"]


def record(prompt: str, methods: Sequence[str], config: RunConfig, seed: int, *, salt: int = 0,
           run_settings: GenerationSettings | None = None) -> dict[GenerationSettings | None, tuple[str, ...]]:
    """The sub-prompts the planned ``methods`` ask for on ``prompt`` at ``seed``, by generation settings.

    ``run_settings``: the run's generation settings, the model's defaults filled in (what a method's
    ``payoff_at.run_settings`` reads, e.g. to choose a proxy's steps); default ``config``'s alone.

    Returns
    -------
    dict
        ``{None: sub-prompts at the run's settings, the full prompt included (it is scored at every seed);
        settings: sub-prompts asked at other settings through ``payoff_at``}``, each in the order a run generates
        them. Unplanned methods are skipped.
    """
    f = RecordingPayoff(prompt, salt=salt)
    others: dict[GenerationSettings, RecordingPayoff] = {}

    def at(settings: GenerationSettings) -> RecordingPayoff:
        return others.setdefault(settings, RecordingPayoff(prompt, salt=salt))

    payoff_at = PayoffAt(at, config.generation_settings() if run_settings is None else run_settings)
    for method in methods:
        if method in REGISTRY and REGISTRY[method].planned:
            REGISTRY[method].recorder()(f, config, seed, payoff_at)
    f([f.prompt])  # the run scores the full prompt at every seed
    return {None: tuple(f.items), **{settings: tuple(g.items) for settings, g in others.items()}}


def record_items(prompt: str, methods: Sequence[str], config: RunConfig, seed: int, *,
                 salt: int = 0) -> tuple[str, ...]:
    """The sub-prompts that ``methods`` (planned ones; others are skipped) ask for on ``prompt`` at ``seed`` at the
    run's generation settings, plus the full prompt, in the order a run generates them (see :func:`record`)."""
    return record(prompt, methods, config, seed, salt=salt)[None]


@dataclass(frozen=True)
class Batch:
    """One planned pipeline call.

    Parameters
    ----------
    index : int
        Its position in ``Plan.batches``.
    seed : int
        The seed of every image of the batch.
    prompts : tuple of str
        The sub-prompts, distinct.
    needed_by : tuple of int
        The numbers of the prompts that need any of them.
    settings : GenerationSettings, optional
        Generation settings of the batch, over the run's: fields that are not ``None`` replace the run's (e.g.
        fewer steps for a proxy game); ``None``: the run's settings.
    """

    index: int
    seed: int
    prompts: tuple[str, ...]
    needed_by: tuple[int, ...]
    settings: GenerationSettings | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    def generation_settings(self, run: GenerationSettings) -> GenerationSettings:
        """The settings this batch is generated at, given the ``run``'s (``LoadedModel.generation_settings``)."""
        return run if self.settings is None else run.replace(**self.settings.keywords())


@dataclass
class PromptPlan:
    """One prompt of the plan.

    Parameters
    ----------
    number, prompt, seeds, methods
        The prompt's number in the run, its text, its seeds and its word-attribution methods.
    items : dict
        ``items[seed]``: the sub-prompts its planned methods need at the run's settings (in the order asked).
    items_at : dict
        ``items_at[seed, settings]``: those they need at other generation settings (see :class:`Batch`).
    shared : dict
        ``shared[seed]``: how many of ``items[seed]`` and ``items_at[seed, ...]`` an earlier prompt needed first
        (deduplicated away).
    error : str or None
        Why nothing was planned for it (the prompt then fails, with that error, when it is explained).
    """

    number: int
    prompt: str
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    items: dict[int, tuple[str, ...]] = field(default_factory=dict)
    items_at: dict[tuple[int, GenerationSettings], tuple[str, ...]] = field(default_factory=dict)
    shared: dict[int, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def unplanned(self) -> tuple[str, ...]:
        """Its methods left to the explaining process."""
        return tuple(m for m in self.methods if not REGISTRY[m].planned)

    @property
    def requested(self) -> int:
        """Images it asks for, at every settings (distinct per seed and settings)."""
        return sum(len(items) for items in self.items.values()) + sum(len(i) for i in self.items_at.values())

    @property
    def deduplicated(self) -> int:
        """Images it needs that an earlier prompt needed first."""
        return sum(self.shared.values())

    def needs(self):
        """``(seed, settings or None, sub-prompts)`` for everything it asks for, the run's settings first per seed."""
        for seed, items in self.items.items():
            yield seed, None, items
            for (at_seed, settings), other in self.items_at.items():
                if at_seed == seed:
                    yield seed, settings, other


@dataclass(frozen=True)
class Wave:
    """Prompts explained together after their batches are in the cache (see :meth:`Plan.waves`)."""

    prompts: tuple[int, ...]
    batches: tuple[int, ...]


@dataclass
class Plan:
    """Every planned generation of a run.

    Parameters
    ----------
    config : RunConfig
        The run's configuration (generation settings, batch size).
    prompts : list of PromptPlan
        By number.
    batches : list of Batch
        Packed per seed and generation settings.
    """

    config: RunConfig
    prompts: list[PromptPlan]
    batches: list[Batch]

    @property
    def requested(self) -> int:
        """Sub-prompt images the prompts ask for, each prompt counted alone (distinct per prompt and seed)."""
        return sum(p.requested for p in self.prompts)

    @property
    def unique(self) -> int:
        """Distinct (sub-prompt, seed, settings) triples: the images the plan generates."""
        return sum(len(b) for b in self.batches)

    @property
    def deduplicated(self) -> int:
        """Images one prompt needs that an earlier prompt needed first: ``requested - unique``."""
        return self.requested - self.unique

    @property
    def subsets(self) -> int:
        """The sum of ``2**d`` over prompts and their seeds (every subset of every prompt's words, per seed)."""
        return sum(len(p.seeds) * 2 ** len(split_words(p.prompt)) for p in self.prompts)

    def summary(self) -> dict:
        """The plan in numbers, as JSON-able data (the manifest's ``plan``)."""
        methods = sorted({m for p in self.prompts for m in p.methods})
        return {"prompts": len(self.prompts), "subsets": self.subsets, "requested": self.requested,
                "unique": self.unique, "deduplicated": self.deduplicated, "batches": len(self.batches),
                "batch_size": self.config.batch_size,
                "planned_methods": [m for m in methods if REGISTRY[m].planned],
                "unplanned_methods": {m: REGISTRY[m].why for m in methods if not REGISTRY[m].planned},
                "unplanned_prompts": {str(p.number): p.error for p in self.prompts if p.error is not None}}

    def digest(self) -> str:
        """A hash of the plan: every process of a run must build the same."""
        def batch(b: Batch) -> list:
            return [b.seed, list(b.prompts)] + ([] if b.settings is None else [b.settings.keywords()])

        def needs(p: PromptPlan) -> dict:
            return {str(s): list(i) for s, i in p.items.items()} | {
                f"{s} {json.dumps(g.keywords(), sort_keys=True)}": list(i) for (s, g), i in p.items_at.items()}

        data = [[batch(b) for b in self.batches], [[p.prompt, needs(p), p.error] for p in self.prompts]]
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()

    def waves(self, pending: Sequence[int], size: int) -> list[Wave]:
        """The ``pending`` prompts (numbers) in waves of ``size``, each with the batches it must wait for: a batch
        goes to the wave of the first pending prompt that needs it; batches only finished prompts need are left
        out. Changing ``size`` changes when images are made, never which batch makes them."""
        pending = sorted(set(pending))
        size = max(1, int(size))
        groups = [pending[i:i + size] for i in range(0, len(pending), size)]
        wave_of = {number: w for w, group in enumerate(groups) for number in group}
        batches: list[list[int]] = [[] for _ in groups]
        for batch in self.batches:
            waves = [wave_of[n] for n in batch.needed_by if n in wave_of]
            if waves:
                batches[min(waves)].append(batch.index)
        return [Wave(tuple(g), tuple(b)) for g, b in zip(groups, batches)]


def plan_run(config: RunConfig, *, model=None) -> Plan:
    """The :class:`Plan` of ``config`` (deterministic: the same on every process).

    Parameters
    ----------
    config : RunConfig
        The run.
    model : LoadedModel, optional
        Prompts longer than its text encoder accepts get an ``error`` and no planned image (they fail when
        explained, as before, instead of stopping the generation of the others). Planning errors of one prompt
        (an explainer refusing it) are recorded the same way.
    """
    prompts = []
    run_settings = config.generation_settings() if model is None else model.generation_settings(config)
    for number, spec in enumerate(config.prompts):
        methods = tuple(config.methods_for(len(split_words(spec.prompt))))
        plan = PromptPlan(number, spec.prompt, tuple(config.seeds_for(spec)), methods)
        plan.error = None if model is None else _too_long(model.pipeline, spec.prompt, config.max_sequence_length)
        if plan.error is None:  # with no planned method, the full prompt's image is still planned
            _record_prompt(plan, config, run_settings)
        prompts.append(plan)
    return Plan(config, prompts, _pack(prompts, config.batch_size))


def _record_prompt(plan: PromptPlan, config: RunConfig, run_settings: GenerationSettings) -> None:
    """Fill ``plan.items`` / ``plan.items_at`` by recording its methods (once for all seeds unless one is seeded);
    an explainer refusing the prompt leaves them empty and sets ``plan.error``."""
    seeded = any(REGISTRY[m].seeded for m in plan.methods if REGISTRY[m].planned)
    recorded: dict[int | None, dict] = {}
    try:
        for seed in plan.seeds:
            key = seed if seeded else None
            if key not in recorded:
                recorded[key] = record(plan.prompt, plan.methods, config, seed, run_settings=run_settings)
            for settings, items in recorded[key].items():
                if settings is None:
                    plan.items[seed] = items
                else:
                    plan.items_at[seed, settings] = items
    except Exception as error:  # noqa: BLE001 - the prompt fails when explained, with this error
        plan.items, plan.items_at, plan.error = {}, {}, f"{type(error).__name__}: {error}"


def plan_prompts(prompts: Sequence[str | PromptSpec], **options) -> Plan:
    """:func:`plan_run` of ``RunConfig(prompts=prompts, **options)`` (``seeds``, ``words``, ``lime_samples``,
    ``max_evals``, ``batch_size``): the planning alone, no model."""
    return plan_run(RunConfig(prompts=tuple(prompts), **options))


def _pack(prompts: list[PromptPlan], batch_size: int) -> list[Batch]:
    """Deduplicate the prompts' needs per (seed, settings) in the order first asked, and cut each sequence into
    batches of ``batch_size``; sets each prompt's ``shared``."""
    sequences: dict[tuple[int, GenerationSettings | None], list[str]] = {}
    owners: dict[tuple[int, GenerationSettings | None, str], list[int]] = {}
    for plan in prompts:
        for seed, settings, items in plan.needs():
            sequence = sequences.setdefault((seed, settings), [])
            shared = 0
            for item in items:
                needers = owners.get((seed, settings, item))
                if needers is None:
                    owners[(seed, settings, item)] = [plan.number]
                    sequence.append(item)
                else:
                    needers.append(plan.number)
                    shared += 1
            plan.shared[seed] = plan.shared.get(seed, 0) + shared
    batches = []
    for (seed, settings), sequence in sequences.items():
        for start in range(0, len(sequence), batch_size):
            chunk = tuple(sequence[start:start + batch_size])
            needed_by = tuple(sorted({n for item in chunk for n in owners[(seed, settings, item)]}))
            batches.append(Batch(len(batches), seed, chunk, needed_by, settings))
    return batches


def _too_long(pipeline, prompt: str, max_sequence_length: int | None = None) -> str | None:
    """Why ``prompt`` cannot be generated by ``pipeline`` (over a text encoder's token limit: CLIP's, or T5's
    ``max_sequence_length``, the pipeline's default when ``None``), or ``None``. A sub-prompt keeps a subset of the
    words, so it is never longer than the prompt."""
    try:
        families.check_token_limits(pipeline, [prompt], max_sequence_length)
    except ValueError as error:
        return f"ValueError: {error}"
    return None
