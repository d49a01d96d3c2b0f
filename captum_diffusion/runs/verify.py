"""A run folder that checks itself: the sha256 of every file a run wrote, and what is wrong with a damaged one.

``checksums.json`` beside ``manifest.json`` records, for every saved prompt, the sha256 of each file of its folder
(``result.json``, images, sub-prompt images, safetensors) and a digest of the settings that made them. The main
process rewrites it (atomically) after each wave, so it lists every finished prompt.

:func:`verify_run` reads a run folder and returns a :class:`Verification`: one :class:`Damage` per problem, naming
the file and what is wrong (missing, changed since written, truncated, NaN or inf values, shapes that disagree with
the seeds and words, a result of another prompt). A prompt whose files match their recorded sha256 is trusted as
written; a prompt without recorded checksums (a run saved before them, or a process killed between writing a
prompt and recording it) is checked by reading every file.

What a damaged prompt becomes (the decision): :func:`captum_diffusion.runs.store.load_run` loads the rest of the
run and gives the damaged prompt status ``"damaged"``, its error naming the files, and no values; ``show`` and the
report show it as damaged, never as done; ``diffusion-explain verify DIR`` lists the damage and exits 1; rerunning
the same ``explain`` command redoes only the damaged prompts, from the image cache (nothing is regenerated unless
the cache lost it too).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from captum_diffusion.files import atomic_write

__all__ = ["CHECKSUMS", "Damage", "DamagedRun", "Verification", "settings_digest", "record_checksums",
           "read_checksums", "settle_prompts", "prompt_damage", "content_damage", "verify_run", "sha256_file",
           "expected_specs", "read_manifest", "MANIFEST"]

#: The checksum file, beside ``manifest.json``.
CHECKSUMS = "checksums.json"
#: Format of :data:`CHECKSUMS`.
CHECKSUMS_FORMAT = 1
#: The run's manifest, beside :data:`CHECKSUMS`.
MANIFEST = "manifest.json"


class DamagedRun(ValueError):
    """A run folder whose ``manifest.json`` (or ``checksums.json``) cannot be read; the message names the file."""


@dataclass(frozen=True)
class Damage:
    """One problem of a run folder.

    Parameters
    ----------
    file : str
        The damaged file or folder, relative to the run folder (``"prompts/000/image-seed-0.png"``).
    problem : str
        What is wrong, in a few words.
    prompt : int or None
        The prompt it belongs to (``None``: the run's own files).
    """

    file: str
    problem: str
    prompt: int | None = None

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}"


@dataclass
class Verification:
    """What :func:`verify_run` found: ``damage`` (empty when the folder is whole) and ``checked`` prompts."""

    directory: Path
    damage: list[Damage] = field(default_factory=list)
    checked: int = 0

    @property
    def ok(self) -> bool:
        """Whether nothing is damaged."""
        return not self.damage

    def damaged_prompts(self) -> dict[int, list[Damage]]:
        """Damage per prompt number."""
        found: dict[int, list[Damage]] = {}
        for item in self.damage:
            if item.prompt is not None:
                found.setdefault(item.prompt, []).append(item)
        return found

    def summary(self) -> str:
        """A plain-text account: one line per problem, or that the folder is whole."""
        if self.ok:
            return f"{self.directory}: {self.checked} prompt(s) checked, no damage"
        lines = [f"{self.directory}: {len(self.damage)} problem(s) in {self.checked} prompt(s) checked"]
        lines += [f"  {item}" for item in self.damage]
        lines.append("rerun the same `diffusion-explain explain` command to redo the damaged prompts from the cache")
        return "\n".join(lines)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def settings_digest(settings: dict) -> str:
    """A sha256 of a run's settings (``RunConfig.settings()``), as :data:`CHECKSUMS` records it."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _prompt_files(folder: Path) -> list[Path]:
    """Every finished file of a prompt folder (temporary files, hidden, left out), ``result.json`` last."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return sorted(files, key=lambda p: p.name == "result.json")


def read_checksums(directory) -> dict:
    """The run's :data:`CHECKSUMS` as ``{"settings": digest or None, "prompts": {"000": {file: sha256}}}``.

    Raises
    ------
    DamagedRun
        When the file exists but is not a checksum file.
    """
    path = Path(directory) / CHECKSUMS
    if not path.is_file():
        return {"settings": None, "prompts": {}}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("prompts"), dict):
            raise ValueError("no 'prompts' table")
    except (OSError, ValueError) as error:
        raise DamagedRun(f"{path} is damaged ({error}); rerun the same command to rebuild it") from None
    return data


def record_checksums(directory, numbers, settings: dict, *, replace: bool = False) -> None:
    """Record the sha256 of every file of the prompts ``numbers`` in :data:`CHECKSUMS` (atomically).

    Parameters
    ----------
    directory : str or os.PathLike
        The run folder.
    numbers : iterable of int
        Prompts just saved (their folders ``prompts/NNN``).
    settings : dict
        The run's ``RunConfig.settings()``: its digest is recorded; prompts recorded under other settings are
        dropped.
    replace : bool, optional
        Drop every other prompt's checksums too (the file then lists exactly ``numbers``).
    """
    directory, digest = Path(directory), settings_digest(settings)
    try:
        data = read_checksums(directory)
    except DamagedRun:
        data = {"settings": None, "prompts": {}}
    prompts = data["prompts"] if data.get("settings") == digest and not replace else {}
    for number in numbers:
        folder = directory / "prompts" / f"{number:03d}"
        prompts[f"{number:03d}"] = {p.relative_to(folder).as_posix(): sha256_file(p) for p in _prompt_files(folder)}
    payload = {"format": CHECKSUMS_FORMAT, "settings": digest, "prompts": dict(sorted(prompts.items()))}
    atomic_write(directory / CHECKSUMS, json.dumps(payload, indent=1).encode())


def _changed(folder: Path, expected: dict, name: str) -> list[Damage]:
    """Damage of files whose bytes differ from their recorded sha256."""
    found = []
    for file, digest in expected.items():
        path = folder / file
        where = f"prompts/{folder.name}/{file}"
        if not path.is_file():
            found.append(Damage(where, "missing", int(folder.name)))
        elif sha256_file(path) != digest:
            found.append(Damage(where, f"changed since it was written (sha256 differs from {name}: truncated, "
                                       "replaced or edited)", int(folder.name)))
    return found


def prompt_damage(directory, number: int, spec: dict | None, expected: dict | None) -> list[Damage]:
    """What is wrong with the saved prompt ``number``.

    Parameters
    ----------
    directory : str or os.PathLike
        The run folder.
    number : int
        The prompt's number (folder ``prompts/NNN``).
    spec : dict or None
        What the run asked of it: ``{"prompt": str, "seeds": [int]}`` (``None``: not known, not compared).
    expected : dict or None
        Its recorded ``{file: sha256}`` (``None``: none recorded, every file is read and checked).

    Returns
    -------
    list of Damage
        Empty when its files are whole: they match the recorded sha256, or (none recorded) they read back with
        the shapes the seeds and words give and finite values.
    """
    folder = Path(directory) / "prompts" / f"{number:03d}"
    if not folder.is_dir():
        return [Damage(f"prompts/{number:03d}", "missing", number)]
    changed = [] if expected is None else _changed(folder, expected, CHECKSUMS)
    if expected is not None and not changed:
        return []
    return changed + content_damage(folder, number, spec)


def expected_specs(manifest: dict) -> list[dict]:
    """``{"prompt", "seeds"}`` of every prompt of a manifest (its config's prompts, else its prompt list; seeds
    ``None`` when not known)."""
    config = manifest.get("config") or {}
    asked = config.get("prompts") or [{"prompt": entry.get("prompt")} for entry in manifest.get("prompts") or []
                                      if isinstance(entry, dict)]
    return [{"prompt": p.get("prompt"), "seeds": p.get("seeds", config.get("seeds"))} for p in asked]


def verify_run(directory) -> Verification:
    """Check a run folder: its manifest, its checksums and every saved prompt.

    Parameters
    ----------
    directory : str or os.PathLike
        The run folder.

    Returns
    -------
    Verification
        One :class:`Damage` per problem. A prompt the manifest calls done but whose folder is missing is damage;
        a pending prompt without a folder is not.

    Raises
    ------
    ValueError
        When ``directory`` holds no run (no ``manifest.json``).
    """
    directory = Path(directory)
    report = Verification(directory)
    try:
        manifest = read_manifest(directory)
    except DamagedRun as error:
        reason = str(error).split(" is damaged (", 1)[-1].split("); rerun", 1)[0]
        report.damage.append(Damage("manifest.json", f"cannot be read ({reason})"))
        return report
    if manifest is None:
        raise ValueError(f"{str(directory)!r} holds no saved run (no manifest.json)")
    try:
        recorded = read_checksums(directory)
    except DamagedRun:
        report.damage.append(Damage(CHECKSUMS, "cannot be read; every prompt is checked file by file"))
        recorded = {"settings": None, "prompts": {}}
    report.damage += _manifest_damage(manifest, recorded)
    for number, spec in enumerate(expected_specs(manifest)):
        report.damage += _check_one(directory, number, spec, manifest, recorded)
        report.checked += 1
    return report


def _manifest_damage(manifest: dict, recorded: dict) -> list[Damage]:
    """The manifest's own problems: settings other than those the results were written with."""
    if recorded.get("settings") and recorded["settings"] != settings_digest(manifest.get("config") or {}):
        from captum_diffusion.runs.config import saved_settings

        settings = saved_settings(manifest)
        if settings is None or settings_digest(settings) != recorded["settings"]:
            return [Damage("manifest.json", f"its settings differ from those the results were written with "
                                            f"({CHECKSUMS}): edited")]
    return []


def _check_one(directory: Path, number: int, spec: dict, manifest: dict, recorded: dict) -> list[Damage]:
    """Damage of one prompt of a run (nothing for a prompt not yet written)."""
    entries = manifest.get("prompts") or []
    status = entries[number].get("status") if number < len(entries) and isinstance(entries[number], dict) else None
    expected = recorded["prompts"].get(f"{number:03d}")
    folder = directory / "prompts" / f"{number:03d}"
    if not folder.exists() and expected is None and status != "done":
        return []
    return prompt_damage(directory, number, spec, expected)


def finite(values) -> bool:
    """Whether every number of a nested list is a finite float (``None`` counts as not finite)."""
    if isinstance(values, (list, tuple)):
        return all(finite(v) for v in values)
    return isinstance(values, (int, float)) and not isinstance(values, bool) and math.isfinite(values)


def _shape_problem(name: str, values, shape: tuple[int, ...]) -> str | None:
    """Why ``values`` (nested lists from JSON) are not finite floats of ``shape``, or ``None``."""
    import numpy as np

    try:
        array = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        return f"{name} is not an array of numbers"
    if array.shape != shape:
        return f"{name} has shape {array.shape}, the seeds and words give {shape}"
    if not finite(values):
        return f"{name} holds NaN or inf"
    return None


def _result_problems(data: dict, spec: dict | None) -> list[str]:
    """What is wrong inside a prompt's ``result.json`` (shapes against its seeds and words, finite values, the
    prompt and seeds the run asked for)."""
    problems = []
    if spec is not None and spec.get("prompt") is not None and data.get("prompt") != spec["prompt"]:
        problems.append(f"holds the result of prompt {data.get('prompt')!r}, not {spec['prompt']!r}")
    if spec is not None and spec.get("seeds") is not None and data.get("seeds") != list(spec["seeds"]):
        problems.append(f"holds seeds {data.get('seeds')}, the run asked for {spec.get('seeds')}")
    if data.get("status") != "done":
        return problems
    n, d = len(data["seeds"]), len(data["words"])
    if len(data["labels"]) != d:
        problems.append(f"labels has {len(data['labels'])} entries for {d} words")
    for method, values in data["values"].items():
        problems.append(_shape_problem(f"values of {method!r}", values, (n, d)))
        problems.append(_shape_problem(f"base_values of {method!r}", data["base_values"].get(method), (n,)))
    if data.get("payoffs") is not None:
        problems.append(_shape_problem("payoffs", data["payoffs"], (n,)))
    payoffs = [entry["payoff"] for entry in data.get("subprompts", [])]
    if not finite(payoffs):
        problems.append("a sub-prompt's payoff is NaN or inf")
    return [p for p in problems if p]


def _image_problem(path: Path) -> str | None:
    """Why the image at ``path`` cannot be read whole, or ``None``."""
    import PIL.Image

    if not path.is_file():
        return "missing"
    try:
        with PIL.Image.open(path) as image:
            image.load()
    except (OSError, ValueError, SyntaxError) as error:
        return f"not a readable image ({error})"
    return None


def _tensor_problems(folder: Path, data: dict) -> dict[str, str]:
    """``{file: problem}`` of the prompt's safetensors (shapes against its seeds and mapped words)."""
    import numpy as np
    from safetensors.numpy import load_file

    n, found = len(data["seeds"]), {}
    wanted = {"attention.safetensors": data.get("attention_labels"), "segments.safetensors": data.get("table_words")}
    for name, labels in wanted.items():
        path = folder / name
        if labels is None and not path.exists():
            continue
        try:
            tensors = load_file(path)
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
            found[name] = "missing" if not path.exists() else f"cannot be read ({type(error).__name__}: {error})"
            continue
        if name == "attention.safetensors":
            maps = tensors.get("maps")
            if maps is None or maps.ndim != 4 or maps.shape[:2] != (n, len(labels)):
                shape = None if maps is None else maps.shape
                found[name] = f"maps have shape {shape}, expected ({n}, {len(labels)}, H, W)"
            elif not np.isfinite(maps).all():
                found[name] = "maps hold NaN or inf"
            continue
        for seed in data["seeds"]:
            table = tensors.get(f"table_seed_{seed}")
            fits = table is not None and table.ndim == 2 and table.shape[1] == len(labels)
            if f"labels_seed_{seed}" not in tensors or not fits:
                found[name] = f"the segments of seed {seed} are missing or have the wrong shape"
            elif not np.isfinite(table).all():
                found[name] = f"table_seed_{seed} holds NaN or inf"
    return found


def content_damage(folder: Path, number: int, spec: dict | None) -> list[Damage]:
    """Damage found by reading every file of a prompt folder (no checksums needed).

    Parameters
    ----------
    folder : pathlib.Path
        ``prompts/NNN``.
    number : int
        The prompt's number.
    spec : dict or None
        ``{"prompt", "seeds"}`` the run asked for (``None``: not compared).

    Returns
    -------
    list of Damage
        ``result.json`` unreadable, another prompt's or seeds', wrong shapes or NaN / inf values; images missing
        or truncated; safetensors unreadable or of the wrong shape.
    """
    where = f"prompts/{number:03d}"
    try:
        data = json.loads((folder / "result.json").read_text())
        problems = _result_problems(data, spec)
    except FileNotFoundError:
        return [Damage(f"{where}/result.json", "missing", number)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return [Damage(f"{where}/result.json", f"cannot be read (truncated or edited: {type(error).__name__}: "
                                              f"{error})", number)]
    found = [Damage(f"{where}/result.json", problem, number) for problem in problems]
    if data.get("status") != "done":
        return found
    files = [f"image-seed-{seed}.png" for seed in data["seeds"]]
    files += [entry["file"] for entry in data.get("subprompts", []) if entry.get("file")]
    for file in files:
        problem = _image_problem(folder / file)
        if problem:
            found.append(Damage(f"{where}/{file}", problem, number))
    found += [Damage(f"{where}/{file}", problem, number) for file, problem in _tensor_problems(folder, data).items()]
    return found


def settle_prompts(directory, config) -> list[int]:
    """Before a run resumes in ``directory``: the prompts still to explain, and ``checksums.json`` made exact.

    A prompt is finished when its ``result.json`` says done and :func:`prompt_damage` finds nothing (against the
    checksums recorded under ``config``'s settings, else by reading its files). A damaged prompt's folder is
    removed, so that it is redone from the image cache; :data:`CHECKSUMS` is rewritten to list exactly the finished
    prompts.

    Parameters
    ----------
    directory : pathlib.Path
        The run folder.
    config : RunConfig
        The run.

    Returns
    -------
    list of int
        The numbers of the prompts to explain, ascending.
    """
    import shutil

    settings = config.settings()
    try:
        recorded = read_checksums(directory)
    except DamagedRun:
        recorded = {"settings": None, "prompts": {}}
    if recorded.get("settings") != settings_digest(settings):
        recorded = {"settings": None, "prompts": {}}
    finished, pending = [], []
    for number, spec in enumerate(config.prompts):
        folder = Path(directory) / "prompts" / f"{number:03d}"
        expected = recorded["prompts"].get(f"{number:03d}")
        asked = {"prompt": spec.prompt, "seeds": list(config.seeds_for(spec))}
        if _says_done(folder) and not prompt_damage(directory, number, asked, expected):
            finished.append(number)
            continue
        pending.append(number)
        if folder.exists():
            shutil.rmtree(folder)
    record_checksums(directory, finished, settings, replace=True)
    return pending


def _says_done(folder: Path) -> bool:
    """Whether ``folder/result.json`` reads and says done."""
    try:
        return json.loads((folder / "result.json").read_text()).get("status") == "done"
    except (OSError, ValueError, AttributeError):
        return False


def read_manifest(directory) -> dict | None:
    """The run's manifest, or ``None`` when ``directory`` holds no run.

    Raises
    ------
    DamagedRun
        A ``ValueError`` naming the file, when ``manifest.json`` is truncated or not a manifest.
    """
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or not isinstance(manifest.get("prompts"), list):
            raise ValueError("no 'prompts' list")
    except (OSError, ValueError) as error:
        raise DamagedRun(f"{path} is damaged ({error}); rerun the same `diffusion-explain explain` command to "
                         "rebuild it (its prompts and image cache are kept), or pass --force to replace it") from None
    return manifest
