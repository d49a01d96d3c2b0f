"""``report.html`` of a saved run: composed from ``captum_diffusion.report``'s building blocks, no model needed."""
from __future__ import annotations

import html
import json
from pathlib import Path

from captum_diffusion import report
from captum_diffusion.metrics.agreement import seed_agreement
from captum_diffusion.metrics.faithfulness import deletion_curves
from captum_diffusion.runs.config import INTERACTIONS
from captum_diffusion.runs.store import PromptRun, Run, played_game
from captum_diffusion.words.game import MAX_EXACT_WORDS
from captum_diffusion.words.interactions import pair_interactions

REPORT = "report.html"


def _main_method(result: PromptRun) -> str:
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


def values_html(result: PromptRun, method: str) -> str:
    """The full prompt's image(s), its words coloured by ``method``'s seed-averaged values, the bar chart, shap's
    waterfall (for a ``shap-`` method) and the word-by-method table, as HTML."""
    mean = result.values[method].mean(0)
    base = float(result.base_values[method].mean())
    images = "".join(f'<figure class="plot"><img src="{report.image_data_uri(image)}" width="192" alt="seed {seed}">'
                     f"<figcaption>seed {seed}</figcaption></figure>" for seed, image in zip(result.seeds, result.images))
    seeds_note = f"averaged over seeds {', '.join(map(str, result.seeds))}" if len(result.seeds) > 1 else \
        f"seed {result.seeds[0]}"
    means = {m: v.mean(0) for m, v in result.values.items()}
    bases = {m: float(v.mean()) for m, v in result.base_values.items()}
    bar = report.figure_data_uri(report.bar_chart(result.labels, means, base_value=base))
    waterfall = ""
    if method.startswith("shap-"):
        uri = report.figure_data_uri(report.waterfall(result.explanation(method)))
        waterfall = (f'<figure class="plot"><img src="{uri}" alt="waterfall"><figcaption>{html.escape(method)}: from the '
                     "empty prompt's score to the full prompt's</figcaption></figure>")
    return (f'<div class="side-by-side">{images}</div>'
            f"<h3>Words coloured by {html.escape(method)} ({seeds_note})</h3>"
            + report.word_text_html(result.words, mean, result.labels, base_value=base)
            + f'<div class="side-by-side"><figure class="plot"><img src="{bar}" alt="values by method">'
            f"<figcaption>value of each word by method</figcaption></figure>{waterfall}"
            f"{report.values_table_html(result.labels, means, bases)}</div>")


def images_html(result: PromptRun) -> str:
    """The first seed's sub-prompt images, attention maps and segments (those the run kept), as HTML."""
    parts = []
    first = result.subprompts[0] if result.subprompts else []
    if first:
        parts.append(f"<h3>Sub-prompt images, seed {result.seeds[0]} (payoff under each)</h3>")
        parts.append(report.subprompt_grid_html([(e.prompt, e.payoff, e.image) for e in first if e.image is not None]))
    if result.attention is not None:
        parts.append(f"<h3>Attention maps (DAAM), seed {result.seeds[0]}</h3>")
        parts.append(report.attention_maps_html(result.images[0], result.attention[0], result.attention_labels))
    if result.segments is not None:
        parts.append(f"<h3>Segments and the segment-by-word table, seed {result.seeds[0]}</h3>")
        parts.append(report.segment_table_html(result.images[0], result.segments[0], result.segment_tables[0],
                                               result.table_words))
    return "".join(parts)


def prompt_section(result: PromptRun, *, interactions: bool = False, faithfulness: bool = False) -> str:
    """One prompt's section of the report.

    Parameters
    ----------
    result : PromptRun
        The prompt, loaded from the run.
    interactions : bool, optional
        Add the strongest word pairs (:func:`interactions_html`).
    faithfulness : bool, optional
        Add the deletion curve (:func:`deletion_curve_html`).

    Returns
    -------
    str
        HTML: :func:`values_html`, the optional parts (read from the stored sub-prompt payoffs: no model, no new
        image), the seed agreement when there are several seeds, and :func:`images_html`; for a failed prompt its
        error.
    """
    if result.status != "done":
        return f'<p class="error">This prompt failed: <code>{html.escape(result.error or "unknown error")}</code></p>'
    method = _main_method(result)
    parts = [values_html(result, method)]
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
    parts.append(images_html(result))
    return "".join(parts)


def run_section(run: Run) -> str:
    """The run's settings, model, counts and versions."""
    manifest = run.manifest
    own = "(the model's own)"
    rows = {
        "model": f'{manifest["model"]["spec"]} ({manifest["model"]["class"]})',
        "scorer": f'{manifest["scorer"]["class"]} {manifest["scorer"]["spec"] or own}',
        "settings": json.dumps({k: v for k, v in manifest["config"].items() if k != "prompts"}),
        "images": f'{manifest["counts"]["images_generated"]} generated, '
                  f'{manifest["counts"]["images_from_cache"]} from the cache (this invocation)',
        "time": f'{manifest["timings"]["seconds"]} s (model loading {manifest["timings"].get("model_load_seconds", 0):.1f} s)',
        "command": " ".join(manifest["command"]),
        "versions": ", ".join(f"{k} {v}" for k, v in manifest["versions"].items() if v),
    }
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    return f'<table class="values"><tbody>{body}</tbody></table>'


def render(run: Run) -> str:
    """The report of ``run`` as one self-contained HTML document."""
    payoff = run.prompts[0].payoff if run.prompts else "the scorer's similarity to the full prompt's image"
    sections = [("How to read this report", report.how_to_read_html(payoff), "how-to-read")]
    index = []
    by_prompt = {p.prompt: p for p in run.prompts}
    config = run.manifest.get("config", {})
    options = dict(interactions=INTERACTIONS in config.get("words", ()),
                   faithfulness=bool(config.get("faithfulness")))
    for number, entry in enumerate(run.manifest["prompts"]):
        anchor = f"prompt-{number}"
        result = by_prompt.get(entry["prompt"])
        body = prompt_section(result, **options) if result is not None else \
            f'<p class="empty">Not explained yet ({html.escape(entry["status"])}).</p>'
        sections.append((entry["prompt"], body, anchor))
        index.append((entry["prompt"], anchor))
    sections.append(("Run", run_section(run), "run"))
    return report.page("diffusion-explain report", sections, index=index if len(index) > 1 else None,
                       footer=f"saved run: {run.directory}")


def write_report(run: Run, path=None) -> Path:
    """Write the report of ``run`` (:func:`render`) atomically.

    Parameters
    ----------
    run : Run
        A loaded run.
    path : str or os.PathLike, optional
        Default ``run.directory / "report.html"``.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    return report.write_page(Path(run.directory) / REPORT if path is None else path, render(run))
