"""Filling the image cache with a run's plan, on every process.

**Fill** (:func:`fill_cache`). The batches not yet in the cache are split between the processes (largest first,
each to the least loaded process: deterministic, balanced in images), each process generates its share into the
shared on-disk cache, and all meet at a barrier. A batch that is only partly cached (a run killed while storing
it) is made again whole, in the same batch, and only its missing images are stored.
"""
from __future__ import annotations

import heapq
import json
import time
from pathlib import Path
from typing import Sequence

from captum_diffusion.runs.config import RunConfig
from captum_diffusion.runs.plan import Batch, Plan, plan_run


def settings_key(batch: Batch) -> str:
    """The name of ``batch``'s generation settings in the fill counters' ``by_settings``: ``"run"`` for the run's
    own, else the JSON of its overrides (e.g. ``'{"num_inference_steps": 2}'``)."""
    return "run" if batch.settings is None else json.dumps(batch.settings.keywords(), sort_keys=True)


def split_batches(costs: dict[int, int], n_ranks: int) -> list[list[int]]:
    """Batch indices -> ``n_ranks`` shares, balanced in cost (images): largest batch first, each to the least
    loaded rank (ties: the lower index, the lower rank). Deterministic."""
    shares: list[list[int]] = [[] for _ in range(n_ranks)]
    loads = [(0, rank) for rank in range(n_ranks)]
    for index in sorted(costs, key=lambda i: (-costs[i], i)):
        load, rank = heapq.heappop(loads)
        shares[rank].append(index)
        heapq.heappush(loads, (load + costs[index], rank))
    return [sorted(share) for share in shares]


class _Filler:
    """Generates planned batches into ``cache_dir`` with one generator per seed."""

    def __init__(self, plan: Plan, model, cache_dir, *, progress: bool):
        self.plan, self.model, self.cache_dir, self.progress = plan, model, Path(cache_dir), progress
        self.run_settings = model.generation_settings(plan.config)
        self._generators: dict[tuple, object] = {}

    def generator(self, batch: Batch):
        """The ``TextToImage`` of ``batch``'s seed and generation settings (the run's unless it carries its own)
        over the shared cache, made once per seed and settings."""
        if (batch.seed, batch.settings) not in self._generators:
            from captum_diffusion.generation import TextToImage

            self._generators[batch.seed, batch.settings] = TextToImage(
                self.model.pipeline, seed=batch.seed, cache_dir=self.cache_dir, progress=False,
                batch_size=self.plan.config.batch_size, max_in_memory=self.plan.config.batch_size,
                settings=batch.generation_settings(self.run_settings))
        return self._generators[batch.seed, batch.settings]

    def missing(self, batch: Batch) -> tuple[int, ...]:
        """Positions in ``batch`` of the images the cache does not hold."""
        return tuple(self.generator(batch).missing(batch.prompts))

    def run(self, share: Sequence[int], missing: dict[int, tuple[int, ...]]) -> dict:
        """Generate the batches of ``share`` whole (``TextToImage.regenerate``: a partly cached batch is made again
        in the same batch, so its images round as the cached ones did) and store their missing images; returns
        this process's counters (``by_settings``: images made and seconds spent per :func:`settings_key`, the
        measure of a proxy image's cost relative to a full one)."""
        from tqdm.auto import tqdm

        counters = {"batches": 0, "planned": 0, "generated": 0, "recomputed": 0, "seconds": 0.0, "cpu_seconds": 0.0,
                    "by_settings": {}}
        tick, cpu = time.perf_counter(), time.process_time()
        order = sorted(share, key=lambda i: (self.plan.batches[i].seed, i))
        total = sum(len(missing[i]) for i in order)
        with tqdm(total=total, desc="generating", unit="image", disable=not self.progress or not total,
                  leave=False) as bar:
            for index in order:
                batch, began = self.plan.batches[index], time.perf_counter()
                stored = self.generator(batch).regenerate(batch.prompts)
                made = counters["by_settings"].setdefault(settings_key(batch), {"images": 0, "seconds": 0.0})
                made["images"] += len(batch)  # the whole batch is made again, its cached images too
                made["seconds"] = round(made["seconds"] + time.perf_counter() - began, 3)
                counters["batches"] += 1
                counters["planned"] += len(missing[index])
                counters["generated"] += len(stored)
                counters["recomputed"] += len(batch) - len(stored)
                bar.update(len(missing[index]))
        counters["seconds"] = round(time.perf_counter() - tick, 3)
        counters["cpu_seconds"] = round(time.process_time() - cpu, 3)  # this process's CPU time (all its threads)
        return counters


def fill_cache(plan_or_config: Plan | RunConfig, cache_dir, *, model=None, batches: Sequence[int] | None = None,
               ranks=None, progress: bool = True) -> dict:
    """Generate the planned images not yet in ``cache_dir``, split between the processes of the current
    accelerate state; every process must call it (it ends at a barrier). The same call in a notebook (one
    process) and under ``accelerate launch`` (N processes).

    ``plan_or_config``: a :class:`Plan` or a ``RunConfig`` (planned here). ``model``: the loaded model
    (``runs.models.load_model``; ``None``: loaded from the configuration, on this process's GPU under a launcher
    when the configuration says ``device="cuda"``). ``batches``: indices of ``plan.batches`` to fill (default:
    all). ``ranks``: a ``runs.distributed.Ranks`` (default: the current accelerate state). A process that
    raises stops all of them at the next barrier (``OtherRankFailed`` on the others).

    Returns ``{"rank": this process's counters, "ranks": every process's, "total": their sums, "checked": images
    looked up, "cached": already there}``; counters: ``batches``, ``planned`` (missing images of its batches),
    ``generated``, ``recomputed`` (cached images made again to keep a partly cached batch whole), ``seconds`` and
    ``cpu_seconds`` (this process's CPU time while generating).
    """
    from captum_diffusion.runs.distributed import Ranks

    ranks = Ranks() if ranks is None else ranks
    plan = plan_or_config if isinstance(plan_or_config, Plan) else None
    config = plan.config if plan is not None else plan_or_config
    if not isinstance(config, RunConfig):
        raise TypeError(f"plan_or_config must be a Plan or a RunConfig, got {type(plan_or_config).__name__}")
    if model is None or plan is None:
        with ranks.phase("load the model and plan"):
            if model is None:
                from captum_diffusion.runs.models import load_model

                model = load_model(config.model, config.clip, device=ranks.device(config.device), dtype=config.dtype)
            if plan is None:
                plan = plan_run(config, model=model)
    indices = list(range(len(plan.batches))) if batches is None else sorted(set(batches))
    filler = _Filler(plan, model, cache_dir, progress=progress and ranks.is_main)
    with ranks.phase("look up the cache") as phase:
        phase.payload = {i: filler.missing(plan.batches[i]) for i in indices[ranks.rank::ranks.size]}
    missing = {i: m for part in phase.records for i, m in part.items()}
    costs = {i: len(plan.batches[i]) for i, m in missing.items() if m}
    share = split_batches(costs, ranks.size)[ranks.rank]
    with ranks.phase("generate") as phase:
        phase.payload = filler.run(share, missing)
    total = {name: sum(r[name] for r in phase.records) for name in ("batches", "planned", "generated", "recomputed")}
    checked = sum(len(plan.batches[i]) for i in indices)
    return {"rank": phase.records[ranks.rank], "ranks": phase.records, "total": total, "checked": checked,
            "cached": checked - total["planned"]}
