"""Run a configuration: every prompt, every seed, every requested explainer, saved as it goes.

``explain_run(config, out)`` is what ``diffusion-explain explain`` calls, in one process or in each process of an
``accelerate launch`` / ``torchrun`` job (``runs.distributed``: one code path, one rank without a launcher). The
images the explainers need are planned and deduplicated across prompts first (``runs.plan``), generated into
``out/cache`` split between the processes, then every prompt is explained from the cache by one process. Each
prompt's results are written as soon as they are done, so a run that is killed resumes where it stopped: finished
prompts are read back, and no image is generated twice.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from captum_diffusion.runs.config import PromptSpec, RunConfig
from captum_diffusion.runs.store import (MANIFEST, RESULT, PromptRun, Run, SubPrompt, load_run, prompt_dir,
                                         read_manifest, save_prompt, write_json)
from captum_diffusion.words import split_words, word_labels

#: Format of the saved run, in the manifest; bump when the layout changes.
FORMAT = 1


def check_output_folder(out, config: RunConfig, *, force: bool = False) -> tuple[Path, bool]:
    """``(folder, resuming)``: refuse a folder that holds another run's configuration (unless ``force``) or other
    files, and one that cannot be written; nothing is created when this raises ``ValueError``."""
    folder = Path(out).expanduser().resolve()
    manifest = read_manifest(folder)
    if manifest is not None:
        if saved_settings(manifest) == config.settings():
            return folder, True
        if not force:
            raise ValueError(f"--out {str(folder)!r} holds a run with other settings; choose another folder, or "
                             "pass --force to replace its results (its image cache is kept: keys include the model)")
        return folder, False
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not force:
        raise ValueError(f"--out {str(folder)!r} exists and is not an empty folder nor a saved run; choose another "
                         "folder (or --force to write into it)")
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK) or not probe.is_dir():
        raise ValueError(f"--out {str(folder)!r} cannot be written ({str(probe)!r} is not a writable folder)")
    return folder, False


def saved_settings(manifest: dict) -> dict | None:
    """A saved run's settings with every setting added since it was saved at its default (so an older run that
    used no new option still resumes); ``None`` when they no longer make a ``RunConfig``."""
    try:
        return RunConfig.from_settings(manifest["config"]).settings()
    except (KeyError, TypeError, ValueError):
        return None


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
                progress: bool = True, report: bool = True, prompts_per_wave: int | None = None, state=None) -> Run:
    """Explain every prompt of ``config`` and save the run in ``out`` (see ``captum_diffusion.runs.store``), on
    one process or on every process of an ``accelerate launch`` / ``torchrun`` job (the same code: one rank).

    Resumes a run with the same settings in ``out``; refuses another run's folder unless ``force`` (then its
    results are replaced, its image cache kept). A prompt that raises is recorded as failed with its error and the
    run goes on. Returns the loaded :class:`~captum_diffusion.runs.store.Run` (on the main process; the others
    get the manifest and no prompts); writes ``report.html`` when ``report``.

    How (``captum_diffusion.runs.plan``): every process builds the same plan of the images the explainers need,
    deduplicated across prompts and packed in batches. Then, wave by wave (``prompts_per_wave`` prompts, default:
    one per process): the wave's batches missing from ``out/cache`` are split between the processes and generated
    (each unique image once), all meet, then each process explains its prompts of the wave from the cache and
    writes their folders; the main process writes the manifest (counts per process and in total) and, at the end,
    the report. Waves keep results coming as the run goes (and a killed run resumes from them); their size never
    changes which batch makes an image, so results do not depend on the number of processes. A process that
    raises stops every process at the next phase boundary, its error shown by it alone
    (``runs.distributed.OtherRankFailed`` elsewhere). ``state``: an ``accelerate.PartialState`` (default: the
    current one).
    """
    import uuid

    from captum_diffusion.runs.distributed import Ranks
    from captum_diffusion.generation import TextToImage
    from captum_diffusion.runs.models import load_model
    from captum_diffusion.runs.fill import fill_cache
    from captum_diffusion.runs.plan import plan_run

    ranks = Ranks(state)
    show = progress and ranks.is_main
    started = time.perf_counter()
    folder = Path(out).expanduser().resolve()
    with ranks.phase("check --out") as phase:
        if ranks.is_main:
            folder, resuming = check_output_folder(out, config, force=force)
            phase.payload = resuming
    resuming = phase.records[0]
    with ranks.phase("load the model"):
        model = load_model(config.model, config.clip, device=ranks.device(config.device), dtype=config.dtype)
        TextToImage(model.pipeline, **generation_settings(config, model))  # refuses settings the model cannot take
    load_seconds = time.perf_counter() - started
    manifest = None
    with ranks.phase("plan") as phase:
        if ranks.is_main:
            if not resuming and (folder / "prompts").exists():
                shutil.rmtree(folder / "prompts")
            folder.mkdir(parents=True, exist_ok=True)
            previous = read_manifest(folder) if resuming else None
            manifest = _manifest(config, model, command, previous)
            manifest["launch"] = {"id": uuid.uuid4().hex, "processes": ranks.size,
                                  "prompts_per_wave": prompts_per_wave or ranks.size}
            manifest["timings"]["model_load_seconds"] = load_seconds
            pending = [n for n in range(len(config.prompts)) if not _finished(folder, n)]
            manifest["counts"]["prompts_resumed"] = len(config.prompts) - len(pending)
            for number in range(len(config.prompts)):
                if number not in pending:
                    manifest["prompts"][number]["status"] = "done"
            write_json(folder / MANIFEST, manifest)
        tick = time.perf_counter()
        plan = plan_run(config, model=model)
        phase.payload = {"digest": plan.digest(), "seconds": round(time.perf_counter() - tick, 3),
                         **({"launch": manifest["launch"]["id"], "pending": pending} if ranks.is_main else {})}
    main = phase.records[0]
    with ranks.phase("check the processes agree"):
        if ranks.is_main and any(record["digest"] != main["digest"] for record in phase.records):
            raise RuntimeError("the processes planned different work (different library versions on different "
                               "machines?); every process must run the same versions")
        if not ranks.is_main:
            seen = read_manifest(folder)
            if seen is None or seen.get("launch", {}).get("id") != main["launch"]:
                raise ValueError(f"--out {str(folder)!r} on this process does not show the run the main process is "
                                 "writing: --out must be one folder shared by every process and machine")
    if ranks.is_main:
        manifest["plan"] = plan.summary()
        manifest["timings"]["plan_seconds"] = main["seconds"]
        manifest["counts"].update({key: 0 for key in _RUN_COUNTS})
        manifest["counts"]["per_rank"] = [dict.fromkeys(_RANK_COUNTS, 0) | {"rank": r} for r in range(ranks.size)]
        write_json(folder / MANIFEST, manifest)
    waves = plan.waves(main["pending"], prompts_per_wave or ranks.size)
    with tqdm(total=len(config.prompts), initial=len(config.prompts) - len(main["pending"]), desc="prompts",
              unit="prompt", disable=not show) as bar:
        for wave in waves:
            filled = fill_cache(plan, folder / "cache", model=model, batches=wave.batches, ranks=ranks,
                                progress=show)
            with ranks.phase("explain") as phase:
                tick = time.perf_counter()
                counts = {"images_generated": 0, "images_from_cache": 0}
                entries, deduplicated = {}, 0
                for number in wave.prompts[ranks.rank::ranks.size]:
                    spec, begun = config.prompts[number], time.perf_counter()
                    try:
                        result = explain_prompt(spec, config, model, folder / "cache", counts, progress=show)
                    except Exception as error:  # noqa: BLE001 - one failing prompt must not lose the others
                        words = split_words(spec.prompt)
                        result = PromptRun(spec.prompt, words, word_labels(words), list(config.seeds_for(spec)),
                                           status="failed", error=f"{type(error).__name__}: {error}")
                    save_prompt(folder, number, result)
                    entries[number] = {"status": result.status, "error": result.error,
                                       "seconds": round(time.perf_counter() - begun, 3)}
                    deduplicated += plan.prompts[number].deduplicated
                phase.payload = {"entries": entries, "counts": counts, "deduplicated": deduplicated,
                                 "fill": filled["rank"], "seconds": time.perf_counter() - tick}
            if ranks.is_main:
                _add_wave(manifest, phase.records, filled, started)
                write_json(folder / MANIFEST, manifest)
            bar.update(len(wave.prompts))
    run = None
    with ranks.phase("report"):
        if ranks.is_main:
            manifest["timings"]["finished"] = _now()
            manifest["timings"]["seconds"] = round(time.perf_counter() - started, 3)
            write_json(folder / MANIFEST, manifest)
            run = load_run(folder)
            if report:
                from captum_diffusion.runs.render import write_report

                write_report(run)
    return run if run is not None else Run(folder, read_manifest(folder), [])


#: The manifest's run-wide counts besides images_generated / images_from_cache / prompts_resumed.
_RUN_COUNTS = ("images_planned", "images_cached", "images_recomputed", "images_generated_while_explaining",
               "images_deduplicated")
#: The counts kept per process (``counts["per_rank"]``).
_RANK_COUNTS = ("prompts", "batches", "planned", "generated", "generated_while_explaining", "recomputed",
                "from_cache", "deduplicated", "fill_seconds", "fill_cpu_seconds", "explain_seconds")


def _finished(folder: Path, number: int) -> bool:
    path = prompt_dir(folder, number) / RESULT
    try:
        return path.is_file() and json.loads(path.read_text()).get("status") == "done"
    except (OSError, ValueError):
        return False


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
    manifest["timings"]["seconds"] = round(time.perf_counter() - started, 3)


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
        "prompts": statuses,
    }


def generation_settings(config: RunConfig, model) -> dict:
    """``TextToImage`` keyword arguments from the run's settings and the model's shipped defaults."""
    size = config.size or model.defaults.get("size") or (None, None)
    return {"num_inference_steps": config.steps or model.defaults.get("steps"),
            "guidance_scale": config.guidance if config.guidance is not None else model.defaults.get("guidance"),
            "height": size[0], "width": size[1], "batch_size": config.batch_size,
            "max_sequence_length": config.max_sequence_length}


def subprompt_mask(words: list[str], subprompt: str) -> str:
    """The mask ("1011") of a sub-prompt of ``words``: its words matched to the prompt's, leftmost first."""
    kept, position = ["0"] * len(words), 0
    for word in subprompt.split():
        while words[position] != word:
            position += 1
        kept[position] = "1"
        position += 1
    return "".join(kept)


def explain_prompt(spec: PromptSpec, config: RunConfig, model, cache_dir: Path, counts: dict, *,
                   progress: bool = True) -> PromptRun:
    """One prompt at every seed: word attributions by every method, the scored sub-prompts, attention maps and
    segments as configured. ``counts`` (the manifest's) gets the images generated / read from the cache."""
    from captum_diffusion.generation import TextToImage
    from captum_diffusion.scoring import PromptScore

    words = split_words(spec.prompt)
    seeds = list(config.seeds_for(spec))
    methods = config.methods_for(len(words))
    result = PromptRun(spec.prompt, words, word_labels(words), seeds,
                       payoff=f"cosine similarity ({type(model.scorer).__name__}) between each sub-prompt's image and "
                              "the full prompt's image, same seed and settings")
    values = {m: [] for m in methods}
    base_values = {m: [] for m in methods}
    payoffs, maps, segments, tables = [], [], [], []
    for seed in seeds:
        generator = TextToImage(model.pipeline, seed=seed, cache_dir=cache_dir, progress=progress,
                                **generation_settings(config, model))
        f = PromptScore(generator, model.scorer, spec.prompt)
        image = generator([f.prompt])[0]  # first: a prompt over a token limit is refused naming it, not a sub-prompt
        for method in methods:
            row, base = word_values(method, f, config, seed)
            values[method].append(row)
            base_values[method].append(base)
        payoffs.append(float(f([f.prompt])[0]))
        result.images.append(image)
        scored = sorted(f.scores.items(), key=lambda item: subprompt_mask(words, item[0]))
        result.subprompts.append([SubPrompt(subprompt_mask(words, p), p, v, generator([p])[0]) for p, v in scored])
        if _wants_attention(config, model):
            labels, seed_maps = attention_maps(model.pipeline, generator, spec)
            result.attention_labels = labels
            maps.append(seed_maps)
        if config.segments is not None:
            seed_segments, table, table_words = segment_table(config.segments, image, spec, model.scorer,
                                                              maps[-1] if maps else None)
            segments.append(seed_segments)
            tables.append(table)
            result.table_words = table_words
        counts["images_generated"] += generator.n_generated
        counts["images_from_cache"] += generator.n_from_cache
    result.values = {m: np.array(v, dtype=np.float64) for m, v in values.items()}
    result.base_values = {m: np.array(v, dtype=np.float64) for m, v in base_values.items()}
    result.payoffs = np.array(payoffs, dtype=np.float64)
    result.attention = np.stack(maps).astype(np.float32) if maps else None
    if config.segments is not None:
        result.segments, result.segment_tables = segments, tables
    return result


def word_values(method: str, f, config: RunConfig, seed: int) -> tuple[np.ndarray, float]:
    """``(values (d,), f(""))`` of one word-attribution ``method`` on the game of ``f`` (a ``PromptScore``)."""
    import lime_adapters
    import shap_adapters
    from captum_diffusion.words import WordAttribution

    prompt = f.prompt
    empty = lambda: float(f([""])[0])  # noqa: E731 - after the explainer: its batches decide the images' rounding
    if method.startswith("shap-"):
        explanation = shap_adapters.explain_prompt(prompt, f, algorithm=method[len("shap-"):],
                                                   max_evals=None if method == "shap-exact" else config.max_evals,
                                                   seed=seed, progress=False)
        return np.asarray(explanation.values, dtype=np.float64), float(explanation.base_values)
    if method == "lime":
        explanation = lime_adapters.explain_prompt(prompt, f, num_samples=config.lime_samples, seed=seed)
        return lime_adapters.word_weights(explanation), empty()
    name = method[len("captum-"):]
    options = {}
    if config.max_evals is not None and name in ("shapley_sampling", "kernel_shap", "lime"):
        d = len(prompt.split())
        options["n_samples"] = max(1, config.max_evals // d) if name == "shapley_sampling" else max(2, config.max_evals)
    result = WordAttribution(f, name, seed=seed, progress=False).attribute(prompt, **options)
    return np.asarray(result.seq_attr, dtype=np.float64).reshape(-1), empty()


def _wants_attention(config: RunConfig, model) -> bool:
    if config.attention == "none":
        return False
    from captum_diffusion.attention import attention_family

    try:  # DAAM traces UNet, SD3, FLUX and PixArt pipelines
        attention_family(model.pipeline)
    except TypeError as error:
        if config.attention == "daam":
            raise ValueError(f"--attention daam: {error}") from None
        return False
    return True


def attention_maps(pipeline, generator, spec: PromptSpec) -> tuple[list[str], np.ndarray]:
    """DAAM maps ``(n_words, H, W)`` of the prompt's (or ``spec.words``') words, traced on exactly the generation
    ``generator`` makes for the full prompt (same latents, noise and settings)."""
    from captum_diffusion.attention import DAAM

    result = DAAM(pipeline).explain(spec.prompt, words=None if spec.words is None else list(spec.words),
                                    progress=False, **generator.pipeline_kwargs(1))
    return list(result.words[0]), result.heatmaps[0].numpy()


def segment_table(kind: str, image, spec: PromptSpec, scorer, maps) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(label map (H, W), table (n_segments, n_words), words)`` of the segment-by-word table."""
    from captum_diffusion.image import (DAAMKMeansSegmenter, SAMSegmenter, SuperpixelSegmenter,
                                        segment_word_table)

    words = list(spec.words) if spec.words is not None else None
    if kind == "slic":
        segmenter = SuperpixelSegmenter("slic")
    elif kind == "daam-kmeans":
        if maps is None:
            raise ValueError("--segments daam-kmeans needs attention maps (--attention daam)")
        segmenter = DAAMKMeansSegmenter(maps, n_clusters=min(len(maps) + 1, 8))
    else:
        segmenter = SAMSegmenter(checkpoint=kind[len("sam:"):])
    table = segment_word_table(image, spec.prompt, scorer, segmenter=segmenter, words=words)
    return table.segments, table.values, list(table.words)
