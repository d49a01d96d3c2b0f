"""The report of a saved run, composed from ``captum_diffusion.report``'s building blocks; no model needed.

Two forms, chosen by the number of prompts (:data:`SINGLE_FILE_MAX_PROMPTS`):

- up to 20 prompts, ``report.html`` is one self-contained file (every image inlined), as before;
- above that, ``report.html`` is an index page (one sortable, filterable row per prompt: its image, top words with
  their error bars, payoffs, seed agreement, certainty and status) and each prompt has its own page
  ``report/NNN.html``; pages read the run's images from the files beside them (``prompts/NNN/...``), loaded
  lazily, so the index of a 1,000-prompt run is about 1 MB and opens in well under a second.

In both, a sub-prompt grid of more than :data:`GRID_OPEN` images shows the empty prompt, each word alone, each word
deleted and the full prompt, and folds the rest into a ``<details>`` element.
"""
from __future__ import annotations

import html
import json
import os
import shlex
from pathlib import Path

import numpy as np
import PIL.Image

from captum_diffusion import report
from captum_diffusion.metrics.agreement import seed_agreement
from captum_diffusion.metrics.faithfulness import deletion_curves
from captum_diffusion.report.bars import value_bars_html, waterfall_html
from captum_diffusion.report.index import INDEX_SCRIPT, cell, index_table_html, top_words_html
from captum_diffusion.report.sections import certainty_html, collapsed_html
from captum_diffusion.runs.config import INTERACTIONS
from captum_diffusion.runs.store import PromptRun, Run, played_game
from captum_diffusion.words.game import MAX_EXACT_WORDS

REPORT = "report.html"
#: The folder of per-prompt pages, beside ``report.html``, in the folder form.
PAGES = "report"
#: Runs of more prompts get the folder form (index page + one page per prompt); up to this, one file.
SINGLE_FILE_MAX_PROMPTS = 20
#: Sub-prompt grids of more images show only the informative ones and fold the rest (``<details>``).
GRID_OPEN = 16


def main_method(result: PromptRun) -> str:
    """The method whose values colour the words: exact SHAP when run, else the first one."""
    return "shap-exact" if "shap-exact" in result.values else result.methods[0]


#: Strongest word pairs shown with ``--words interactions``.
N_PAIRS = 5

_NEEDS_EVERY_PAYOFF = ("<p class=\"empty\">{what} every sub-prompt's payoff (exact SHAP, up to "
                       f"{MAX_EXACT_WORDS} words); this prompt's run did not score them all.</p>")


def interactions_html(result: PromptRun, game) -> str:
    """The word-pairs part of a prompt's section.

    Parameters
    ----------
    result : PromptRun
        The prompt.
    game : WordGame or None
        Its seed-averaged game, :func:`~captum_diffusion.runs.store.played_game` (``None``: not every sub-prompt
        was scored).

    Returns
    -------
    str
        HTML: the :data:`N_PAIRS` strongest pairs (exact k-SII of order 2,
        :func:`~captum_diffusion.words.pair_interactions`), or a note when there is no game or no pair.
    """
    if len(result.words) < 2:
        return '<p class="empty">A one-word prompt has no word pairs.</p>'
    if game is None:
        return _NEEDS_EVERY_PAYOFF.format(what="Word pairs need")
    from captum_diffusion.words.interactions import pair_interactions  # shapiq: seconds to import, pairs only

    pairs = pair_interactions(game, result.labels, k=N_PAIRS, index="k-SII")
    return (f"<p>Strongest of the {len(result.words) * (len(result.words) - 1) // 2} word pairs (k-SII, exact, "
            "from the same sub-prompt images; seed-averaged):</p>" + report.interaction_pairs_html(pairs, "k-SII"))


def deletion_curve_html(result: PromptRun, game, method: str) -> str:
    """The deletion-curve part of a prompt's section.

    Parameters
    ----------
    result : PromptRun
        The prompt.
    game : WordGame or None
        Its seed-averaged game, :func:`~captum_diffusion.runs.store.played_game` (``None``: no curve, a note).
    method : str
        The method whose seed-averaged values order the words.

    Returns
    -------
    str
        HTML ``figure.plot``: :func:`~captum_diffusion.metrics.deletion_curves` drawn by
        :func:`~captum_diffusion.report.deletion_curve_figure`, or a note.
    """
    if game is None:
        return _NEEDS_EVERY_PAYOFF.format(what="The deletion curve needs")
    curve, random_curves = deletion_curves(game, None, result.values[method].mean(0), seed=0)
    uri = report.figure_data_uri(report.deletion_curve_figure(curve, random_curves, method))
    return (f'<figure class="plot"><img src="{uri}" alt="deletion curve"><figcaption>{html.escape(method)}: payoff '
            f"as its top words are deleted, beside {len(random_curves)} random orders</figcaption></figure>")


class Media:
    """Where a page's images come from: inlined as ``data:`` URIs (``page_dir=None``: one self-contained file), or
    the run's own files, linked relative to ``page_dir`` (the folder of the page being written)."""

    def __init__(self, page_dir: Path | None = None):
        self.page_dir = None if page_dir is None else Path(page_dir)

    def _link(self, result: PromptRun, file: str | None) -> str | None:
        if self.page_dir is None or result.folder is None or not file or not (result.folder / file).is_file():
            return None
        return Path(os.path.relpath(result.folder / file, self.page_dir)).as_posix()

    def full_image(self, result: PromptRun, s: int) -> str:
        """``src`` of the full prompt's image at the ``s``-th seed."""
        link = self._link(result, f"image-seed-{result.seeds[s]}.png")
        return link if link is not None else report.image_data_uri(full_image(result, s))

    def subprompt(self, result: PromptRun, entry):
        """A sub-prompt's image as the grid takes it: a relative URL, an image, or ``None`` (not kept)."""
        link = self._link(result, entry.file)
        if link is not None:
            return link
        if entry.image is None and entry.file and result.folder is not None:
            return _read_image(result.folder / entry.file)
        return entry.image


def _read_image(path: Path) -> PIL.Image.Image:
    with PIL.Image.open(path) as image:
        return image.convert("RGB")


def full_image(result: PromptRun, s: int) -> PIL.Image.Image:
    """The full prompt's image at the ``s``-th seed: loaded, or read from the run's folder
    (``load_run(..., images=False)``)."""
    if len(result.images) > s:
        return result.images[s]
    return _read_image(result.folder / f"image-seed-{result.seeds[s]}.png")


def _half_widths(result: PromptRun, method: str) -> np.ndarray:
    """Half-widths ``(d,)`` of ``method``'s 95% intervals (NaN: not known; 0: exact for the seed)."""
    low_high = result.intervals(method)
    return (low_high[:, 1] - low_high[:, 0]) / 2


def values_html(result: PromptRun, method: str, media: Media | None = None) -> str:
    """The full prompt's image(s), its words coloured by ``method``'s seed-averaged values, how certain each
    method's ranking is, the bars with their 95% error bars, the waterfall (a ``shap-`` method) and the
    word-by-method table with the intervals, as HTML. ``media``: inlined images by default."""
    media = media or Media()
    mean = result.values[method].mean(0)
    base = float(result.base_values[method].mean())
    images = "".join(f'<figure class="plot"><img src="{media.full_image(result, s)}" width="192" alt="seed {seed}">'
                     f"<figcaption>seed {seed}</figcaption></figure>" for s, seed in enumerate(result.seeds))
    seeds_note = f"averaged over seeds {', '.join(map(str, result.seeds))}" if len(result.seeds) > 1 else \
        f"seed {result.seeds[0]}"
    methods = [method] + [m for m in result.methods if m != method]
    means = {m: result.values[m].mean(0) for m in methods}
    bases = {m: float(result.base_values[m].mean()) for m in methods}
    sentences = {m: result.certainty(m) for m in methods}
    bars = value_bars_html(result.labels, means, {m: _half_widths(result, m) for m in methods})
    waterfall = ""
    if method.startswith("shap-"):
        waterfall = (f'<figure class="plot waterfall-figure">{waterfall_html(result.labels, mean, base)}<figcaption>'
                     f"{html.escape(method)}: from the empty prompt's score to the full prompt's</figcaption></figure>")
    return (f'<div class="side-by-side">{images}</div>'
            f"<h3>Words coloured by {html.escape(method)} ({seeds_note})</h3>"
            + report.word_text_html(result.words, mean, result.labels, base_value=base)
            + "<h3>How certain</h3>" + certainty_html(sentences)
            + f'<div class="side-by-side">{bars}{waterfall}</div>'
            + report.values_table_html(result.labels, means, bases, {m: result.intervals(m) for m in methods}))


def _grid_entries(result: PromptRun, media: Media) -> list:
    """The first seed's sub-prompts as ``(prompt, payoff, image or URL, mask)``, those with an image."""
    first = result.subprompts[0] if result.subprompts else []
    entries = [(e.prompt, e.payoff, media.subprompt(result, e), e.mask) for e in first]
    return [e for e in entries if e[2] is not None]


def subprompts_html(result: PromptRun, media: Media) -> str:
    """The first seed's sub-prompt grid; above :data:`GRID_OPEN` images, the informative ones (no word, one word,
    all but one, every word) shown and the whole grid folded."""
    entries = _grid_entries(result, media)
    if not entries:
        return ""
    title = f"<h3>Sub-prompt images, seed {result.seeds[0]} (payoff under each)</h3>"
    grid = report.subprompt_grid_html([e[:3] for e in entries])
    if len(entries) <= GRID_OPEN:
        return title + grid
    d = len(result.words)
    shown = [e[:3] for e in entries if e[3].count("1") in (0, 1, d - 1, d)]
    return (title + report.subprompt_grid_html(shown)
            + collapsed_html(f"all {len(entries)} sub-prompt images", grid))


def images_html(result: PromptRun, media: Media | None = None) -> str:
    """The first seed's sub-prompt images (:func:`subprompts_html`), attention maps and segments (those the run
    kept), as HTML."""
    media = media or Media()
    parts = [subprompts_html(result, media)]
    if result.attention is not None:
        parts.append(f"<h3>Attention maps (DAAM), seed {result.seeds[0]}</h3>")
        parts.append(report.attention_maps_html(full_image(result, 0), result.attention[0], result.attention_labels))
    if result.segments is not None:
        parts.append(f"<h3>Segments and the segment-by-word table, seed {result.seeds[0]}</h3>")
        parts.append(report.segment_table_html(full_image(result, 0), result.segments[0], result.segment_tables[0],
                                               result.table_words))
    return "".join(parts)


def prompt_section(result: PromptRun, *, interactions: bool = False, faithfulness: bool = False,
                   media: Media | None = None) -> str:
    """One prompt's section of the report.

    Parameters
    ----------
    result : PromptRun
        The prompt, loaded from the run.
    interactions : bool, optional
        Add the strongest word pairs (:func:`interactions_html`).
    faithfulness : bool, optional
        Add the deletion curve (:func:`deletion_curve_html`).
    media : Media, optional
        Where the images come from; default inlined.

    Returns
    -------
    str
        HTML: :func:`values_html`, the optional parts (read from the stored sub-prompt payoffs: no model, no new
        image), the seed agreement when there are several seeds, and :func:`images_html`; for a failed prompt its
        error.
    """
    if result.status != "done":  # failed, or damaged on disk (runs.verify): never shown as done
        said = "is damaged (rerun its command to redo it)" if result.status == "damaged" else "failed"
        return f'<p class="error">This prompt {said}: <code>{html.escape(result.error or "unknown error")}</code></p>'
    method = main_method(result)
    parts = [values_html(result, method, media)]
    if interactions or faithfulness:
        game = played_game(result)
        if interactions:
            parts.append("<h3>Word pairs (Shapley interactions)</h3>" + interactions_html(result, game))
        if faithfulness:
            parts.append(f"<h3>Deletion curve of {html.escape(method)}</h3>"
                         + deletion_curve_html(result, game, method))
    if len(result.seeds) > 1:
        parts.append("<h3>Seed agreement</h3>")
        parts.append(report.seed_agreement_html(seed_agreement(result.values[method], result.labels),
                                                result.seeds))
    parts.append(images_html(result, media))
    return "".join(parts)


def _has_grid(result: PromptRun) -> bool:
    """Whether the first seed kept any sub-prompt image (read from memory or named in the run's files)."""
    return bool(result.subprompts) and any(e.image is not None or e.file for e in result.subprompts[0])


def reading_keys(results, *, interactions: bool = False, faithfulness: bool = False) -> list[str]:
    """The ``report.how_to_read_html`` sections that the prompts ``results`` show (none it does not)."""
    done = [r for r in results if r is not None and r.status == "done"]
    keys = ["payoff", "base", "values", "certainty"]
    if any(len(r.methods) > 1 for r in done):
        keys.append("methods")
    wanted = {"subprompts": any(_has_grid(r) for r in done),
              "attention": any(r.attention is not None for r in done),
              "segments": any(r.segments is not None for r in done),
              "pairs": interactions and bool(done), "deletion": faithfulness and bool(done),
              "seeds": any(len(r.seeds) > 1 for r in done)}
    return keys + [key for key, shown in wanted.items() if shown]


def run_section(run: Run) -> str:
    """The run's settings, model, counts and versions; the command as it can be pasted back into a shell."""
    manifest = run.manifest
    own = "(the model's own)"
    rows = {
        "model": f'{manifest["model"]["spec"]} ({manifest["model"]["class"]})',
        "scorer": f'{manifest["scorer"]["class"]} {manifest["scorer"]["spec"] or own}',
        "settings": json.dumps({k: v for k, v in manifest["config"].items() if k != "prompts"}),
        "images": f'{manifest["counts"]["images_generated"]} generated, '
                  f'{manifest["counts"]["images_from_cache"]} from the cache (this invocation)' + _attempts(manifest),
        "time": f'{manifest["timings"]["seconds"]} s (model loading {manifest["timings"].get("model_load_seconds", 0):.1f} s)',
        "versions": ", ".join(f"{k} {v}" for k, v in manifest["versions"].items() if v),
    }
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    command = (f'<tr><th>command</th><td><code class="command">{html.escape(shlex.join(manifest["command"]))}'
               "</code></td></tr>")
    return f'<table class="values"><tbody>{body}{command}</tbody></table>'


def _options(run: Run) -> dict:
    config = run.manifest.get("config", {})
    return dict(interactions=INTERACTIONS in config.get("words", ()), faithfulness=bool(config.get("faithfulness")))


def _payoff_text(run: Run) -> str:
    return run.prompts[0].payoff if run.prompts else "the scorer's similarity to the full prompt's image"


def _by_number(run: Run) -> dict:
    """The loaded prompts by their place in the manifest (``PromptRun.number``, else matched by prompt text)."""
    by_prompt = {p.prompt: p for p in run.prompts if p.number is None}
    numbered = {p.number: p for p in run.prompts if p.number is not None}
    return {n: numbered.get(n, by_prompt.get(entry["prompt"])) for n, entry in enumerate(run.manifest["prompts"])}


def render(run: Run) -> str:
    """The report of ``run`` as one self-contained HTML document (the single-file form)."""
    options, results = _options(run), _by_number(run)
    keys = reading_keys(results.values(), **options)
    sections = [("How to read this report", report.how_to_read_html(_payoff_text(run), keys), "how-to-read")]
    index = []
    for number, entry in enumerate(run.manifest["prompts"]):
        anchor, result = f"prompt-{number}", results[number]
        body = prompt_section(result, **options) if result is not None else \
            f'<p class="empty">Not explained yet ({html.escape(entry["status"])}).</p>'
        sections.append((entry["prompt"], body, anchor))
        index.append((entry["prompt"], anchor))
    sections.append(("Run", run_section(run), "run"))
    return report.page("diffusion-explain report", sections, index=index if len(index) > 1 else None,
                       footer=f"saved run: {run.directory}")


#: The index page's columns.
INDEX_COLUMNS = ("#", "image", "prompt", "top words", "f(prompt)", 'f("")', "seed agreement", "certainty", "status")


def page_name(number: int) -> str:
    """A prompt's page in the folder form, relative to ``report.html``: ``report/NNN.html``."""
    return f"{PAGES}/{number:03d}.html"


def certainty_label(result: PromptRun, method: str) -> str:
    """A few words for the index: ``"exact, seed 0"``, ``"not known"``, ``"top-3 certain"`` or ``"not certain"``."""
    sentence = result.certainty(method)
    source = result.error_sources.get(method)
    if source == "exact":
        return f"exact, seed {result.seeds[0]}"
    if source == "unknown":
        return "not known"
    return sentence.split(" words", 1)[0] + " certain" if " not certain" not in sentence else "not certain"


def index_row(number: int, entry: dict, result: PromptRun | None, media: Media) -> tuple[list, str]:
    """One row of the index table (:data:`INDEX_COLUMNS`) and its filter text."""
    link = html.escape(entry["prompt"]) if result is None else \
        f'<a href="{page_name(number)}">{html.escape(entry["prompt"])}</a>'
    status = entry.get("status", "pending") if result is None else result.status
    head = [cell(str(number), number), None, cell(link, entry["prompt"].lower())]
    if result is None or result.status != "done":
        head[1] = cell("")
        return head + [cell("")] * 5 + [cell(html.escape(status), status)], f'{entry["prompt"]} {status}'
    method = main_method(result)
    mean = result.values[method].mean(0)
    head[1] = cell(f'<img src="{media.full_image(result, 0)}" width="64" height="64" loading="lazy" '
                   f'alt="seed {result.seeds[0]}">')
    payoff = float(result.payoffs.mean()) if result.payoffs is not None else None
    base = float(result.base_values[method].mean())
    agreement = seed_agreement(result.values[method], result.labels)["percent_ranks_aligned"]["mean"] \
        if len(result.seeds) > 1 else None
    sentence, label = result.certainty(method), certainty_label(result, method)
    row = head + [
        cell(top_words_html(result.labels, mean, _half_widths(result, method)), float(mean.max())),
        cell("&ndash;" if payoff is None else f"{payoff:.3f}", payoff),
        cell(f"{base:.3f}", base),
        cell("&ndash;" if agreement is None else f"{agreement:.0f}%", agreement),
        cell(f'<span title="{html.escape(method)}: {html.escape(sentence)}">{label}</span>', label),
        cell(html.escape(status), status),
    ]
    return row, f'{entry["prompt"]} {" ".join(result.labels)} {status}'


def render_index(run: Run, page_dir: Path) -> str:
    """The index page of the folder form: the sortable, filterable table of every prompt, the reading notes and
    the run's settings. ``page_dir``: the folder the index is written to (image links are relative to it)."""
    media, results = Media(page_dir), _by_number(run)
    rows, texts = [], []
    for number, entry in enumerate(run.manifest["prompts"]):
        row, text = index_row(number, entry, results[number], media)
        rows.append(row)
        texts.append(text)
    sections = [(f"{len(rows)} prompts", index_table_html(INDEX_COLUMNS, rows, texts), "prompts"),
                ("How to read this index", report.how_to_read_html(_payoff_text(run), ["index", "certainty"]),
                 "how-to-read"),
                ("Run", run_section(run), "run")]
    return report.page("diffusion-explain report", sections, footer=f"saved run: {run.directory}",
                       script=INDEX_SCRIPT)


def render_prompt_page(run: Run, number: int, result: PromptRun, page_dir: Path) -> str:
    """The page of one prompt in the folder form, linking back to the index; its images read from the run's
    files relative to ``page_dir``."""
    options = _options(run)
    keys = reading_keys([result], **options)
    total = len(run.manifest["prompts"])
    nav = [f'<a href="../{REPORT}">all {total} prompts</a>']
    if number > 0:
        nav.append(f'<a href="{number - 1:03d}.html">previous</a>')
    if number + 1 < total:
        nav.append(f'<a href="{number + 1:03d}.html">next</a>')
    sections = [(result.prompt, prompt_section(result, media=Media(page_dir), **options), f"prompt-{number}"),
                ("How to read this page", report.how_to_read_html(result.payoff or _payoff_text(run), keys),
                 "how-to-read")]
    return report.page(f"Prompt {number}: {result.prompt}", sections,
                       header=f'<p class="back">{" · ".join(nav)}</p>', footer=f"saved run: {run.directory}")


def _attempts(manifest: dict) -> str:
    """For a resumed run: the image counts of every attempt together (the manifest's ``history`` and this one)."""
    attempts = [entry.get("counts", {}) for entry in manifest.get("history", [])] + [manifest["counts"]]
    if len(attempts) < 2:
        return ""
    generated = sum(counts.get("images_generated", 0) for counts in attempts)
    cached = sum(counts.get("images_from_cache", 0) for counts in attempts)
    return f"; resumed: {generated} generated, {cached} from the cache over all {len(attempts)} attempts"


def write_report(run: Run, path=None, *, form: str | None = None) -> Path:
    """Write the report of ``run`` atomically.

    Parameters
    ----------
    run : Run
        A loaded run (``load_run(..., images=False)`` is enough: images are read from the run's files).
    path : str or os.PathLike, optional
        The report's main page; default ``run.directory / "report.html"``.
    form : {"single", "folder"}, optional
        ``"single"``: one self-contained file (:func:`render`); ``"folder"``: the index page (:func:`render_index`)
        and ``report/NNN.html`` per prompt beside it (:func:`render_prompt_page`). Default: ``"single"`` up to
        :data:`SINGLE_FILE_MAX_PROMPTS` prompts, ``"folder"`` above.

    Returns
    -------
    pathlib.Path
        The main page written.
    """
    path = Path(run.directory) / REPORT if path is None else Path(path)
    if form is None:
        form = "single" if len(run.manifest["prompts"]) <= SINGLE_FILE_MAX_PROMPTS else "folder"
    if form not in ("single", "folder"):
        raise ValueError(f"form must be 'single' or 'folder' (or None: by the number of prompts), got {form!r}")
    if form == "single":
        return report.write_page(path, render(run))
    for number, result in _by_number(run).items():
        if result is not None:
            page = path.parent / page_name(number)
            report.write_page(page, render_prompt_page(run, number, result, page.parent))
    return report.write_page(path, render_index(run, path.parent))
