"""Two runs of the same prompts side by side: two models, two checkpoints, two schedulers or two scorers
(``diffusion-explain compare RUN_A RUN_B --out DIR``, :func:`compare_runs` and :func:`write_comparison`).

Prompts are matched by their text and seeds by their number; a prompt or seed only one run has is named
(:attr:`Comparison.only_a`, :attr:`Comparison.only_b`, :attr:`Comparison.seeds_left_out`) and left out. Each shared
prompt's word values are averaged over its shared seeds, then compared with Gupta & Kanoria's measures
(:mod:`captum_diffusion.metrics.ranking`): the percent of words whose rank is the same in both runs, and the RMSE
between the values normalised to sum to 1 (run A's against run B's; ``None`` when a run's values sum to zero).
Runs whose payoffs differ (another scorer, text template or payoff kind) measure different things: they are refused
unless ``force=True`` (``--force``).
"""
from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from captum_diffusion import checks

__all__ = ["PromptComparison", "Comparison", "compare_runs", "write_comparison", "payoff_identity"]

#: How many of a prompt's words are listed as having moved most.
MOVED_WORDS = 3


@dataclass
class PromptComparison:
    """One shared prompt compared.

    Parameters
    ----------
    prompt : str
        Its text.
    index_a, index_b : int
        Its place in each run.
    seeds : list of int
        The seeds both runs have; the values are averaged over these.
    words, labels : list of str
        Its words and their labels (``n_words`` each).
    values_a, values_b : list of float
        Seed-averaged word values, payoff units, ``(n_words,)`` each.
    percent_ranks_aligned : float
        0..100: words ranked the same by both runs (ties share the smallest rank).
    rmse : float or None
        RMSE of the values normalised to sum to 1 (``None`` when a run's values sum to zero).
    moved : list of dict
        The :data:`MOVED_WORDS` words whose value changed most: ``label``, ``a``, ``b``, ``change`` (``b - a``).
    """

    prompt: str
    index_a: int
    index_b: int
    seeds: list[int]
    words: list[str]
    labels: list[str]
    values_a: list[float]
    values_b: list[float]
    percent_ranks_aligned: float
    rmse: float | None
    moved: list[dict]


@dataclass
class Comparison:
    """Two runs compared (:func:`compare_runs`).

    Parameters
    ----------
    run_a, run_b : str
        The runs' folders.
    method : str
        The word-attribution method compared.
    payoff_a, payoff_b : dict
        What each run's payoff is (:func:`payoff_identity`).
    prompts : list of PromptComparison
        The shared prompts, in run A's order.
    only_a, only_b : list of str
        Explained prompts only one run has (left out).
    seeds_left_out : list of dict
        Per shared prompt whose seeds differ: ``prompt``, ``only_a`` and ``only_b`` seeds (left out).
    forced : bool
        Whether differing payoffs were compared anyway.
    """

    run_a: str
    run_b: str
    method: str
    payoff_a: dict
    payoff_b: dict
    prompts: list[PromptComparison] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    seeds_left_out: list[dict] = field(default_factory=list)
    forced: bool = False

    @property
    def overall(self) -> dict:
        """``n_prompts``, ``percent_ranks_aligned`` / ``rmse`` (``mean`` and ``min`` / ``max`` over the prompts,
        ``None`` when undefined) and ``moved``: per word (matched across prompts in lower case), its mean change
        ``b - a`` and mean absolute change over the prompts that contain it, largest first (10 words)."""
        from captum_diffusion.runs.summary import word_key

        aligned = [p.percent_ranks_aligned for p in self.prompts]
        errors = [p.rmse for p in self.prompts if p.rmse is not None]
        changes: dict[str, list[float]] = {}
        for p in self.prompts:
            for word, a, b in zip(p.words, p.values_a, p.values_b):
                changes.setdefault(word_key(word), []).append(b - a)
        moved = sorted(({"word": w, "prompts": len(c), "mean_change": float(np.mean(c)),
                         "mean_abs_change": float(np.mean(np.abs(c)))} for w, c in changes.items()),
                       key=lambda row: -row["mean_abs_change"])[:10]
        stat = lambda xs, f: float(f(xs)) if xs else None  # noqa: E731
        return {"n_prompts": len(self.prompts),
                "percent_ranks_aligned": {"mean": stat(aligned, np.mean), "min": stat(aligned, np.min)},
                "rmse": {"mean": stat(errors, np.mean), "max": stat(errors, np.max)}, "moved": moved}

    def to_dict(self) -> dict:
        """The comparison as JSON-able data.

        Returns
        -------
        dict
            Every field, plus ``overall``.
        """
        return {**asdict(self), "overall": self.overall}


def payoff_identity(run) -> dict:
    """What a run's payoff is; two runs are comparable when these are equal.

    Parameters
    ----------
    run : Run
        One of the runs to compare.

    Returns
    -------
    dict
        ``scorer``: the manifest's scorer (class, spec, text template); ``payoff``: the explained prompts' payoff
        descriptions, sorted.
    """
    scorer = dict(run.manifest.get("scorer") or {})
    described = sorted({result.payoff for result in run.prompts if result.status == "done"})
    return {"scorer": scorer, "payoff": described}


def _explained(run) -> dict:
    """Explained prompts by text (the first, where a text repeats), with their place in the run."""
    from captum_diffusion.runs.summary import explained_prompts

    found = {}
    for number, result in explained_prompts(run):
        found.setdefault(result.prompt, (number, result))
    return found


def _compare_prompt(a, b, method: str, seeds: list[int], indices: tuple[int, int]) -> PromptComparison:
    """One prompt's values (averaged over ``seeds``) in both runs, compared."""
    from captum_diffusion.metrics.ranking import normalize_scores, percent_ranks_aligned, rmse

    if a.words != b.words:
        raise ValueError(f"prompt {a.prompt!r} has words {a.words} in run A but {b.words} in run B")
    values_a = a.values[method][[a.seeds.index(s) for s in seeds]].mean(0)
    values_b = b.values[method][[b.seeds.index(s) for s in seeds]].mean(0)
    try:
        error = rmse(values_a, normalize_scores(values_b))
    except ValueError:  # a run's values sum to zero: no normalised RMSE
        error = None
    order = np.argsort(-np.abs(values_b - values_a), kind="stable")[:MOVED_WORDS]
    moved = [{"label": a.labels[i], "a": float(values_a[i]), "b": float(values_b[i]),
              "change": float(values_b[i] - values_a[i])} for i in order]
    return PromptComparison(a.prompt, indices[0], indices[1], list(seeds), list(a.words), list(a.labels),
                            values_a.tolist(), values_b.tolist(), 100.0 * percent_ranks_aligned(values_a, values_b),
                            error, moved)


def _method(run_a, run_b, method: str | None) -> str:
    """``method`` (checked), or the first method both runs ran on every explained prompt."""
    from captum_diffusion.runs.summary import summary_method

    if method is not None:
        summary_method(run_a, method), summary_method(run_b, method)
        return method
    first = summary_method(run_a)
    try:
        return summary_method(run_b, first)
    except ValueError:
        raise ValueError(f"run B did not run {first!r} (run A's method) on every prompt; pass method= (--method) "
                         "with a method both runs have") from None


def compare_runs(run_a, run_b, *, method: str | None = None, force: bool = False) -> Comparison:
    """Compare two runs of the same prompts (module docstring: what is matched, measured and refused).

    Parameters
    ----------
    run_a, run_b : Run or str or os.PathLike
        Loaded runs, or their folders.
    method : str, optional
        The word-attribution method to compare (default: the first one both runs ran on every prompt).
    force : bool, optional
        Compare runs whose payoffs differ (:func:`payoff_identity`).

    Returns
    -------
    Comparison

    Raises
    ------
    ValueError
        When the payoffs differ and ``force`` is not set, no explained prompt is shared, or ``method`` is not run
        on every prompt of both runs.
    """
    from captum_diffusion.runs.store import load_run

    run_a, run_b = (load_run(r, images=False) if isinstance(r, (str, Path)) else r for r in (run_a, run_b))
    if not isinstance(force, bool):
        raise TypeError(f"force must be a bool, got {type(force).__name__}")
    payoff_a, payoff_b = payoff_identity(run_a), payoff_identity(run_b)
    if payoff_a != payoff_b and not force:
        raise ValueError(f"the runs have different payoffs, so their values measure different things: run A "
                         f"{payoff_a}, run B {payoff_b}; pass --force (force=True) to compare them anyway")
    method = _method(run_a, run_b, method)
    found_a, found_b = _explained(run_a), _explained(run_b)
    comparison = Comparison(str(run_a.directory), str(run_b.directory), method, payoff_a, payoff_b,
                            only_a=[p for p in found_a if p not in found_b],
                            only_b=[p for p in found_b if p not in found_a], forced=payoff_a != payoff_b)
    for prompt, (index_a, a) in found_a.items():
        if prompt not in found_b:
            continue
        index_b, b = found_b[prompt]
        seeds = [s for s in a.seeds if s in b.seeds]
        if set(a.seeds) != set(b.seeds):
            comparison.seeds_left_out.append({"prompt": prompt, "only_a": [s for s in a.seeds if s not in seeds],
                                              "only_b": [s for s in b.seeds if s not in seeds]})
        if seeds:
            comparison.prompts.append(_compare_prompt(a, b, method, seeds, (index_a, index_b)))
    if not comparison.prompts:
        raise ValueError(f"runs {comparison.run_a!r} and {comparison.run_b!r} share no explained prompt at a "
                         f"common seed; run A has {list(found_a)[:5]}, run B {list(found_b)[:5]}")
    return comparison


def _thumbnail_html(directory: str, index: int, seed: int, name: str, size: int = 160) -> str:
    """The full prompt's image of one run at ``seed``, inlined (at most ``size`` pixels a side)."""
    import PIL.Image

    from captum_diffusion.report.inline import image_data_uri, img_tag
    from captum_diffusion.runs.store import prompt_dir

    path = prompt_dir(Path(directory), index) / f"image-seed-{seed}.png"
    if not path.is_file():
        return f'<span class="empty">{html.escape(name)}: no image</span>'
    with PIL.Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((size, size))
        scale = max(1, size // max(image.size))  # small images (ShapesWorld's 64 px) are shown larger
        tag = img_tag(image_data_uri(image), f"{name}, seed {seed}", width=image.size[0] * scale)
    return f'<span style="display:inline-block;border:1px solid #ccc;margin-right:6px">{tag}</span>'


def _prompt_html(comparison: Comparison, entry: PromptComparison, names: tuple[str, str]) -> str:
    """One shared prompt: its images side by side per seed, then its word values in both runs."""
    images = "".join(
        f'<figure style="display:inline-block;margin:0 12px 8px 0">'
        f'{_thumbnail_html(comparison.run_a, entry.index_a, seed, names[0])}'
        f'{_thumbnail_html(comparison.run_b, entry.index_b, seed, names[1])}'
        f'<figcaption>seed {seed}: {html.escape(names[0])} | {html.escape(names[1])}</figcaption></figure>'
        for seed in entry.seeds)
    rows = "".join(f"<tr><td>{html.escape(label)}</td><td>{a:+.3f}</td><td>{b:+.3f}</td><td>{b - a:+.3f}</td></tr>"
                   for label, a, b in zip(entry.labels, entry.values_a, entry.values_b))
    head = (f"<tr><th>word</th><th>{html.escape(names[0])}</th><th>{html.escape(names[1])}</th>"
            f"<th>change</th></tr>")
    rmse = "undefined (values sum to 0)" if entry.rmse is None else f"{entry.rmse:.3f}"
    return (f"<div>{images}</div><p>{entry.percent_ranks_aligned:.0f}% ranks aligned, RMSE {rmse} "
            f"(values normalised to sum to 1; {comparison.method}, averaged over seeds {entry.seeds})</p>"
            f'<table class="values"><thead>{head}</thead><tbody>{rows}</tbody></table>')


def _overall_html(comparison: Comparison, names: tuple[str, str]) -> str:
    """Key figures, what was left out, and the words that moved most across the prompts."""
    overall = comparison.overall
    fmt = lambda x, spec: "&ndash;" if x is None else format(x, spec)  # noqa: E731
    lines = [f"A: {html.escape(comparison.run_a)} ({html.escape(names[0])}); B: {html.escape(comparison.run_b)} "
             f"({html.escape(names[1])}); method {html.escape(comparison.method)}.",
             f"{overall['n_prompts']} shared prompt(s): {fmt(overall['percent_ranks_aligned']['mean'], '.0f')}% ranks "
             f"aligned on average (least {fmt(overall['percent_ranks_aligned']['min'], '.0f')}%), RMSE "
             f"{fmt(overall['rmse']['mean'], '.3f')} on average (largest {fmt(overall['rmse']['max'], '.3f')})."]
    if comparison.forced:
        lines.append(f"<b>The payoffs differ</b> (compared with --force): A {html.escape(str(comparison.payoff_a))}; "
                     f"B {html.escape(str(comparison.payoff_b))}.")
    for label, prompts in (("only in A", comparison.only_a), ("only in B", comparison.only_b)):
        if prompts:
            lines.append(f"Left out, {label}: " + ", ".join(html.escape(repr(p)) for p in prompts) + ".")
    for entry in comparison.seeds_left_out:
        only = [f"only in {run}: {seeds}" for run, seeds in (("A", entry["only_a"]), ("B", entry["only_b"])) if seeds]
        lines.append(f"Seeds left out of {html.escape(repr(entry['prompt']))}: {'; '.join(only)}.")
    moved = "".join(f"<tr><td>{html.escape(row['word'])}</td><td>{row['prompts']}</td><td>{row['mean_change']:+.3f}"
                    f"</td><td>{row['mean_abs_change']:.3f}</td></tr>" for row in overall["moved"])
    table = ("<table class=\"values\"><thead><tr><th>word</th><th>prompts</th><th>mean change (B &minus; A)</th>"
             f"<th>mean |change|</th></tr></thead><tbody>{moved}</tbody></table>")
    return "".join(f"<p>{line}</p>" for line in lines) + "<h3>Words that moved most</h3>" + table


def _table_html(comparison: Comparison) -> str:
    """The sortable, filterable table: one row per shared prompt, linking to its section."""
    from captum_diffusion.report.index import cell, index_table_html

    rows, texts = [], []
    for number, entry in enumerate(comparison.prompts):
        moved = ", ".join(f"{html.escape(m['label'])} {m['change']:+.3f}" for m in entry.moved)
        rows.append([cell(str(entry.index_a), entry.index_a),
                     cell(f'<a href="#prompt-{number}">{html.escape(entry.prompt)}</a>', entry.prompt),
                     cell(", ".join(map(str, entry.seeds)), len(entry.seeds)),
                     cell(f"{entry.percent_ranks_aligned:.0f}%", entry.percent_ranks_aligned),
                     cell("&ndash;" if entry.rmse is None else f"{entry.rmse:.3f}", entry.rmse), cell(moved)])
        texts.append(f"{entry.prompt} {' '.join(entry.words)}")
    columns = ("#", "prompt", "seeds", "% ranks aligned", "RMSE", "moved most (B - A)")
    return index_table_html(columns, rows, texts)


def write_comparison(comparison: Comparison, out) -> Path:
    """Write ``compare.html`` (one self-contained page: the overall table, then each prompt's images side by side
    and word values) and ``compare.json`` (:meth:`Comparison.to_dict`) into the folder ``out``.

    Parameters
    ----------
    comparison : Comparison
        From :func:`compare_runs`.
    out : str or os.PathLike
        The folder (created if missing).

    Returns
    -------
    pathlib.Path
        The HTML page.

    Raises
    ------
    ValueError
        When ``out`` is a file.
    """
    import json

    from captum_diffusion.files import atomic_write
    from captum_diffusion.report.document import page, write_page
    from captum_diffusion.report.index import INDEX_SCRIPT
    from captum_diffusion.runs.store import read_manifest

    if not isinstance(comparison, Comparison):
        raise TypeError(f"comparison must be a Comparison (from compare_runs), got {type(comparison).__name__}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder for compare.html and compare.json")
    names = tuple(((read_manifest(d) or {}).get("model") or {}).get("spec") or Path(d).name
                  for d in (comparison.run_a, comparison.run_b))
    sections = [("Overall", _overall_html(comparison, names), "overall"),
                ("Prompts", _table_html(comparison), "prompts")]
    sections += [(entry.prompt, _prompt_html(comparison, entry, names), f"prompt-{number}")
                 for number, entry in enumerate(comparison.prompts)]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "compare.json", json.dumps(comparison.to_dict(), indent=1).encode())
    title = f"diffusion-explain compare: {names[0]} vs {names[1]}"
    return write_page(out / "compare.html", page(title, sections, script=INDEX_SCRIPT))
