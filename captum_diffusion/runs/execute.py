"""Run a configuration: every prompt, every seed, every requested explainer, saved as it goes.

``explain_run(config, out)`` is what ``diffusion-explain explain`` calls. Each prompt's results are written as soon
as they are done and the images live in ``out/cache``, so a run that is killed resumes where it stopped: finished
prompts are read back, and no image is generated twice.
"""
from __future__ import annotations

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
        if manifest.get("config") == config.settings():
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
    import os

    if not os.access(probe, os.W_OK | os.X_OK) or not probe.is_dir():
        raise ValueError(f"--out {str(folder)!r} cannot be written ({str(probe)!r} is not a writable folder)")
    return folder, False


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
                progress: bool = True, report: bool = True) -> Run:
    """Explain every prompt of ``config`` and save the run in ``out`` (see ``captum_diffusion.runs.store``).

    Resumes a run with the same settings in ``out``; refuses another run's folder unless ``force`` (then its
    results are replaced, its image cache kept). A prompt that raises is recorded as failed with its error and the
    run goes on. Returns the loaded :class:`~captum_diffusion.runs.store.Run`; writes ``report.html`` when
    ``report``.
    """
    from captum_diffusion.runs.models import load_model

    folder, resuming = check_output_folder(out, config, force=force)
    started = time.perf_counter()
    model = load_model(config.model, config.clip, device=config.device, dtype=config.dtype)
    load_seconds = time.perf_counter() - started
    if not resuming and (folder / "prompts").exists():
        shutil.rmtree(folder / "prompts")
    folder.mkdir(parents=True, exist_ok=True)
    previous = read_manifest(folder) if resuming else None
    manifest = _manifest(config, model, command, previous)
    manifest["timings"]["model_load_seconds"] = load_seconds
    write_json(folder / MANIFEST, manifest)
    counts = manifest["counts"]
    with tqdm(total=len(config.prompts), desc="prompts", unit="prompt", disable=not progress) as bar:
        for number, spec in enumerate(config.prompts):
            entry = manifest["prompts"][number]
            if (prompt_dir(folder, number) / RESULT).is_file() and entry["status"] == "done":
                counts["prompts_resumed"] += 1
                bar.update(1)
                continue
            tick = time.perf_counter()
            try:
                result = explain_prompt(spec, config, model, folder / "cache", counts, progress=progress)
            except Exception as error:  # noqa: BLE001 - one failing prompt must not lose the others
                result = PromptRun(spec.prompt, split_words(spec.prompt), word_labels(split_words(spec.prompt)),
                                   list(config.seeds_for(spec)), status="failed", error=f"{type(error).__name__}: {error}")
            save_prompt(folder, number, result)
            entry.update(status=result.status, error=result.error, seconds=round(time.perf_counter() - tick, 3))
            manifest["timings"]["seconds"] = round(time.perf_counter() - started, 3)
            write_json(folder / MANIFEST, manifest)
            bar.update(1)
    manifest["timings"]["finished"] = _now()
    manifest["timings"]["seconds"] = round(time.perf_counter() - started, 3)
    write_json(folder / MANIFEST, manifest)
    run = load_run(folder)
    if report:
        from captum_diffusion.runs.render import write_report

        write_report(run)
    return run


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
            "height": size[0], "width": size[1], "batch_size": config.batch_size}


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
        for method in methods:
            row, base = word_values(method, f, config, seed)
            values[method].append(row)
            base_values[method].append(base)
        payoffs.append(float(f([f.prompt])[0]))
        image = generator([f.prompt])[0]
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
    has_unet = getattr(model.pipeline, "unet", None) is not None
    if config.attention == "daam" and not has_unet:
        raise ValueError(f"--attention daam needs a UNet pipeline; {type(model.pipeline).__name__} has none")
    return has_unet


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
