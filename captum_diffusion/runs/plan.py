"""The generation plan of a run, and filling the image cache with it on every process.

**Plan** (:func:`plan_run`). Every process builds the same plan from the run's configuration, with no model and
no disk: for each prompt and seed, the sub-prompts its word-attribution methods will ask for, found by running the
explainers on a :class:`RecordingPayoff` (placeholder payoffs, no image). Sub-prompts are then deduplicated
across prompts per seed ("a red circle" is a sub-prompt of many prompts: generated once for the whole run) and
packed, in the order they are first asked for, into batches of ``batch_size`` of one seed (:class:`Batch`): one
pipeline call each. A batch's contents depend on the configuration only, never on the number of processes nor on
the cache, so every image is made in the same batch (the same float rounding) however the run is split or
resumed.

Which methods are planned (:data:`PLANNED_METHODS`). Recording is only valid when the sub-prompts a method asks
for do not depend on the payoff values; this holds (and ``tests/test_distributed.py`` checks it by recording with
two unrelated placeholder payoffs) for

- ``shap-exact``: every subset of the words (shap's exact explainer walks all 2^d coalitions);
- ``shap-permutation``: permutations drawn from its seed; each is walked forward and back whatever the values;
- ``lime``: ``lime_samples`` perturbations drawn from ``random_state`` before the model is called once;
- ``captum-feature_ablation`` (the prompt and each one-word ablation), ``captum-shapley_values`` (all d!
  orderings), ``captum-shapley_sampling`` / ``captum-kernel_shap`` / ``captum-lime`` (samples drawn from the
  seeded torch RNG; the fitted surrogate never chooses samples).

``shap-partition`` is *not* planned (:data:`UNPLANNED_METHODS`): shap's Owen/partition explainer expands first
the tree nodes whose payoff differences are largest, so which sub-prompts it asks for depends on the values. Its
sub-prompts are generated while the prompt is explained, by the process that explains it (they are in the plan
anyway when another planned method of the same prompt asks for them, e.g. with ``shap-exact``). The manifest
counts them (``images_generated_while_explaining``).

Filling the cache with the plan is :mod:`captum_diffusion.runs.fill`.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from captum_diffusion.generation import families
from captum_diffusion.runs.config import PromptSpec, RunConfig
from captum_diffusion.words import split_words

#: Methods whose sub-prompts are planned, whether their draws depend on the seed, and why recording is valid.
PLANNED_METHODS: dict[str, tuple[bool, str]] = {
    "shap-exact": (False, "every subset of the words, whatever the payoffs"),
    "shap-permutation": (True, "permutations drawn from the seed, each walked forward and back whatever the payoffs"),
    "lime": (True, "lime_samples perturbations drawn from the seed before the payoff is called"),
    "captum-feature_ablation": (False, "the prompt and each one-word ablation"),
    "captum-shapley_values": (False, "every ordering of the words"),
    "captum-shapley_sampling": (True, "permutations drawn from the seeded torch RNG"),
    "captum-kernel_shap": (True, "coalitions drawn from the seeded torch RNG; the fit never chooses samples"),
    "captum-lime": (True, "perturbations drawn from the seeded torch RNG; the fit never chooses samples"),
}
#: Methods left to the explaining process, and why they cannot be planned.
UNPLANNED_METHODS: dict[str, str] = {
    "shap-partition": "shap's partition explainer expands first the nodes with the largest payoff differences, so "
                      "the sub-prompts it asks for depend on the payoffs",
}


def placeholder_value(prompt: str, salt: int = 0) -> float:
    """A payoff in [0, 1) for recording: a hash of ``prompt`` (and ``salt``), so distinct sub-prompts get
    distinct, finite values and no explainer sees a degenerate (constant) game."""
    digest = hashlib.sha256(f"{salt}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:6], "big") / 2.0**48


def _default_chunk_size() -> int:
    from captum_diffusion.scoring import PromptScore

    return int(inspect.signature(PromptScore).parameters["chunk_size"].default)


class RecordingPayoff:
    """A stand-in for :class:`~captum_diffusion.scoring.PromptScore` that makes no image: it returns
    :func:`placeholder_value` payoffs and records, in ``items``, the sub-prompts a ``PromptScore`` would have had
    generated, in the order it would have generated them (each new chunk of sub-prompts, then the full prompt's
    reference image)."""

    def __init__(self, prompt: str, *, salt: int = 0, chunk_size: int | None = None):
        self.prompt = " ".join(split_words(prompt))
        self.salt = salt
        self.chunk_size = chunk_size or _default_chunk_size()
        self.items: dict[str, None] = {}
        self._scored: set[str] = set()

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        new = [p for p in dict.fromkeys(prompts) if p not in self._scored]
        for start in range(0, len(new), self.chunk_size):
            chunk = new[start:start + self.chunk_size]
            self.items.update(dict.fromkeys(chunk))
            self.items.setdefault(self.prompt)  # PromptScore's reference image
            self._scored.update(chunk)
        return np.array([placeholder_value(p, self.salt) for p in prompts], dtype=np.float64)


def record_items(prompt: str, methods: Sequence[str], config: RunConfig, seed: int, *,
                 salt: int = 0) -> tuple[str, ...]:
    """The sub-prompts that ``methods`` (planned ones; others are skipped) ask for on ``prompt`` at ``seed``, plus
    the full prompt, in the order a run generates them."""
    from captum_diffusion.runs.execute import word_values

    f = RecordingPayoff(prompt, salt=salt)
    for method in methods:
        if method in PLANNED_METHODS:
            word_values(method, f, config, seed)
    f([f.prompt])  # the run scores the full prompt at every seed
    return tuple(f.items)


@dataclass(frozen=True)
class Batch:
    """One planned pipeline call: ``prompts`` (sub-prompts, distinct) at ``seed``; ``needed_by``: the numbers of
    the prompts that need any of them."""

    index: int
    seed: int
    prompts: tuple[str, ...]
    needed_by: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass
class PromptPlan:
    """One prompt of the plan: ``items[seed]``, the sub-prompts its planned methods need (in the order asked);
    ``shared[seed]``, how many of them an earlier prompt needed first (deduplicated away); ``unplanned``, its
    methods left to the explaining process; ``error``: why nothing was planned for it (the prompt then fails, with
    that error, when it is explained)."""

    number: int
    prompt: str
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    items: dict[int, tuple[str, ...]] = field(default_factory=dict)
    shared: dict[int, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def unplanned(self) -> tuple[str, ...]:
        return tuple(m for m in self.methods if m not in PLANNED_METHODS)

    @property
    def requested(self) -> int:
        return sum(len(items) for items in self.items.values())

    @property
    def deduplicated(self) -> int:
        return sum(self.shared.values())


@dataclass(frozen=True)
class Wave:
    """Prompts explained together after their batches are in the cache (see :meth:`Plan.waves`)."""

    prompts: tuple[int, ...]
    batches: tuple[int, ...]


@dataclass
class Plan:
    """Every planned generation of a run: ``prompts`` (:class:`PromptPlan`, by number) and ``batches``
    (:class:`Batch`, packed per seed). ``config``: the run's configuration (generation settings, batch size)."""

    config: RunConfig
    prompts: list[PromptPlan]
    batches: list[Batch]

    @property
    def requested(self) -> int:
        """Sub-prompt images the prompts ask for, each prompt counted alone (distinct per prompt and seed)."""
        return sum(p.requested for p in self.prompts)

    @property
    def unique(self) -> int:
        """Distinct (sub-prompt, seed) pairs: the images the plan generates."""
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
                "planned_methods": [m for m in methods if m in PLANNED_METHODS],
                "unplanned_methods": {m: UNPLANNED_METHODS.get(m, "not planned") for m in methods
                                      if m not in PLANNED_METHODS},
                "unplanned_prompts": {str(p.number): p.error for p in self.prompts if p.error is not None}}

    def digest(self) -> str:
        """A hash of the plan: every process of a run must build the same."""
        data = [[[b.seed, list(b.prompts)] for b in self.batches],
                [[p.prompt, {str(s): list(i) for s, i in p.items.items()}, p.error] for p in self.prompts]]
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

    ``model`` (a ``LoadedModel``, optional): prompts longer than its text encoder accepts get an ``error`` and no
    planned image (they fail when explained, as before, instead of stopping the generation of the others).
    Planning errors of one prompt (an explainer refusing it) are recorded the same way."""
    prompts = []
    for number, spec in enumerate(config.prompts):
        words = split_words(spec.prompt)
        methods, seeds = tuple(config.methods_for(len(words))), tuple(config.seeds_for(spec))
        plan = PromptPlan(number, spec.prompt, seeds, methods)
        plan.error = None if model is None else _too_long(model.pipeline, spec.prompt, config.max_sequence_length)
        planned = [m for m in methods if m in PLANNED_METHODS]
        if plan.error is None:  # with no planned method, the full prompt's image is still planned
            seeded = any(PLANNED_METHODS[m][0] for m in planned)
            recorded: dict[int | None, tuple[str, ...]] = {}
            try:
                for seed in seeds:
                    key = seed if seeded else None
                    if key not in recorded:
                        recorded[key] = record_items(spec.prompt, methods, config, seed)
                    plan.items[seed] = recorded[key]
            except Exception as error:  # noqa: BLE001 - the prompt fails when explained, with this error
                plan.items, plan.error = {}, f"{type(error).__name__}: {error}"
        prompts.append(plan)
    return Plan(config, prompts, _pack(prompts, config.batch_size))


def plan_prompts(prompts: Sequence[str | PromptSpec], **options) -> Plan:
    """:func:`plan_run` of ``RunConfig(prompts=prompts, **options)`` (``seeds``, ``words``, ``lime_samples``,
    ``max_evals``, ``batch_size``): the planning alone, no model."""
    return plan_run(RunConfig(prompts=tuple(prompts), **options))


def _pack(prompts: list[PromptPlan], batch_size: int) -> list[Batch]:
    sequences: dict[int, list[str]] = {}
    owners: dict[tuple[int, str], list[int]] = {}
    for plan in prompts:
        for seed, items in plan.items.items():
            sequence = sequences.setdefault(seed, [])
            shared = 0
            for item in items:
                needers = owners.get((seed, item))
                if needers is None:
                    owners[(seed, item)] = [plan.number]
                    sequence.append(item)
                else:
                    needers.append(plan.number)
                    shared += 1
            plan.shared[seed] = shared
    batches = []
    for seed, sequence in sequences.items():
        for start in range(0, len(sequence), batch_size):
            chunk = tuple(sequence[start:start + batch_size])
            needed_by = tuple(sorted({n for item in chunk for n in owners[(seed, item)]}))
            batches.append(Batch(len(batches), seed, chunk, needed_by))
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
