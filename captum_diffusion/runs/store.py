"""A saved run: one folder that reloads exactly, years later, without the model.

Layout of ``DIR``::

    manifest.json                 versions, model identity, scheduler, settings, command line, counts, timings,
                                  per-prompt status (done / failed with the error)
    report.html                   the self-contained report (``diffusion-explain report DIR`` re-renders it)
    cache/                        the image cache (lossless PNG + JSON): a resumed run generates nothing twice
    prompts/NNN/result.json       prompt, words, labels, seeds, per-method values per seed, base values, payoffs
    prompts/NNN/image-seed-S.png  the full prompt's image at seed S
    prompts/NNN/subprompts/seed-S/<mask>.png   every sub-prompt image scored; <mask> is one 0/1 digit per word
                                  (1 = kept), so file names sort in mask order; result.json's "subprompts" maps
                                  masks to words, files and payoffs
    prompts/NNN/attention.safetensors   "maps": float32 (n_seeds, n_words, H, W) DAAM maps (labels in result.json)
    prompts/NNN/segments.safetensors    "labels_seed_S": int64 (H, W); "table_seed_S": float64 (n_segments, n_words)

Floats are written by ``json`` as their shortest round-tripping repr and arrays as safetensors, so what is
loaded equals what was computed, bit for bit.
"""
from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from captum_diffusion import checks
from captum_diffusion.convert import as_rgb_image
from captum_diffusion.files import atomic_write

MANIFEST = "manifest.json"
RESULT = "result.json"


@dataclass
class SubPrompt:
    """One scored sub-prompt: ``mask`` ("1011": word ``j`` kept iff character ``j`` is 1), its text, its payoff."""

    mask: str
    prompt: str
    payoff: float
    image: PIL.Image.Image | None = field(default=None, repr=False, compare=False)


@dataclass
class PromptRun:
    """Everything a run found for one prompt.

    ``values[method]`` float64 ``(n_seeds, n_words)`` and ``base_values[method]`` ``(n_seeds,)`` (the empty
    prompt's payoff) per word-attribution method; ``payoffs`` ``(n_seeds,)`` the full prompt's payoff (1 for an
    image compared with itself). ``images[s]``: the full prompt's image at ``seeds[s]``; ``subprompts[s]``: the
    sub-prompts scored at that seed. ``attention`` float32 ``(n_seeds, len(attention_labels), H, W)``;
    ``segments[s]`` int64 ``(H, W)`` label maps and ``segment_tables[s]`` ``(n_segments, len(table_words))``.
    """

    prompt: str
    words: list[str]
    labels: list[str]
    seeds: list[int]
    status: str = "done"
    error: str | None = None
    payoff: str = ""
    values: dict[str, np.ndarray] = field(default_factory=dict)
    base_values: dict[str, np.ndarray] = field(default_factory=dict)
    payoffs: np.ndarray | None = None
    images: list = field(default_factory=list, repr=False)
    subprompts: list[list[SubPrompt]] = field(default_factory=list, repr=False)
    attention: np.ndarray | None = field(default=None, repr=False)
    attention_labels: list[str] | None = None
    segments: list[np.ndarray] | None = field(default=None, repr=False)
    segment_tables: list[np.ndarray] | None = field(default=None, repr=False)
    table_words: list[str] | None = None

    @property
    def methods(self) -> list[str]:
        return list(self.values)

    def explanation(self, method: str, seed: int | None = None):
        """The ``shap.Explanation`` of ``method`` at ``seed`` (one of ``seeds``), or averaged over the seeds
        (``None``: the value of the seed-averaged game for Shapley methods). ``.data`` the words,
        ``.feature_names`` their labels, ``.base_values`` the empty prompt's payoff."""
        import shap

        if method not in self.values:
            raise ValueError(f"method {method!r} was not run for {self.prompt!r}; it has {self.methods}")
        if seed is None:
            values, base = self.values[method].mean(0), float(self.base_values[method].mean())
        else:
            if seed not in self.seeds:
                raise ValueError(f"seed {seed!r} is not a seed of this run; its seeds are {self.seeds}")
            row = self.seeds.index(seed)
            values, base = self.values[method][row], float(self.base_values[method][row])
        return shap.Explanation(values=np.array(values, dtype=np.float64), base_values=base,
                                data=np.array(self.words, dtype=object), feature_names=list(self.labels))


@dataclass
class Run:
    """A loaded run: ``manifest`` (dict, see ``manifest.json``) and one :class:`PromptRun` per prompt."""

    directory: Path
    manifest: dict
    prompts: list[PromptRun]

    def __getitem__(self, index: int) -> PromptRun:
        return self.prompts[checks.index(index, len(self.prompts), "index (a prompt number)")]

    def __len__(self) -> int:
        return len(self.prompts)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path``, atomically (:func:`captum_diffusion.files.atomic_write`)."""
    atomic_write(path, json.dumps(data, indent=1, sort_keys=False).encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Deprecated: :func:`captum_diffusion.files.atomic_write` (the one atomic write of the package) takes bytes."""
    warnings.warn("captum_diffusion.runs.store.atomic_write_bytes is deprecated; use captum_diffusion.files."
                  "atomic_write", DeprecationWarning, stacklevel=2)
    atomic_write(path, data)


def played_game(result: PromptRun):
    """The seed-averaged word game of ``result``, read from its stored sub-prompt payoffs.

    Parameters
    ----------
    result : PromptRun
        A loaded prompt.

    Returns
    -------
    captum_diffusion.words.WordGame or None
        The game whose payoff is the mean over the seeds of each sub-prompt's stored payoff; ``None`` unless every
        one of the ``2**n_words`` sub-prompts was scored at every seed (exact SHAP scores them all). Reading it
        generates nothing.
    """
    from captum_diffusion.words import WordGame

    tables = [{entry.prompt: entry.payoff for entry in seed} for seed in result.subprompts]
    d = len(result.words)
    if not tables or len(tables) != len(result.seeds) or any(len(table) < 2 ** d for table in tables):
        return None  # too few payoffs stored (checked before listing 2**d sub-prompts)
    every = {" ".join(w for w, keep in zip(result.words, mask) if keep)
             for mask in itertools.product((False, True), repeat=d)}
    if any(not every <= table.keys() for table in tables):
        return None
    return WordGame(lambda prompts: np.mean([[table[p] for p in prompts] for table in tables], axis=0), result.words)


def _png_bytes(image) -> bytes:
    import io

    buffer = io.BytesIO()
    as_rgb_image(image).save(buffer, format="PNG")
    return buffer.getvalue()


def prompt_dir(directory: Path, number: int) -> Path:
    return Path(directory) / "prompts" / f"{number:03d}"


def save_prompt(directory: Path, number: int, result: PromptRun) -> None:
    """Write one prompt's files; ``result.json`` last, so a prompt with a result file is complete."""
    from safetensors.numpy import save

    folder = prompt_dir(directory, number)
    folder.mkdir(parents=True, exist_ok=True)
    for seed, image in zip(result.seeds, result.images):
        atomic_write(folder / f"image-seed-{seed}.png", _png_bytes(image))
    index = []
    for seed, entries in zip(result.seeds, result.subprompts):
        for entry in entries:
            file = f"subprompts/seed-{seed}/{entry.mask}.png"
            if entry.image is not None:
                atomic_write(folder / file, _png_bytes(entry.image))
            index.append({"seed": seed, "mask": entry.mask, "prompt": entry.prompt, "payoff": entry.payoff,
                          "file": file if entry.image is not None else None})
    if result.attention is not None:
        atomic_write(folder / "attention.safetensors",
                           save({"maps": np.ascontiguousarray(result.attention, dtype=np.float32)}))
    if result.segments is not None:
        tensors = {}
        for seed, labels, table in zip(result.seeds, result.segments, result.segment_tables):
            tensors[f"labels_seed_{seed}"] = np.ascontiguousarray(labels, dtype=np.int64)
            tensors[f"table_seed_{seed}"] = np.ascontiguousarray(table, dtype=np.float64)
        atomic_write(folder / "segments.safetensors", save(tensors))
    write_json(folder / RESULT, {
        "prompt": result.prompt, "words": result.words, "labels": result.labels, "seeds": result.seeds,
        "status": result.status, "error": result.error, "payoff": result.payoff,
        "values": {m: v.tolist() for m, v in result.values.items()},
        "base_values": {m: v.tolist() for m, v in result.base_values.items()},
        "payoffs": None if result.payoffs is None else result.payoffs.tolist(),
        "subprompts": index, "attention_labels": result.attention_labels, "table_words": result.table_words,
    })


def load_prompt(folder: Path) -> PromptRun:
    """Read one prompt's files back into a :class:`PromptRun` (images opened and loaded)."""
    from safetensors.numpy import load_file

    data = json.loads((folder / RESULT).read_text())
    seeds = data["seeds"]
    result = PromptRun(prompt=data["prompt"], words=data["words"], labels=data["labels"], seeds=seeds,
                       status=data["status"], error=data["error"], payoff=data["payoff"],
                       values={m: np.array(v, dtype=np.float64).reshape(len(seeds), -1)
                               for m, v in data["values"].items()},
                       base_values={m: np.array(v, dtype=np.float64) for m, v in data["base_values"].items()},
                       payoffs=None if data["payoffs"] is None else np.array(data["payoffs"], dtype=np.float64),
                       attention_labels=data["attention_labels"], table_words=data["table_words"])
    if result.status != "done":
        return result
    result.images = [_open(folder / f"image-seed-{seed}.png") for seed in seeds]
    result.subprompts = [[SubPrompt(e["mask"], e["prompt"], e["payoff"], _open(folder / e["file"]) if e["file"] else None)
                          for e in data["subprompts"] if e["seed"] == seed] for seed in seeds]
    if (folder / "attention.safetensors").exists():
        result.attention = load_file(folder / "attention.safetensors")["maps"]
    if (folder / "segments.safetensors").exists():
        tensors = load_file(folder / "segments.safetensors")
        result.segments = [tensors[f"labels_seed_{seed}"] for seed in seeds]
        result.segment_tables = [tensors[f"table_seed_{seed}"] for seed in seeds]
    return result


def _open(path: Path) -> PIL.Image.Image:
    with PIL.Image.open(path) as image:
        return image.convert("RGB")


def read_manifest(directory) -> dict | None:
    """The run's manifest, or ``None`` when ``directory`` holds no run."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def load_run(directory) -> Run:
    """Load a saved run (see the module docstring): a :class:`Run` whose prompts equal the computed ones.

    Prompts still missing (an interrupted run) are left out; ``run.manifest["prompts"]`` lists every prompt
    with its status."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        raise ValueError(f"{str(directory)!r} holds no saved run (no {MANIFEST}); run `diffusion-explain explain "
                         f"... --out {directory}` first")
    prompts = []
    for number, _ in enumerate(manifest["prompts"]):
        folder = prompt_dir(directory, number)
        if (folder / RESULT).is_file():
            prompts.append(load_prompt(folder))
    return Run(directory, manifest, prompts)
