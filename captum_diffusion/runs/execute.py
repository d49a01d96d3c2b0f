"""Run a configuration: every prompt, every seed, every requested explainer, saved as it goes.

``explain_run(config, out)`` is what ``diffusion-explain explain`` calls, in one process or in each process of an
``accelerate launch`` / ``torchrun`` job (``runs.distributed``: one code path, one rank without a launcher). The
images the explainers need are planned and deduplicated across prompts first (``runs.plan``), generated into
``out/cache`` split between the processes (``runs.fill``), then every prompt is explained from the cache by one
process (``runs.prompt``). Each prompt's results are written as soon as they are done, so a run that is killed
resumes where it stopped: finished prompts are read back, and no image is generated twice.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tqdm.auto import tqdm

from captum_diffusion.runs.config import RunConfig, saved_settings
from captum_diffusion.runs.methods import word_values  # noqa: F401 - its old home, kept importable
from captum_diffusion.runs.prompt import explain_prompt
from captum_diffusion.runs.lock import LOCK_FILES, RunLocked, current_holder, take_lock
from captum_diffusion.runs.store import (MANIFEST, RESULT, PromptRun, Run, load_run, read_manifest, save_prompt,
                                         write_json)
from captum_diffusion.runs.verify import DamagedRun, read_checksums, record_checksums, settings_digest, settle_prompts
from captum_diffusion.words import split_words, word_labels

#: Format of the saved run, in the manifest; bump when the layout changes.
FORMAT = 1


def check_output_folder(out, config: RunConfig, *, force: bool = False, resume: bool = False) -> tuple[Path, bool]:
    """Check the run folder before anything is written.

    Parameters
    ----------
    out : str or Path
        The run folder.
    config : RunConfig
        The run; a folder holding a run with the same settings is resumed.
    force : bool
        Accept a folder holding another run or other files.
    resume : bool
        Require a run to resume (refuse a folder without one, and ``force``).

    Returns
    -------
    folder : Path
        ``out``, resolved.
    resuming : bool
        Whether it holds this run already.

    Raises
    ------
    ValueError
        For another run's folder or other files (unless ``force``), a file, a folder that cannot be written, or
        ``resume`` without a run to resume or with ``force``; nothing is created then. A damaged ``manifest.json``
        is rebuilt when ``checksums.json`` shows the results were made with these settings (or there are none),
        replaced with ``force``, else refused.
    """
    folder = Path(out).expanduser().resolve()
    _check_request(folder, force, resume)
    try:
        manifest = read_manifest(folder)
    except DamagedRun as damaged:
        return folder, _rebuildable(folder, config, damaged, force)
    if manifest is None and resume:
        raise ValueError(f"--resume: --out {str(folder)!r} holds no run to resume (no {MANIFEST}); drop --resume to "
                         "start one")
    if manifest is not None:
        if saved_settings(manifest) == config.settings():
            return folder, True
        holder = current_holder(folder)
        if holder is not None:  # being written now: even --force must not mix two runs
            raise RunLocked(f"--out {str(folder)!r} is being written by another run with other settings ({holder}); "
                            "wait for it to finish or choose another folder")
        if not force:
            raise ValueError(f"--out {str(folder)!r} holds a run with other settings; choose another folder, or "
                             "pass --force to replace its results (its image cache is kept: keys include the model)")
        return folder, False
    if folder.exists() and any(p.name not in LOCK_FILES for p in folder.iterdir()) and not force:
        raise ValueError(f"--out {str(folder)!r} exists and is not an empty folder nor a saved run; choose another "
                         "folder (or --force to write into it)")
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK) or not probe.is_dir():
        raise ValueError(f"--out {str(folder)!r} cannot be written ({str(probe)!r} is not a writable folder)")
    return folder, False


def _check_request(folder: Path, force: bool, resume: bool) -> None:
    """Refuse ``--resume`` with ``--force``, and a file as ``--out`` (even with ``--force``)."""
    if resume and force:
        raise ValueError("--resume and --force contradict each other: --resume continues the run in --out, --force "
                         "replaces its results; give one of them")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {str(folder)!r} is a file, not a folder (--force replaces a run's results, never "
                         "a file); choose a folder")


def _rebuildable(folder: Path, config: RunConfig, damaged: DamagedRun, force: bool) -> bool:
    """For a folder whose ``manifest.json`` is damaged: whether its results are kept (rebuilt manifest, resumed);
    ``False`` with ``force`` (replaced); ``ValueError`` when its results were made with other settings."""
    if force:
        return False
    try:
        recorded = read_checksums(folder).get("settings")
    except DamagedRun:
        recorded = None
    if recorded == settings_digest(config.settings()) or not any(folder.glob(f"prompts/*/{RESULT}")):
        return True
    raise ValueError(f"{damaged}; its results were not recorded with this command's settings, so this command "
                     "cannot rebuild it: rerun the command that made it, or pass --force to replace them") from None


def versions() -> dict[str, str]:
    """Versions of everything that shapes the results."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("diffusion-explain", "torch", "diffusers", "transformers", "shap", "lime", "captum",
                    "open_clip_torch", "numpy", "safetensors"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def explain_run(config: RunConfig, out, *, command: list[str] | None = None, force: bool = False,
                progress: bool = True, report: bool = True, prompts_per_wave: int | None = None, state=None,
                resume: bool = False, startup_seconds: float | None = None) -> Run:
    """Explain every prompt of ``config`` and save the run in ``out`` (see ``captum_diffusion.runs.store``), on
    one process or on every process of an ``accelerate launch`` / ``torchrun`` job (the same code: one rank).

    Resumes a run with the same settings in ``out``; refuses another run's folder unless ``force`` (then its
    results are replaced, its image cache kept). A prompt that raises is recorded as failed with its error and the
    run goes on.

    The run goes through named phases, each ending where the processes meet (``runs.distributed.Ranks.phase``):
    check the folder (:func:`check_output_folder`, before anything is written), load the model, write the
    manifest, plan (``runs.plan``: the images the explainers need, deduplicated across prompts and packed in
    batches, the same on every process), check that the processes agree, run the waves (each wave's batches
    missing from ``out/cache`` are split between the processes and generated, then each process explains its
    prompts of the wave from the cache and writes their folders; the main process updates the manifest), and
    write the report. Waves keep results coming as the run goes (and a killed run resumes from them); their size
    never changes which batch makes an image, so results do not depend on the number of processes. A process
    that raises stops every process at the next phase boundary, its error shown by it alone
    (``runs.distributed.OtherRankFailed`` elsewhere).

    Parameters
    ----------
    config : RunConfig
        The run.
    out : str or Path
        The run folder.
    command : list of str, optional
        The command line recorded in the manifest (default: ``sys.argv``).
    force : bool
        Replace the results of a run with other settings in ``out``.
    progress : bool
        Progress bars (on the main process).
    report : bool
        Write ``report.html``.
    prompts_per_wave : int, optional
        Prompts explained per wave (default: one per process).
    state : accelerate.PartialState, optional
        The processes (default: the current state).
    resume : bool
        Require a run with the same settings in ``out`` (``--resume``): refuse a folder without one.
    startup_seconds : float, optional
        Seconds from the process's start to this call (imports, reading the options), for the manifest's
        breakdown (the CLI passes :func:`seconds_since_process_start`); ``None`` from the API.

    Returns
    -------
    Run
        The loaded run on the main process; the others get the manifest and no prompts.
    """
    from captum_diffusion.runs.distributed import Ranks

    run = _Launch(config, Ranks(state), Path(out).expanduser().resolve(), time.perf_counter(),
                  prompts_per_wave or None, list(sys.argv if command is None else command), progress)
    run.force, run.resume, run.breakdown = force, resume, {"startup": startup_seconds}
    try:
        return _phases(run, out, report)
    finally:
        if run.lock is not None:
            run.lock.release()


def _phases(run: "_Launch", out, report: bool) -> Run:
    """The phases of :func:`explain_run` in order, on this process, each timed into ``run.breakdown``."""
    run.threads = apply_threads(run.config.threads, run.ranks.size)
    with _timed(run, "load"):
        _check_folder(run, out, run.force)
        _load_model(run)
    with _timed(run, "write"):
        _write_manifest(run)
    with _timed(run, "plan"):
        _plan(run)
        _check_agreement(run)
    _run_waves(run)
    return _finish(run, report)


@dataclass
class _Launch:
    """What the phases of :func:`explain_run` share on one process."""

    config: RunConfig
    ranks: object
    folder: Path
    started: float
    prompts_per_wave: int | None
    command: list[str]
    progress: bool
    resuming: bool = False
    model: object = None
    manifest: dict | None = None
    plan: object = None
    launch: dict = field(default_factory=dict)
    force: bool = False
    resume: bool = False
    lock: object = None
    breakdown: dict = field(default_factory=dict)
    threads: dict = field(default_factory=dict)

    @property
    def show(self) -> bool:
        """Whether this process shows progress bars."""
        return self.progress and self.ranks.is_main


def _check_folder(run: _Launch, out, force: bool) -> None:
    """Phase "check --out": the main process checks the folder (nothing is written when it raises)."""
    with run.ranks.phase("check --out") as phase:
        if run.ranks.is_main:
            run.folder, phase.payload = check_output_folder(out, run.config, force=force, resume=run.resume)
    run.resuming = phase.records[0]


def _load_model(run: _Launch) -> None:
    """Phase "load the model": every process loads it, and refuses settings it cannot take."""
    from captum_diffusion.generation import TextToImage
    from captum_diffusion.runs.limits import check_model
    from captum_diffusion.runs import multifidelity
    from captum_diffusion.runs.models import load_model

    config = run.config
    with run.ranks.phase("load the model"):
        run.model = load_model(config.model, config.clip, device=run.ranks.device(config.device), dtype=config.dtype)
        TextToImage(run.model.pipeline, **run.model.generation_settings(config).keywords())
        check_model(config, run.model)  # sizes and token limits: refused before the folder is written
        multifidelity.check_model(config, run.model)  # the proxy's settings (--proxy-steps / --proxy-size)


def _write_manifest(run: _Launch) -> None:
    """Phase "write the manifest": the main process clears another run's results (``--force``), writes the first
    manifest and tells every process the launch id and the prompts still to explain."""
    import uuid

    config, folder, load_seconds = run.config, run.folder, time.perf_counter() - run.started
    with run.ranks.phase("write the manifest") as phase:
        if run.ranks.is_main:
            run.lock = take_lock(folder, settings_digest(config.settings()), run.command)
            run.resuming = check_output_folder(folder, config, force=run.force, resume=run.resume)[1]  # locked now
            if not run.resuming and (folder / "prompts").exists():
                shutil.rmtree(folder / "prompts")
            manifest = _manifest(config, run.model, run.command, _previous_manifest(folder) if run.resuming else None)
            manifest["launch"] = {"id": uuid.uuid4().hex, "processes": run.ranks.size,
                                  "prompts_per_wave": run.prompts_per_wave or run.ranks.size, "threads": run.threads}
            manifest["timings"]["model_load_seconds"] = load_seconds
            pending = settle_prompts(folder, config)  # damaged prompts are redone
            manifest["counts"]["prompts_resumed"] = len(config.prompts) - len(pending)
            for number in range(len(config.prompts)):
                manifest["prompts"][number]["status"] = "pending" if number in pending else "done"
            write_json(folder / MANIFEST, manifest)
            run.manifest = manifest
            phase.payload = {"id": manifest["launch"]["id"], "pending": pending}
    run.launch = phase.records[0]


def _plan(run: _Launch) -> None:
    """Phase "plan": every process builds the plan (``runs.plan.plan_run``) and sends its digest."""
    from captum_diffusion.runs.plan import plan_run

    with run.ranks.phase("plan") as phase:
        tick = time.perf_counter()
        run.plan = plan_run(run.config, model=run.model)
        phase.payload = {"digest": run.plan.digest(), "seconds": round(time.perf_counter() - tick, 3)}
    run.launch["plans"] = phase.records


def _check_agreement(run: _Launch) -> None:
    """Phase "check the processes agree": the same plan everywhere, and one ``--out`` folder shared by all; then
    the main process records the plan in the manifest."""
    ranks, plans = run.ranks, run.launch["plans"]
    with ranks.phase("check the processes agree"):
        if ranks.is_main and any(record["digest"] != plans[0]["digest"] for record in plans):
            raise RuntimeError("the processes planned different work (different library versions on different "
                               "machines?); every process must run the same versions")
        if not ranks.is_main:
            seen = read_manifest(run.folder)
            if seen is None or seen.get("launch", {}).get("id") != run.launch["id"]:
                raise ValueError(f"--out {str(run.folder)!r} on this process does not show the run the main process "
                                 "is writing: --out must be one folder shared by every process and machine")
    if ranks.is_main:
        manifest = run.manifest
        manifest["plan"] = run.plan.summary()
        manifest["timings"]["plan_seconds"] = plans[0]["seconds"]
        manifest["counts"].update({key: 0 for key in _RUN_COUNTS})
        manifest["counts"]["per_rank"] = [dict.fromkeys(_RANK_COUNTS, 0) | {"rank": r} for r in range(ranks.size)]
        write_json(run.folder / MANIFEST, manifest)


def _run_waves(run: _Launch) -> None:
    """The waves: fill the cache with each wave's batches (``runs.fill.fill_cache``), then explain its prompts
    (phase "explain"); the main process folds each wave into the manifest."""
    from captum_diffusion.runs.fill import fill_cache

    ranks, n_prompts, pending = run.ranks, len(run.config.prompts), run.launch["pending"]
    waves = run.plan.waves(pending, run.prompts_per_wave or ranks.size)
    with tqdm(total=n_prompts, initial=n_prompts - len(pending), desc="prompts", unit="prompt",
              disable=not run.show) as bar:
        for wave in waves:
            with _timed(run, "generate"):
                filled = fill_cache(run.plan, run.folder / "cache", model=run.model, batches=wave.batches,
                                    ranks=ranks, progress=run.show)
            with _timed(run, "explain"), ranks.phase("explain") as phase:
                phase.payload = _explain_wave(run, wave.prompts[ranks.rank::ranks.size]) | {"fill": filled["rank"]}
            if ranks.is_main:
                _add_wave(run.manifest, phase.records, filled, run.started)
                record_checksums(run.folder, wave.prompts, run.config.settings())
                write_json(run.folder / MANIFEST, run.manifest)
            bar.update(len(wave.prompts))


def _explain_wave(run: _Launch, numbers) -> dict:
    """Explain and save the prompts ``numbers`` on this process; a prompt that raises is saved as failed.
    Returns this process's record of the wave: entries by number, image counts, deduplicated images, seconds."""
    tick, config = time.perf_counter(), run.config
    counts = {"images_generated": 0, "images_from_cache": 0}
    entries, deduplicated = {}, 0
    for number in numbers:
        spec, begun, costs = config.prompts[number], time.perf_counter(), {}
        try:
            result = explain_prompt(spec, config, run.model, run.folder / "cache", counts, progress=run.show,
                                    costs=costs)
        except Exception as error:  # noqa: BLE001 - one failing prompt must not lose the others
            words = split_words(spec.prompt)
            result = PromptRun(spec.prompt, words, word_labels(words), list(config.seeds_for(spec)),
                               status="failed", error=f"{type(error).__name__}: {error}")
        save_prompt(run.folder, number, result)
        entries[number] = {"status": result.status, "error": result.error,
                           "seconds": round(time.perf_counter() - begun, 3), "cost": costs}
        deduplicated += run.plan.prompts[number].deduplicated
    return {"entries": entries, "counts": counts, "deduplicated": deduplicated,
            "seconds": time.perf_counter() - tick}


def _finish(run: _Launch, report: bool) -> Run:
    """Phase "report": the main process closes the manifest, loads the run and writes ``report.html``."""
    loaded, tick = None, time.perf_counter()
    with run.ranks.phase("report"):
        if run.ranks.is_main:
            timings = run.manifest["timings"]
            timings["finished"] = _now()
            timings["seconds"] = round(time.perf_counter() - run.started, 3)
            timings["breakdown"] = breakdown(run.breakdown, time.perf_counter() - run.started)
            write_json(run.folder / MANIFEST, run.manifest)
            loaded = load_run(run.folder)
            if report:
                from captum_diffusion.runs.render import write_report

                write_report(loaded)
            run.breakdown["write"] = run.breakdown.get("write", 0.0) + time.perf_counter() - tick
            elapsed = time.perf_counter() - run.started
            timings["seconds"], timings["breakdown"] = round(elapsed, 3), breakdown(run.breakdown, elapsed)
            write_json(run.folder / MANIFEST, run.manifest)  # again, with the report's time
    return loaded if loaded is not None else Run(run.folder, read_manifest(run.folder), [])


#: The manifest's run-wide counts besides images_generated / images_from_cache / prompts_resumed.
_RUN_COUNTS = ("images_planned", "images_cached", "images_recomputed", "images_generated_while_explaining",
               "images_deduplicated")
#: The counts kept per process (``counts["per_rank"]``).
_RANK_COUNTS = ("prompts", "batches", "planned", "generated", "generated_while_explaining", "recomputed",
                "from_cache", "deduplicated", "fill_seconds", "fill_cpu_seconds", "explain_seconds")


def _previous_manifest(folder: Path) -> dict | None:
    """The manifest a resumed run continues (``None`` when damaged: it is rebuilt)."""
    try:
        return read_manifest(folder)
    except DamagedRun:
        return None


def _add_wave(manifest: dict, records: list[dict], filled: dict, started: float) -> None:
    """Fold one wave's records (one per process) and fill counters into the manifest."""
    counts = manifest["counts"]
    for rank, record in enumerate(records):
        for number, entry in record["entries"].items():
            manifest["prompts"][int(number)].update(entry)
        fill, explained = record["fill"], record["counts"]
        mine = counts["per_rank"][rank]
        mine["prompts"] += len(record["entries"])
        for name in ("batches", "planned", "generated", "recomputed"):
            mine[name] += fill[name]
        mine["generated"] += explained["images_generated"]
        mine["generated_while_explaining"] += explained["images_generated"]
        mine["from_cache"] += explained["images_from_cache"]
        mine["deduplicated"] += record["deduplicated"]
        mine["fill_seconds"] = round(mine["fill_seconds"] + fill["seconds"], 3)
        mine["fill_cpu_seconds"] = round(mine["fill_cpu_seconds"] + fill["cpu_seconds"], 3)
        mine["explain_seconds"] = round(mine["explain_seconds"] + record["seconds"], 3)
        counts["images_generated"] += fill["generated"] + explained["images_generated"]
        counts["images_generated_while_explaining"] += explained["images_generated"]
        counts["images_from_cache"] += explained["images_from_cache"]
        counts["images_deduplicated"] += record["deduplicated"]
    counts["images_planned"] += filled["total"]["planned"]
    counts["images_cached"] += filled["cached"]
    counts["images_recomputed"] += filled["total"]["recomputed"]
    from captum_diffusion.runs.cost import add_timings, summarise

    add_timings(manifest.setdefault("cost", {}), [record["fill"] for record in records])
    summarise(manifest)  # full-image equivalents per prompt and in total (runs.cost)
    manifest["timings"]["seconds"] = round(time.perf_counter() - started, 3)


@contextmanager
def _timed(run: _Launch, part: str):
    """Add the seconds spent in the ``with`` block to ``run.breakdown[part]``."""
    tick = time.perf_counter()
    try:
        yield
    finally:
        run.breakdown[part] = run.breakdown.get(part, 0.0) + time.perf_counter() - tick


#: The parts of a run's time in the manifest's ``timings["breakdown"]``, in order.
BREAKDOWN = ("startup", "load", "plan", "generate", "explain", "write")


def breakdown(parts: dict, run_seconds: float) -> dict:
    """Where a launch's time went, as the manifest records it (``timings["breakdown"]``, seconds).

    Parameters
    ----------
    parts : dict
        Seconds by part of :data:`BREAKDOWN` (``startup`` may be ``None``: unknown, the run started from the API).
    run_seconds : float
        Seconds from the start of :func:`explain_run` to now.

    Returns
    -------
    dict
        ``startup`` (process start to :func:`explain_run`, imports included), ``load`` (checking ``--out``,
        importing and loading the model and scorer), ``plan``, ``generate`` (filling the image cache with the
        planned images), ``explain`` (scoring, explainers, attention maps, images the plan could not foresee, each
        prompt's folder), ``write`` (the manifest and the report), ``other`` (the rest: waiting for other
        processes, progress bars), ``total`` (``startup`` + the run), all rounded to milliseconds; one process's
        view (the main one's).
    """
    found = {part: (None if parts.get(part) is None else round(parts[part], 3)) for part in BREAKDOWN}
    counted = sum(value for part, value in found.items() if value is not None and part != "startup")
    found["other"] = round(max(run_seconds - counted, 0.0), 3)
    found["total"] = round(run_seconds + (parts.get("startup") or 0.0), 3)
    return found


def seconds_since_process_start() -> float | None:
    """Seconds since this process started (Linux: ``/proc/self/stat``, 10 ms resolution); ``None`` elsewhere.

    Returns
    -------
    float or None
        The process's age, interpreter start-up and imports included.
    """
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat(5): start time after boot, ticks
        return max(time.clock_gettime(time.CLOCK_BOOTTIME) - started, 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def apply_threads(threads: int | None, processes: int = 1) -> dict:
    """Set torch's CPU threads for a run and say where the number came from (the manifest's ``launch.threads``).

    Parameters
    ----------
    threads : int, optional
        ``--threads``; ``None``: ``OMP_NUM_THREADS`` when set (torch reads it), else one thread per process under a
        launcher (``processes > 1``), else :data:`runs.config.DEFAULT_THREADS` (at most the CPUs available).
    processes : int
        Processes of the run (``runs.distributed.Ranks.size``).

    Returns
    -------
    dict
        ``{"torch": threads torch now uses, "source": "--threads" | "OMP_NUM_THREADS" | "one per process" |
        "default", "cpus": CPUs this process may run on}``.
    """
    import torch

    from captum_diffusion.runs.config import DEFAULT_THREADS

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if threads is not None:
        chosen, source = threads, "--threads"
    elif os.environ.get("OMP_NUM_THREADS"):
        chosen, source = None, "OMP_NUM_THREADS"
    elif processes > 1:
        chosen, source = 1, "one per process"
    else:
        chosen, source = min(DEFAULT_THREADS, cpus), "default"
    if chosen is not None:
        torch.set_num_threads(chosen)
    return {"torch": torch.get_num_threads(), "source": source, "cpus": cpus}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _manifest(config: RunConfig, model, command, previous: dict | None) -> dict:
    pipeline = model.pipeline
    scheduler = getattr(pipeline, "scheduler", None)
    history = [] if previous is None else previous.get("history", []) + [
        {"counts": previous["counts"], "timings": previous["timings"]}]
    statuses = previous["prompts"] if previous is not None else [
        {"prompt": spec.prompt, "folder": f"prompts/{n:03d}", "status": "pending", "error": None, "seconds": None}
        for n, spec in enumerate(config.prompts)]
    return {
        "format": FORMAT,
        "versions": versions(),
        "model": {"spec": config.model, "source": model.source, "class": type(pipeline).__name__,
                  "defaults": model.defaults,
                  "scheduler": None if scheduler is None else {"class": type(scheduler).__name__,
                                                               "config": dict(scheduler.config)}},
        "scorer": {"spec": config.clip, "class": type(model.scorer).__name__,
                   "text_template": getattr(model.scorer, "text_template", None)},
        "config": config.settings(),
        "command": list(sys.argv if command is None else command),
        "counts": {"images_generated": 0, "images_from_cache": 0, "prompts_resumed": 0},
        "timings": {"started": _now(), "finished": None, "seconds": 0.0},
        "history": history,
        "cost": {} if previous is None else previous.get("cost", {}),
        "prompts": statuses,
    }


def generation_settings(config: RunConfig, model) -> dict:
    """Deprecated: ``TextToImage`` keywords of a run; use ``model.generation_settings(config)`` (a
    ``GenerationSettings``, see ``runs.models.LoadedModel``) and ``config.batch_size``."""
    warnings.warn("runs.execute.generation_settings is deprecated; use LoadedModel.generation_settings(config) "
                  "(a GenerationSettings) and config.batch_size", DeprecationWarning, stacklevel=2)
    settings = model.generation_settings(config)
    return {**dataclasses.asdict(settings), "batch_size": config.batch_size}
