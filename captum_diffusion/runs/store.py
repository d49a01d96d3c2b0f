"""A saved run: one folder that reloads exactly, years later, without the model.

Layout of ``DIR``::

    manifest.json                 versions, model identity, scheduler, settings, command line, counts, timings,
                                  per-prompt status (done / failed with the error)
    report.html                   the report (``diffusion-explain report DIR`` re-renders it): one self-contained
                                  file up to 20 prompts, else an index page beside report/NNN.html per prompt
    cache/                        the image cache (lossless PNG + JSON): a resumed run generates nothing twice
    prompts/NNN/result.json       prompt, words, labels, seeds, per-method values per seed, base values, payoffs,
                                  per-method standard errors of the seed-averaged values (``null`` = not known),
                                  their degrees of freedom (``null`` = normal), where they come from and the
                                  estimator's error covariance where it gave one
    prompts/NNN/image-seed-S.png  the full prompt's image at seed S
    prompts/NNN/subprompts/seed-S/<mask>.png   every sub-prompt image scored; <mask> is one 0/1 digit per word
                                  (1 = kept), so file names sort in mask order; result.json's "subprompts" maps
                                  masks to words, files and payoffs
    prompts/NNN/attention.safetensors   "maps": float32 (n_seeds, n_words, H, W) DAAM maps (labels in result.json)
    prompts/NNN/segments.safetensors    "labels_seed_S": int64 (H, W); "table_seed_S": float64 (n_segments, n_words)

Floats are written by ``json`` as their shortest round-tripping repr and arrays as safetensors, so what is
loaded equals what was computed, bit for bit.

Certainty: every method's seed-averaged values ``(d,)`` carry standard errors ``(d,)`` (:attr:`PromptRun.
standard_errors`). A method that states its own (e.g. the multi-fidelity estimator's ``ShapleyEstimate``) is stored
with :meth:`PromptRun.set_standard_errors` or ``save_prompt(..., standard_errors=...)``; for the others they are
derived (:func:`derived_standard_errors`): between seeds with two or more seeds, zero for an exact method at one
seed (exact for that seed), unknown (NaN) for a sampled method at one seed. Runs saved before this load with
them derived.
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
from captum_diffusion.runs.verify import MANIFEST, read_manifest

RESULT = "result.json"


#: Methods whose values are exact for a seed: computed from every sub-prompt they need, with no sampling (one seed
#: gives them standard error 0, "exact for seed S"). Others are sampled: at one seed their error is unknown.
EXACT_METHODS = frozenset({"shap-exact", "captum-shapley_values", "captum-feature_ablation"})

#: Where a method's standard errors come from (``PromptRun.error_sources``).
ERROR_SOURCES = {
    "estimator": "stated by the method's estimator",
    "seeds": "between seeds: std(values per seed, ddof=1) / sqrt(n_seeds)",
    "exact": "exact for the one seed run: standard error 0",
    "unknown": "a sampled method at one seed: not known (NaN)",
}


@dataclass
class SubPrompt:
    """One scored sub-prompt: ``mask`` ("1011": word ``j`` kept iff character ``j`` is 1), its text, its payoff,
    its image (``None`` when not kept, or not loaded) and ``file``, the image's path inside the prompt's folder
    (``None`` when not saved)."""

    mask: str
    prompt: str
    payoff: float
    image: PIL.Image.Image | None = field(default=None, repr=False, compare=False)
    file: str | None = field(default=None, repr=False, compare=False)


def derived_standard_errors(values, method: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Standard errors of a method's seed-averaged values when the method stated none.

    Parameters
    ----------
    values : array_like
        float ``(n_seeds, d)``: the method's values per seed, payoff units.
    method : str
        The method's name; :data:`EXACT_METHODS` are exact for a seed.

    Returns
    -------
    standard_errors : numpy.ndarray
        float64 ``(d,)``, payoff units: with ``n_seeds >= 2`` the between-seed standard error
        ``std(values, ddof=1) / sqrt(n_seeds)``; with one seed 0 for an exact method, NaN (unknown) otherwise.
    degrees_of_freedom : numpy.ndarray
        float64 ``(d,)``: ``n_seeds - 1`` for between-seed errors (Student t intervals), ``inf`` otherwise.
    source : str
        A key of :data:`ERROR_SOURCES`: ``"seeds"``, ``"exact"`` or ``"unknown"``.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 1:
        raise ValueError(f"values must be (n_seeds, d) with n_seeds >= 1, got shape {values.shape}")
    n, d = values.shape
    if n >= 2:
        return values.std(axis=0, ddof=1) / np.sqrt(n), np.full(d, n - 1.0), "seeds"
    if method in EXACT_METHODS:
        return np.zeros(d), np.full(d, np.inf), "exact"
    return np.full(d, np.nan), np.full(d, np.inf), "unknown"


@dataclass
class PromptRun:
    """Everything a run found for one prompt.

    ``values[method]`` float64 ``(n_seeds, n_words)`` and ``base_values[method]`` ``(n_seeds,)`` (the empty
    prompt's payoff) per word-attribution method; ``payoffs`` ``(n_seeds,)`` the full prompt's payoff (1 for an
    image compared with itself). ``images[s]``: the full prompt's image at ``seeds[s]``; ``subprompts[s]``: the
    sub-prompts scored at that seed. ``attention`` float32 ``(n_seeds, len(attention_labels), H, W)``;
    ``segments[s]`` int64 ``(H, W)`` label maps and ``segment_tables[s]`` ``(n_segments, len(table_words))``.

    Certainty: ``standard_errors[method]`` float64 ``(n_words,)`` (payoff units; NaN = not known) of the
    seed-averaged values ``values[method].mean(0)``, ``degrees_of_freedom[method]`` ``(n_words,)`` (``inf``: normal
    intervals) and ``error_sources[method]`` (a key of :data:`ERROR_SOURCES`); ``covariances[method]`` ``(n_words,
    n_words)``, where the method's estimator gave one (values estimated from the same images err together: the
    separation of two words uses it); :meth:`intervals` and :meth:`certainty` read them. ``number`` is the prompt's place in the run and ``folder`` its saved folder (set by
    :func:`load_run`).
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
    standard_errors: dict[str, np.ndarray] = field(default_factory=dict)
    degrees_of_freedom: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    error_sources: dict[str, str] = field(default_factory=dict)
    covariances: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    number: int | None = field(default=None, compare=False)
    folder: Path | None = field(default=None, repr=False, compare=False)
    _sentences: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def methods(self) -> list[str]:
        return list(self.values)

    def _method(self, method: str) -> str:
        if method not in self.values:
            raise ValueError(f"method {method!r} was not run for {self.prompt!r}; it has {self.methods}")
        return method

    def set_standard_errors(self, method: str, standard_errors, degrees_of_freedom=np.inf,
                            source: str = "estimator", covariance=None) -> None:
        """Store a method's own standard errors; they replace the derived ones.

        Parameters
        ----------
        method : str
            A method of :attr:`values`.
        standard_errors : array_like or object
            float ``(n_words,)``, payoff units, ``>= 0`` or NaN (not known); or an object with
            ``.standard_errors``, ``.degrees_of_freedom`` and ``.covariance`` (a
            ``words.multifidelity.ShapleyEstimate``), whose degrees of freedom and covariance are then used.
        degrees_of_freedom : float or array_like, optional
            ``(n_words,)`` or a scalar; ``inf``: normal intervals.
        source : str, optional
            A key of :data:`ERROR_SOURCES`.
        covariance : array_like, optional
            float ``(n_words, n_words)``: the covariance of the estimation errors; ``None``: independent errors.
        """
        self._method(method)
        if hasattr(standard_errors, "standard_errors"):
            degrees_of_freedom = getattr(standard_errors, "degrees_of_freedom", np.inf)
            covariance = getattr(standard_errors, "covariance", None)
            standard_errors = standard_errors.standard_errors
        d = len(self.words)
        errors = np.array(checks.numeric_array(standard_errors, "standard_errors", finite=False), dtype=np.float64)
        if errors.shape != (d,) or np.any(errors < 0):
            raise ValueError(f"standard_errors of {method!r} must be (n_words={d},) and >= 0 (NaN: not known); "
                             f"got shape {errors.shape}")
        if source not in ERROR_SOURCES:
            raise ValueError(f"source must be one of {list(ERROR_SOURCES)}, got {source!r}")
        df = np.broadcast_to(np.asarray(degrees_of_freedom, dtype=np.float64), (d,)).copy()
        self.standard_errors[method], self.degrees_of_freedom[method] = errors, df
        self.error_sources[method] = source
        self.covariances.pop(method, None)
        if covariance is not None:
            covariance = np.array(checks.numeric_array(covariance, "covariance"), dtype=np.float64)
            if covariance.shape != (d, d):
                raise ValueError(f"covariance of {method!r} must be ({d}, {d}), got shape {covariance.shape}")
            self.covariances[method] = covariance
        self._sentences.clear()

    def fill_standard_errors(self) -> None:
        """Derive (:func:`derived_standard_errors`) the standard errors of every method that has none stored."""
        for method, values in self.values.items():
            if method not in self.standard_errors:
                errors, df, source = derived_standard_errors(values, method)
                self.set_standard_errors(method, errors, df, source)

    def _errors(self, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """``(mean values, standard errors, degrees of freedom, source)`` of ``method``, derived when not stored."""
        self._method(method)
        self.fill_standard_errors()
        return (self.values[method].mean(0), self.standard_errors[method], self.degrees_of_freedom[method],
                self.error_sources[method])

    def intervals(self, method: str, level: float = 0.95) -> np.ndarray:
        """``level`` confidence intervals of ``method``'s seed-averaged values.

        Parameters
        ----------
        method : str
            A method of :attr:`values`.
        level : float, optional
            Coverage, in (0, 1).

        Returns
        -------
        numpy.ndarray
            float64 ``(n_words, 2)``: (low, high) in payoff units, Student t where the degrees of freedom are finite
            (:func:`captum_diffusion.words.certainty.intervals`); equal ends when exact for the one seed, NaN when
            the error is not known.
        """
        from captum_diffusion.words.certainty import quantile

        mean, errors, df, _ = self._errors(method)
        half = quantile(level, df) * errors
        return np.stack([mean - half, mean + half], axis=1)

    def certainty(self, method: str, k: int = 3, level: float = 0.95) -> str:
        """One plain sentence on how certain ``method``'s ranking of the words is.

        Parameters
        ----------
        method : str
            A method of :attr:`values`.
        k : int, optional
            The top ``k`` words to check (at most ``n_words - 1``: a top that holds every word says nothing).
        level : float, optional
            Confidence level, in (0, 1).

        Returns
        -------
        str
            ``"exact for seed 0 ..."`` (an exact method at one seed), ``"... not known ..."`` (a sampled one at one
            seed), else :func:`captum_diffusion.words.certainty.certainty_statement`: ``"top-3 words (...) certain
            at 95% ..."`` or ``"... 'on' and 'the' cannot be told apart"``.
        """
        key = (method, k, level)
        if key not in self._sentences:
            self._sentences[key] = self._certainty(method, k, level)
        return self._sentences[key]

    def _certainty(self, method: str, k: int, level: float) -> str:
        from captum_diffusion.words.certainty import certainty_statement

        mean, errors, df, source = self._errors(method)
        if source == "exact":
            return (f"exact for seed {self.seeds[0]}: every sub-prompt it needs was generated, so no sampling "
                    "error; another seed may rank the words differently")
        if source == "unknown" or not np.isfinite(errors).all():
            return (f"sampled at one seed ({self.seeds[0]}): its error is not known; run two or more seeds to "
                    "measure it")
        if mean.size == 1:
            return "one word: nothing to rank"
        k = min(checks.positive_int(k, "k"), mean.size - 1)
        return certainty_statement(mean, errors, self.labels, k=k, level=level, degrees_of_freedom=df,
                                   covariance=self.covariances.get(method), exact=source == "seeds" and method in EXACT_METHODS, n_seeds=len(self.seeds))

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

    def to_pandas(self):
        """The run as one long table: a row per (prompt, seed, method, word); see :mod:`captum_diffusion.runs.export`.

        Returns
        -------
        pandas.DataFrame
            Columns ``prompt, prompt_index, seed, method, word, label, position, value, standard_error,
            base_value, payoff`` (:func:`captum_diffusion.runs.export.run_table`).
        """
        from captum_diffusion.runs.table import run_table

        return run_table(self)


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


def _nullable(array) -> list:
    """A float array as a JSON list: NaN and inf written ``null`` (strict JSON has neither)."""
    return [float(x) if np.isfinite(x) else None for x in np.asarray(array, dtype=np.float64).reshape(-1)]


def _certainty_json(result: PromptRun) -> dict:
    """``result.json``'s certainty entries: standard errors (``null`` = not known), degrees of freedom (``null`` =
    normal), sources and the covariances an estimator gave, per method."""
    result.fill_standard_errors()
    return {"standard_errors": {m: _nullable(v) for m, v in result.standard_errors.items()},
            "degrees_of_freedom": {m: _nullable(v) for m, v in result.degrees_of_freedom.items()},
            "error_sources": dict(result.error_sources),
            "covariances": {m: v.tolist() for m, v in result.covariances.items()}}


def _read_certainty(result: PromptRun, data: dict) -> None:
    """Set what ``result.json`` stored of the certainty (absent in older runs), then derive the rest."""
    for method, errors in (data.get("standard_errors") or {}).items():
        if method in result.values:
            stored = data.get("degrees_of_freedom", {}).get(method, [None] * len(errors))
            df = [np.inf if x is None else x for x in stored]
            result.set_standard_errors(method, [np.nan if x is None else x for x in errors], df,
                                       data.get("error_sources", {}).get(method, "estimator"),
                                       data.get("covariances", {}).get(method))
    result.fill_standard_errors()


def save_prompt(directory: Path, number: int, result: PromptRun, *, standard_errors=None) -> None:
    """Write one prompt's files; ``result.json`` last, so a prompt with a result file is complete.

    Parameters
    ----------
    directory : pathlib.Path
        The run's folder.
    number : int
        The prompt's place in the run (its folder ``prompts/NNN``).
    result : PromptRun
        What the run found.
    standard_errors : mapping, optional
        Method -> its own standard errors ``(n_words,)`` or an estimate with ``.standard_errors`` and
        ``.degrees_of_freedom`` (a ``ShapleyEstimate``): stored with :meth:`PromptRun.set_standard_errors`,
        replacing the derived ones. Methods not given keep theirs or get derived ones.
    """
    from safetensors.numpy import save

    for method, errors in (standard_errors or {}).items():
        result.set_standard_errors(method, errors)
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
                          "file": file if entry.image is not None else entry.file})
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
        **_certainty_json(result),
    })


def load_prompt(folder: Path, *, images: bool = True, number: int | None = None) -> PromptRun:
    """Read one prompt's files back into a :class:`PromptRun`.

    Parameters
    ----------
    folder : pathlib.Path
        ``prompts/NNN`` of a saved run.
    images : bool, optional
        Open and load the full prompt's and the sub-prompts' images; ``False`` leaves them out (``images`` empty,
        ``SubPrompt.image`` ``None``; ``SubPrompt.file`` still names each file), e.g. to render a large run's
        report from the files.
    number : int, optional
        The prompt's place in the run, kept as ``result.number``.

    Returns
    -------
    PromptRun
        With ``folder`` set and standard errors stored or derived (older runs).
    """
    from safetensors.numpy import load_file

    data = json.loads((folder / RESULT).read_text())
    seeds = data["seeds"]
    result = PromptRun(prompt=data["prompt"], words=data["words"], labels=data["labels"], seeds=seeds,
                       status=data["status"], error=data["error"], payoff=data["payoff"],
                       values={m: np.array(v, dtype=np.float64).reshape(len(seeds), -1)
                               for m, v in data["values"].items()},
                       base_values={m: np.array(v, dtype=np.float64) for m, v in data["base_values"].items()},
                       payoffs=None if data["payoffs"] is None else np.array(data["payoffs"], dtype=np.float64),
                       attention_labels=data["attention_labels"], table_words=data["table_words"],
                       number=number, folder=Path(folder))
    _read_certainty(result, data)
    if result.status != "done":
        return result
    if images:
        result.images = [_open(folder / f"image-seed-{seed}.png") for seed in seeds]
    result.subprompts = [[SubPrompt(e["mask"], e["prompt"], e["payoff"],
                                    _open(folder / e["file"]) if e["file"] and images else None, e["file"])
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


def load_run(directory, *, images: bool = True) -> Run:
    """Load a saved run (see the module docstring): a :class:`Run` whose prompts equal the computed ones.

    Parameters
    ----------
    directory : str or os.PathLike
        The run's folder.
    images : bool, optional
        Load every image (default); ``False`` reads values and file names only (:func:`load_prompt`), which a
        report of a large run needs.

    Returns
    -------
    Run
        Prompts still missing (an interrupted run) are left out; ``run.manifest["prompts"]`` lists every prompt
        with its status. The folder is verified first (:func:`captum_diffusion.runs.verify.verify_run`): a damaged
        prompt is loaded with status ``"damaged"``, its error naming the files and what is wrong, and no values
        (never as done); its manifest entry says ``"damaged"`` too.

    Raises
    ------
    ValueError
        When ``directory`` holds no run, or its ``manifest.json`` is damaged (naming it).
    """
    from captum_diffusion.runs.verify import verify_run

    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        raise ValueError(f"{str(directory)!r} holds no saved run (no {MANIFEST}); run `diffusion-explain explain "
                         f"... --out {directory}` first")
    damaged = verify_run(directory).damaged_prompts()
    prompts = []
    for number, _ in enumerate(manifest["prompts"]):
        folder = prompt_dir(directory, number)
        if number in damaged:
            prompts.append(damaged_prompt(manifest, number, damaged[number], folder))
        elif (folder / RESULT).is_file():
            prompts.append(load_prompt(folder, images=images, number=number))
    return Run(directory, manifest, prompts)


def damaged_prompt(manifest: dict, number: int, damage: list, folder: Path) -> "PromptRun":
    """The :class:`PromptRun` that stands for a damaged prompt.

    Parameters
    ----------
    manifest : dict
        The run's manifest; its entry for ``number`` gets status ``"damaged"`` and the error.
    number : int
        The prompt's number.
    damage : list of runs.verify.Damage
        What is wrong with it.
    folder : pathlib.Path
        Its folder.

    Returns
    -------
    PromptRun
        Status ``"damaged"``, ``error`` naming every damaged file, the words and seeds the run asked for, no values.
    """
    from captum_diffusion.runs.verify import expected_specs
    from captum_diffusion.words import split_words, word_labels

    spec = expected_specs(manifest)[number]
    words = split_words(spec["prompt"])
    error = "damaged: " + "; ".join(str(item) for item in damage)
    entry = manifest["prompts"][number]
    if isinstance(entry, dict):
        entry.update(status="damaged", error=error)
    return PromptRun(spec["prompt"], words, word_labels(words), list(spec["seeds"] or []), status="damaged",
                     error=error, number=number, folder=folder)
