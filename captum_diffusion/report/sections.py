"""The report's HTML fragments, one per kind of section: coloured words, value tables, sub-prompt images, attention
maps, segments, seed agreement, word pairs and the reading notes. Each takes plain Python / numpy values and returns
a ``str`` of HTML; :func:`captum_diffusion.report.page` puts them in one document."""
from __future__ import annotations

import os
from html import escape
from typing import Mapping, Sequence

import numpy as np

from captum_diffusion.convert import as_rgb_image
from captum_diffusion.report.common import (EMPTY_PROMPT_LABEL, css_rgba, finite_vector, label_list, table_cell,
                                            word_title)
from captum_diffusion.report.figures import attention_maps_figure, segment_figure
from captum_diffusion.report.inline import figure_data_uri, image_data_uri, img_tag, stored_image
from captum_diffusion.report.shap_text import shap_text_html


def _own_text_html(words: list[str], values: np.ndarray, labels: list[str]) -> str:
    """The coloured words without shap: one ``span.shap-word`` per word, spaces between them, shap's colours."""
    cmax = float(np.abs(values).max()) if values.size else 0.0
    spans = [f'<span class="shap-word" style="background: {css_rgba(v, cmax)}" '
             f'title="{escape(word_title(label, v))}" data-label="{escape(label)}" data-value="{v:.6g}">'
             f"{escape(word)}</span>" for word, v, label in zip(words, values, labels)]
    return f"<div class='shap-words'>{' '.join(spans)}</div>"


def word_text_html(words: Sequence[str], values, labels: Sequence[str] | None = None, *,
                   base_value: float | None = None, stock: bool = True) -> str:
    """The prompt's words coloured by their value, like ``shap.plots.text`` (which it calls when ``stock``).

    Parameters
    ----------
    words : sequence of str
        The prompt's words, in order.
    values : array_like
        float ``(n_words,)``, one value per word, payoff units.
    labels : sequence of str, optional
        Unique word names for the tooltips; default ``word_labels(words)`` (``a#0``, ``a#1``).
    base_value : float, optional
        The empty prompt's payoff; given, shap's force bar above the words runs from it (``f("")``) to
        ``f(prompt)``.
    stock : bool, optional
        Use ``shap.plots.text`` (repaired by :func:`captum_diffusion.report.shap_text.shap_text_html`); ``False``
        renders the words without shap, in the same colours (also the fallback when shap's HTML is not as
        expected).

    Returns
    -------
    str
        HTML ``div.word-text``. Colours: positive red, negative blue, opacity ``|value| / max |value|`` (one
        symmetric scale around 0). Each word is an element of class ``shap-word`` with ``title="label: +value"``,
        ``data-label`` and ``data-value``, inside ``div.shap-words`` whose text is the words joined by single
        spaces.
    """
    words = [str(w) for w in words]
    if not words:
        raise ValueError("words is empty")
    values = finite_vector(values, len(words), "values")
    labels = label_list(words, labels)
    body = shap_text_html(words, values, labels, base_value) if stock else None
    if body is None:
        body = _own_text_html(words, values, labels)
    return f'<div class="word-text">{body}</div>'


def _interval_text(low: float, high: float) -> str:
    """An interval as ``<span class="ci">[low, high]</span>``; nothing when not known (NaN) or of zero width."""
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        return ""
    return f'<span class="ci">[{low:.3f}, {high:.3f}]</span>'


def values_table_html(labels: Sequence[str], values_by_method: Mapping[str, object],
                      base_values_by_method: Mapping[str, float] | None = None,
                      intervals_by_method: Mapping[str, object] | None = None) -> str:
    """A table of word values, one row per word, one column per method.

    Parameters
    ----------
    labels : sequence of str
        ``n_words`` word labels.
    values_by_method : mapping of str to array_like
        Method name (SHAP's beside LIME's and captum's) -> ``(n_words,)`` values, payoff units.
    base_values_by_method : mapping of str to float, optional
        Method -> base value / intercept; given, two more rows: the base value and ``base + sum`` (for exact
        Shapley values the full prompt's payoff: efficiency). A method without one shows a dash.
    intervals_by_method : mapping of str to array_like, optional
        Method -> ``(n_words, 2)`` confidence intervals (low, high), payoff units, shown under each value as
        ``[low, high]`` (``span.ci``); NaN (not known) or zero-width (exact) intervals are not shown.

    Returns
    -------
    str
        HTML ``table.values``: values to 3 decimals, cells tinted like the words (red positive, blue negative, one
        scale per column).
    """
    labels = [str(label) for label in labels]
    if not values_by_method:
        raise ValueError("values_by_method is empty")
    methods = {str(m): finite_vector(v, len(labels), f"values of {m!r}") for m, v in values_by_method.items()}
    spans = {str(m): np.asarray(v, dtype=np.float64).reshape(len(labels), 2)
             for m, v in (intervals_by_method or {}).items()}
    cmax = {m: float(np.abs(v).max()) for m, v in methods.items()}

    def cell(m: str, i: int) -> str:
        extra = _interval_text(*spans[m][i]) if m in spans else ""
        return table_cell(methods[m][i], cmax[m], extra)

    head = "".join(f"<th>{escape(m)}</th>" for m in methods)
    rows = [f"<tr><th>{escape(label)}</th>{''.join(cell(m, i) for m in methods)}</tr>"
            for i, label in enumerate(labels)]
    if base_values_by_method:
        bases = {str(m): b for m, b in base_values_by_method.items()}

        def cells(fn) -> str:
            return "".join(f'<td class="num">{fn(m):.3f}</td>' if bases.get(m) is not None else "<td>&ndash;</td>"
                           for m in methods)

        rows.append(f'<tr class="base"><th>base (f(""))</th>{cells(lambda m: float(bases[m]))}</tr>')
        rows.append(f'<tr class="base"><th>base + sum</th>'
                    f'{cells(lambda m: float(bases[m]) + float(methods[m].sum()))}</tr>')
    return (f'<table class="values"><thead><tr><th>word</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def certainty_html(sentences: Mapping[str, str]) -> str:
    """How certain each method's ranking is, one plain sentence per method.

    Parameters
    ----------
    sentences : mapping of str to str
        Method -> its sentence (e.g. :meth:`captum_diffusion.runs.store.PromptRun.certainty`).

    Returns
    -------
    str
        HTML ``ul.certainty``, one ``li`` per method (``data-method``).
    """
    items = "".join(f'<li data-method="{escape(m)}"><b>{escape(m)}</b>: {escape(s)}</li>' for m, s in sentences.items())
    return f'<ul class="certainty">{items}</ul>'


def collapsed_html(summary: str, body: str, *, open_: bool = False) -> str:
    """``body`` inside ``<details>`` (closed unless ``open_``) under the plain-text ``summary``."""
    return f'<details{" open" if open_ else ""}><summary>{escape(summary)}</summary>{body}</details>'


#: A stored PNG is inlined as it is (scaled by the page's ``width``) up to this many times the thumbnail size a
#: side (ShapesWorld's 64 px, or a 256 px image in a 128 px grid); a larger one (a real model's 512-1024 px) is
#: downscaled to the thumbnail size, to keep the page small.
THUMB_INLINE_AS_IS = 2


def thumbnail_data_uri(image, size: int) -> str:
    """``image`` as a PNG ``data:`` URI for a thumbnail shown ``size`` CSS pixels wide.

    Parameters
    ----------
    image : PIL.Image.Image, array_like or os.PathLike
        An image (downscaled, aspect kept, when larger than ``size`` pixels), or an image file: a PNG at most
        :data:`THUMB_INLINE_AS_IS` times ``size`` pixels a side is inlined byte for byte (the browser scales it),
        a larger one or another format is read and downscaled.
    size : int
        The thumbnail's size, pixels.

    Returns
    -------
    str
        ``"data:image/png;base64,..."``.
    """
    if isinstance(image, os.PathLike):
        image = stored_image(image, THUMB_INLINE_AS_IS * size)
        if isinstance(image, str):
            return image
    return image_data_uri(_thumbnail(image, size))


def _thumbnail(image, size: int):
    """``image`` as RGB, downscaled (aspect kept) when larger than ``size`` pixels."""
    img = as_rgb_image(image)
    if max(img.size) > size:
        img = img.copy()
        img.thumbnail((size, size))
    return img


def subprompt_grid_html(entries, *, thumb_size: int = 128) -> str:
    """A grid of the game's images, in the given (mask) order, each captioned with its sub-prompt and payoff.

    Parameters
    ----------
    entries : iterable of (str, float, image)
        The sub-prompt (``""`` is the empty prompt, shown as ``(empty prompt)``), its payoff (shown to 3
        decimals) and its image: a PIL image or array (inlined), a ``pathlib.Path`` to an image file (inlined,
        a small PNG byte for byte: :func:`thumbnail_data_uri`), or a ``str`` URL relative to the page (a file
        beside it, loaded lazily by the browser).
    thumb_size : int, optional
        Pixels: larger images are downscaled to keep the page small (stored PNG files only above
        :data:`THUMB_INLINE_AS_IS` times this); all are shown this wide.

    Returns
    -------
    str
        HTML ``div.grid`` of ``figure.thumb``. ``ValueError`` when ``entries`` is empty.
    """
    cells = []
    for words, payoff, image in entries:
        text = str(words).strip()
        caption = escape(text) if text else f'<span class="empty">{EMPTY_PROMPT_LABEL}</span>'
        alt = text or EMPTY_PROMPT_LABEL
        if isinstance(image, str):
            tag = f'<img src="{escape(image)}" alt="{escape(alt)}" width="{thumb_size}" loading="lazy">'
        else:
            tag = img_tag(thumbnail_data_uri(image, thumb_size), alt, width=thumb_size)
        cells.append(f'<figure class="thumb">{tag}'
                     f'<figcaption><span class="subprompt">{caption}</span>'
                     f'<span class="payoff">{float(payoff):.3f}</span></figcaption></figure>')
    if not cells:
        raise ValueError("entries is empty")
    return f'<div class="grid">{"".join(cells)}</div>'


def attention_maps_html(image, maps, labels: Sequence[str], **kwargs) -> str:
    """:func:`~captum_diffusion.report.figures.attention_maps_figure` inlined as one PNG, captioned with its scale.

    Parameters
    ----------
    image, maps, labels
        As for :func:`~captum_diffusion.report.figures.attention_maps_figure`: the image, float
        ``(n_words, h, w)`` maps and ``n_words`` labels.
    **kwargs
        ``ncols``, ``alpha``, ``cmap`` for the figure.

    Returns
    -------
    str
        HTML ``figure.plot`` whose caption gives the one colour scale shared by all words.
    """
    fig, (vmin, vmax) = attention_maps_figure(image, maps, labels, **kwargs)
    uri = figure_data_uri(fig)
    return (f'<figure class="plot">{img_tag(uri, "DAAM attention map per word")}'
            f'<figcaption>One colour scale for all words: {vmin:.3g} (blue) to {vmax:.3g} (red).'
            f'</figcaption></figure>')


def segment_table_html(image, segments, table, labels: Sequence[str]) -> str:
    """The numbered segments picture beside the segment-by-word table.

    Parameters
    ----------
    image : PIL.Image.Image or array_like
        The image that was segmented.
    segments : array_like
        int ``(H, W)`` label map, labels ``0..n_segments-1``.
    table : array_like
        float ``(n_segments, n_words)``: row ``i`` is segment ``i``, column ``j`` word ``labels[j]`` (e.g. shap
        values of the segments for each word's score).
    labels : sequence of str
        ``n_words`` word labels (words given instead are made unique: ``a#0``, ``a#1``).

    Returns
    -------
    str
        HTML: the picture and the table side by side; cells tinted per column (red positive, blue negative), the
        largest per column in bold.
    """
    labels = [str(label) for label in labels]
    if len(set(labels)) < len(labels):  # a repeated word: a#0, a#1 as everywhere else
        labels = label_list(labels, None)
    tab = np.asarray(table, dtype=np.float64)
    seg = np.asarray(segments)
    if tab.ndim != 2 or tab.shape[1] != len(labels):
        raise ValueError(f"table must be (n_segments, n_words={len(labels)}); got shape {tab.shape}")
    if seg.size and int(seg.max()) + 1 != tab.shape[0]:
        raise ValueError(f"table has {tab.shape[0]} rows but segments are labelled 0..{int(seg.max())}")
    uri = figure_data_uri(segment_figure(image, seg))
    cmax = np.abs(tab).max(axis=0)
    best = tab.argmax(axis=0)
    rows = []
    for i in range(tab.shape[0]):
        cells = "".join(table_cell(tab[i, j], cmax[j]).replace('class="num"', 'class="num best"')
                        if best[j] == i else table_cell(tab[i, j], cmax[j]) for j in range(len(labels)))
        rows.append(f"<tr><th>{i}</th>{cells}</tr>")
    head = "".join(f"<th>{escape(label)}</th>" for label in labels)
    table_html = (f'<table class="values segments"><thead><tr><th>segment</th>{head}</tr></thead>'
                  f'<tbody>{"".join(rows)}</tbody></table>')
    return (f'<div class="side-by-side"><figure class="plot">{img_tag(uri, "numbered image segments")}'
            f'<figcaption>Segments, numbered as the table rows.</figcaption></figure>{table_html}</div>')


def _fmt(x, spec: str = ".3f", none: str = "&ndash;") -> str:
    """``x`` formatted with ``spec``, or ``none`` (a dash) when ``x`` is ``None``."""
    return none if x is None else format(x, spec)


def seed_agreement_html(agreement: Mapping, seeds: Sequence[int] | None = None) -> str:
    """The :func:`captum_diffusion.metrics.seed_agreement` dict as HTML.

    Parameters
    ----------
    agreement : mapping
        The dict ``seed_agreement`` returns.
    seeds : sequence of int, optional
        The seed numbers to show; default ``0..n_seeds-1``.

    Returns
    -------
    str
        HTML: a summary line (mean / min over the seed pairs), a word-by-seed table of values with each word's
        mean and std, and each seed's ranking.
    """
    labels = list(agreement["labels"])
    n = int(agreement["n_seeds"])
    seeds = list(range(n)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seed numbers for {n} seeds")
    values = np.asarray(agreement["values"], dtype=np.float64)
    pra, rho, tau = agreement["percent_ranks_aligned"], agreement["spearman"], agreement["kendall"]
    if n > 1:
        summary = (f'<p class="summary">Over {len(agreement["pairs"])} seed pair(s): ranks aligned '
                   f'<b>{_fmt(pra["mean"], ".0f")}%</b> on average (min {_fmt(pra["min"], ".0f")}%); '
                   f'Spearman &rho; mean <b>{_fmt(rho["mean"], ".2f")}</b> (min {_fmt(rho["min"], ".2f")}); '
                   f'Kendall &tau; mean <b>{_fmt(tau["mean"], ".2f")}</b> (min {_fmt(tau["min"], ".2f")}). '
                   f'Top word {"the same for every seed" if agreement["same_top"] else "<b>differs</b> across seeds"}.'
                   f'</p>')
    else:
        summary = '<p class="summary">One seed only: no agreement to measure.</p>'
    cmax = float(np.abs(values).max()) if values.size else 0.0
    head = "".join(f"<th>seed {s}</th>" for s in seeds) + "<th>mean</th><th>std</th>"
    rows = []
    for j, label in enumerate(labels):
        cells = "".join(table_cell(values[i, j], cmax) for i in range(n))
        rows.append(f'<tr><th>{escape(label)}</th>{cells}<td class="num">{agreement["mean"][j]:.3f}</td>'
                    f'<td class="num">{agreement["std"][j]:.3f}</td></tr>')
    table = (f'<table class="values seeds"><thead><tr><th>word</th>{head}</tr></thead>'
             f'<tbody>{"".join(rows)}</tbody></table>')
    rankings = "".join(f'<li>seed {s}: {" &gt; ".join(escape(w) for w in p["ranking"])}</li>'
                       for s, p in zip(seeds, agreement["per_seed"]))
    return f'<div class="seed-agreement">{summary}{table}<ol class="rankings">{rankings}</ol></div>'


def interaction_pairs_html(pairs, index: str = "k-SII") -> str:
    """A table of word pairs and their interaction values.

    Parameters
    ----------
    pairs : iterable of (str, str, float)
        ``(label_i, label_j, value)``, e.g. from :func:`captum_diffusion.words.pair_interactions` (strongest
        first); at least one.
    index : str, optional
        The interaction index named in the header.

    Returns
    -------
    str
        HTML ``table.values.interactions``: values to 3 decimals, tinted red (the two words act together:
        positive) or blue (redundant: negative) on one scale.
    """
    pairs = [(str(a), str(b), float(v)) for a, b, v in pairs]
    if not pairs:
        raise ValueError("pairs is empty: give at least one (label_i, label_j, value)")
    values = finite_vector([v for _, _, v in pairs], None, "pair values")
    cmax = float(np.abs(values).max())
    rows = "".join(f"<tr><th>{escape(a)}</th><th>{escape(b)}</th>{table_cell(v, cmax)}</tr>" for a, b, v in pairs)
    return (f'<table class="values interactions"><thead><tr><th>word</th><th>word</th><th>{escape(index)}</th></tr>'
            f"</thead><tbody>{rows}</tbody></table>")


#: The notes of :func:`how_to_read_html`, by section key, in the order shown.
HOW_TO_READ = {
    "payoff": ("Payoff", "{payoff}. Every sub-prompt of the prompt (some words deleted) is generated and scored; "
                         "the word values share out the full prompt's score among its words."),
    "base": ("Base value", 'The empty prompt "" (every word deleted) is the empty coalition; its score '
                           '<code>f("")</code> is the base value. For exact Shapley values, base value + sum of '
                           'the word values = <code>f(prompt)</code>.'),
    "values": ("Word values", "Positive (red): on average over the sub-prompts, adding the word raises the score. "
                              "Negative (blue): the word's presence lowers the score on average; deleting it "
                              "brings the image closer to the full prompt's. Colour strength is |value| relative "
                              "to the largest |value| of the prompt. Hover a word for its label and value; repeated "
                              "words are told apart as <code>a#0</code>, <code>a#1</code>."),
    "methods": ("Methods", "SHAP (exact or sampled Shapley values), LIME (weights of a local linear model with "
                           "its intercept as base) and captum attributions estimate the same game; disagreement "
                           "between them is a sign that the ranking is fragile."),
    "certainty": ("Certainty", "Error bars and the <code>[low, high]</code> under a value are 95% intervals of "
                               "the seed-averaged value: from the method's own estimator where it states one, "
                               "else from the spread between seeds. An exact method at one seed is exact for "
                               "that seed (no interval); a sampled one at one seed has no known error. The "
                               "sentence says whether the top words are separated at 95%, or which neighbours "
                               "cannot be told apart."),
    "subprompts": ("Sub-prompt images", "Each thumbnail is one coalition's image with its payoff, in mask order; "
                                        "long prompts show the empty prompt, each word alone, each word deleted "
                                        "and the full prompt, the rest folded below."),
    "attention": ("Attention maps (DAAM)", "Cross-attention of each word summed over steps, layers and heads, laid "
                                           "over the image. All words share one colour scale, whose ends are "
                                           "written under the maps, so a faint map means little attention "
                                           "compared with the other words."),
    "segments": ("Image segments", "The image is cut into numbered segments; the table gives each segment's value "
                                   "for each word's score (largest per word in bold)."),
    "pairs": ("Word pairs", "Shapley interaction (k-SII, order 2) of two words, from the same sub-prompt images: "
                            "positive (red) when the two words mean more together than apart, negative (blue) "
                            "when either one alone does the job (redundant)."),
    "deletion": ("Deletion curve", "The payoff as the words are deleted from the prompt in the order of their "
                                   "values, most important first, beside random orders: the faster it falls below "
                                   "the random band, the better the ranking names the words the image depends on "
                                   "(AOPC: the average drop; higher is more faithful)."),
    "seeds": ("Seed agreement", "The same game with different seeds. Ranks aligned: percent of words with the "
                                "same rank in both seeds (100% = identical ranking). Spearman &rho; and Kendall "
                                "&tau;: rank correlations, 1 = same order, -1 = reversed. Std: how much a "
                                "word's value moves between seeds; a large std beside a small mean means the "
                                "value is mostly the seed's noise."),
    "index": ("This index", "One row per prompt: its image, its top words by value (with 95% error bars where "
                            "known), the full prompt's payoff <code>f(prompt)</code> and the empty prompt's "
                            "<code>f(\"\")</code>, the mean seed agreement, how certain the top words are, and "
                            "its status. Click a column's header to sort by it, type in the box to filter, and "
                            "follow a prompt's link to its page."),
}


def how_to_read_html(payoff_description: str, sections: Sequence[str] | None = None) -> str:
    """Short notes on reading the sections a page has.

    Parameters
    ----------
    payoff_description : str
        What the payoff is, e.g. "CLIP cosine between the sub-prompt's image and the full prompt's image, same
        seed".
    sections : sequence of str, optional
        Keys of :data:`HOW_TO_READ` the page has, shown in that table's order; default every key but
        ``"index"``.

    Returns
    -------
    str
        HTML ``dl.how-to-read``, one ``dt`` / ``dd`` per section (``data-key``).
    """
    keys = [k for k in HOW_TO_READ if k != "index"] if sections is None else list(sections)
    unknown = sorted(set(keys) - HOW_TO_READ.keys())
    if unknown:
        raise ValueError(f"sections: unknown keys {unknown}; valid: {list(HOW_TO_READ)}")
    body = "".join(f'<dt data-key="{key}">{title}</dt><dd>{text.format(payoff=escape(payoff_description))}</dd>'
                   for key, (title, text) in HOW_TO_READ.items() if key in keys)
    return f'<dl class="how-to-read">{body}</dl>'
