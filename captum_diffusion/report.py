"""Building blocks of the self-contained HTML report: plain Python / numpy / shap objects in, HTML out.

Nothing here loads a model or touches the network, so a saved run can be re-rendered years later. Images are
inlined as base64 PNG ``data:`` URIs; the page carries its CSS inline and loads no script, font or style from
anywhere, so it opens from disk with no console errors. Fragments are ``str`` of HTML; :func:`page` puts them
in one document and :func:`write_page` saves it atomically.

Conventions: ``words`` are the prompt's words in order; ``labels`` are their unique names (``a#0``, ``a#1``
for a repeated "a", from :func:`captum_diffusion.words.word_labels`); values are one float per word in the
payoff's units (e.g. CLIP cosine); images are PIL images or arrays accepted by
:func:`captum_diffusion.convert.as_rgb_image` (uint8 ``(H, W, 3)`` etc.).

>>> from captum_diffusion import report
>>> words = "a red circle".split()
>>> html = report.page("a red circle", [("Words", report.word_text_html(words, [0.1, 0.6, -0.2]))])
>>> report.write_page("run/report.html", html)  # doctest: +SKIP
"""
from __future__ import annotations

import base64
import contextlib
import html as _html
import io
import itertools
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from captum_diffusion.convert import as_rgb_image
from captum_diffusion.metrics.ranking import percent_ranks_aligned, ranks
from captum_diffusion.words.game import word_labels

__all__ = [
    "image_data_uri", "figure_data_uri", "word_text_html", "bar_chart", "waterfall", "values_table_html",
    "subprompt_grid_html", "attention_maps_html", "attention_maps_figure", "segment_figure",
    "segment_table_html", "seed_agreement", "seed_agreement_html", "interaction_pairs_html", "deletion_curve_figure",
    "how_to_read_html", "anchor_id", "page",
    "write_page", "EMPTY_PROMPT_LABEL", "BASE_LABEL", "PROMPT_LABEL",
]

#: How the empty prompt ``""`` (the empty coalition) is shown in captions.
EMPTY_PROMPT_LABEL = "(empty prompt)"
#: The waterfall's label for shap's base value ``E[f(X)]``: the empty prompt's score.
BASE_LABEL = 'f("") (empty prompt)'
#: The waterfall's label for shap's ``f(x)``: the full prompt's score.
PROMPT_LABEL = "f(prompt)"

_esc = _html.escape


# ------------------------------------------------------------------------------------------------ images

def image_data_uri(image) -> str:
    """``"data:image/png;base64,..."`` of ``image`` (PIL image in any mode, or a uint8 / uint16 / bool /
    float-in-[0, 1] array ``(H, W)``, ``(H, W, 1|3|4)``), converted to 8-bit RGB; lossless."""
    buffer = io.BytesIO()
    as_rgb_image(image).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_data_uri(fig, *, dpi: int = 100) -> str:
    """PNG ``data:`` URI of a matplotlib ``Figure`` (tight bounding box, white background, ``dpi`` dots per
    inch, no timestamp metadata). The figure is closed afterwards (pyplot forgets it)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", facecolor="white",
                    metadata={"Software": None})
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(uri: str, alt: str, *, css_class: str = "", width: int | None = None) -> str:
    size = f' width="{int(width)}"' if width else ""
    cls = f' class="{css_class}"' if css_class else ""
    return f'<img src="{uri}" alt="{_esc(alt)}"{cls}{size}>'


def _new_figure(width: float, height: float):
    """A matplotlib ``Figure`` outside pyplot (no global state, no GUI backend needed)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


# ------------------------------------------------------------------------------------------- word values

def _vector(values, d: int | None, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if d is not None and arr.size != d:
        raise ValueError(f"{name} has {arr.size} values but there are {d} words")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf: {arr}")
    return arr


def _labels(words: Sequence[str], labels) -> list[str]:
    labels = word_labels(list(words)) if labels is None else [str(label) for label in labels]
    if len(labels) != len(words):
        raise ValueError(f"{len(labels)} labels for {len(words)} words")
    return labels


def _rgba(value: float, cmax: float) -> tuple[int, int, int, float]:
    """shap's text-plot colour of ``value`` on the symmetric scale ``[-cmax, cmax]``: red for positive, blue
    for negative, alpha growing with ``|value| / cmax`` (``shap.plots.colors.red_transparent_blue``)."""
    from shap.plots import colors

    r, g, b, a = colors.red_transparent_blue(0.5 + 0.5 * value / (cmax + 1e-8))
    return round(r * 255), round(g * 255), round(b * 255), round(float(a), 3)


def _css_rgba(value: float, cmax: float) -> str:
    r, g, b, a = _rgba(value, cmax)
    return f"rgba({r}, {g}, {b}, {a})"


def _word_title(label: str, value: float) -> str:
    return f"{label}: {value:+.4f}"


_NUMPY_SCALAR = re.compile(r"np\.(?:float|int|uint)\d*\(([^()]*)\)")
_SHAP_WORD = re.compile(r"<div id='(_tp_[a-z]+_ind_(\d+))'")
_SHAP_INPUTS = ("<div align='center'><div style=\"color: rgb(120,120,120); font-size: 12px; margin-top: -15px;\">"
                "inputs</div>")
_SHAP_BASE = ">base value</text>"
_SHAP_FX = '>f<tspan baseline-shift="sub" font-size="8px"></tspan>(inputs)</text>'


def _stock_text_html(words: list[str], values: np.ndarray, labels: list[str], base_value) -> str | None:
    """``shap.plots.text`` on the words (each but the last with a trailing space), repaired for numpy 2
    (``rgba(np.float64(255.0), ...)`` -> ``rgba(255.0, ...)``), the word divs given class ``shap-word``, a
    tooltip and ``data-label`` / ``data-value``, and wrapped in ``div.shap-words``. ``None`` when shap's
    HTML is not shaped as expected (another shap version): the caller falls back to :func:`_own_text_html`."""
    import shap

    tokens = [_esc(w, quote=False) + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    explanation = shap.Explanation(values=values, base_values=0.0 if base_value is None else float(base_value),
                                   data=np.array(tokens, dtype=object), feature_names=list(labels))
    try:
        out = shap.plots.text(explanation, display=False)
    except Exception:  # noqa: BLE001 - any failure of the stock plot: render our own
        return None
    if not isinstance(out, str):
        return None
    out = _NUMPY_SCALAR.sub(r"\1", out)
    found = [int(m.group(2)) for m in _SHAP_WORD.finditer(out)]
    if (found != list(range(len(words))) or re.search(r"np\.\w+\(", out) or _SHAP_INPUTS not in out
            or not out.endswith("</div>")):
        return None

    def annotate(match: re.Match) -> str:
        i = int(match.group(2))
        return (f"<div id='{match.group(1)}' class='shap-word' title='{_esc(_word_title(labels[i], values[i]))}' "
                f"data-label='{_esc(labels[i])}' data-value='{values[i]:.6g}'")

    out = _SHAP_WORD.sub(annotate, out)
    # move each word's trailing space out of its coloured box, between the words: the boxes stay apart
    out = re.sub(r"(\n\s*>[^<]*?) </div></div>", r"\1</div></div> ", out)
    head, tail = out.split(_SHAP_INPUTS, 1)
    if base_value is None:
        head = ""  # shap's force bar needs the base value; without one show the coloured words only
    else:
        head = _tidy_force_plot(head.replace(_SHAP_BASE, f">{_esc(BASE_LABEL)}</text>")
                                .replace(_SHAP_FX, f">{PROMPT_LABEL}</text>"))
    inputs = _SHAP_INPUTS.replace("inputs</div>", "prompt words</div>")
    return f"{head}{inputs}<div class='shap-words'>{tail[:-len('</div>')]}</div></div>"


_SVG_LABEL_X = re.compile(r'<text x="([-+\d.eE]+)%" y="10"')
_SVG_TICK = re.compile(r'<text x="([-+\d.eE]+)%" y="27" font-size="12px" fill="rgb\(120,120,120\)" '
                       r'dominant-baseline="bottom" text-anchor="middle">[^<]*</text>')


def _tidy_force_plot(svg: str, *, clearance: float = 5.0, apart: float = 24.0) -> str:
    """Keep the labels of shap's force bar readable: drop axis tick numbers within ``clearance`` percent of the
    width of the ``f("")`` / ``f(prompt)`` value labels (shap paints a white halo over them, leaving stray
    digits), and when the two labels are closer than ``apart`` percent, anchor the left one's texts at their
    end and the right one's at their start so they do not overlap."""
    specials = [m.group(1) for m in _SVG_LABEL_X.finditer(svg)]
    if len(specials) != 2:
        return svg
    xs = [float(x) for x in specials]

    def drop(match: re.Match) -> str:
        x = match.group(1)
        if x in specials:  # the label's own grey text (or a tick exactly under it, drawn identically)
            return match.group(0)
        return "" if any(abs(float(x) - v) < clearance for v in xs) else match.group(0)

    svg = _SVG_TICK.sub(drop, svg)
    if abs(xs[0] - xs[1]) < apart:
        order = sorted(zip(xs, specials))
        for (_, x), anchor in zip(order, ("end", "start")):
            svg = re.sub(rf'(<text x="{re.escape(x)}%" y="(?:10|27)"[^>]*?)text-anchor="middle"',
                         rf'\1text-anchor="{anchor}"', svg)
    return svg


def _own_text_html(words: list[str], values: np.ndarray, labels: list[str]) -> str:
    """The coloured words without shap: one ``span.shap-word`` per word, spaces between them, shap's colours."""
    cmax = float(np.abs(values).max()) if values.size else 0.0
    spans = [f'<span class="shap-word" style="background: {_css_rgba(v, cmax)}" '
             f'title="{_esc(_word_title(label, v))}" data-label="{_esc(label)}" data-value="{v:.6g}">'
             f"{_esc(word)}</span>" for word, v, label in zip(words, values, labels)]
    return f"<div class='shap-words'>{' '.join(spans)}</div>"


def word_text_html(words: Sequence[str], values, labels: Sequence[str] | None = None, *,
                   base_value: float | None = None, stock: bool = True) -> str:
    """The prompt's words coloured by their value, like ``shap.plots.text`` (which it calls when ``stock``).

    words: the prompt's words; values: ``(n_words,)`` float, one per word, payoff units; labels: unique word
    names for the tooltips (default ``word_labels(words)``: ``a#0``, ``a#1``); base_value: the empty prompt's
    payoff; given, shap's force bar above the words runs from it (``f("")``) to ``f(prompt)``.
    Colours: positive red, negative blue, opacity ``|value| / max |value|`` (one symmetric scale around 0).
    Each word is an element of class ``shap-word`` with ``title="label: +value"``, ``data-label`` and
    ``data-value``, inside ``div.shap-words`` whose text is the words joined by single spaces.

    shap 0.51 under numpy 2 writes colours as ``rgba(np.float64(255.0), ...)`` (invalid CSS: every word shows
    uncoloured) and joins tokens without spaces; both are repaired here. Should shap's HTML ever not look as
    expected, the words are rendered without shap (same colours); ``stock=False`` forces that.
    """
    words = [str(w) for w in words]
    if not words:
        raise ValueError("words is empty")
    values = _vector(values, len(words), "values")
    labels = _labels(words, labels)
    body = _stock_text_html(words, values, labels, base_value) if stock else None
    if body is None:
        body = _own_text_html(words, values, labels)
    return f'<div class="word-text">{body}</div>'


def bar_chart(labels: Sequence[str], values_by_method: Mapping[str, object], base_value: float | None = None):
    """Horizontal grouped bars: one group per word (first word on top), one bar per method.

    labels: ``n_words`` word labels; values_by_method: method name (``"shap-exact"``, ``"lime"``,
    ``"captum-shapley_sampling"``...) -> ``(n_words,)`` values in payoff units; base_value: the empty
    prompt's payoff, noted in the title. Returns a matplotlib ``Figure`` (not shown; not in pyplot).
    """
    labels = [str(label) for label in labels]
    if not values_by_method:
        raise ValueError("values_by_method is empty")
    methods = {str(m): _vector(v, len(labels), f"values of {m!r}") for m, v in values_by_method.items()}
    n, k = len(labels), len(methods)
    fig = _new_figure(7.0, 0.9 + max(1.2, n * (0.1 + 0.16 * k)))
    ax = fig.add_subplot()
    height = 0.8 / k
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
    y = np.arange(n)
    for j, (method, vals) in enumerate(methods.items()):
        offset = (j - (k - 1) / 2) * height
        ax.barh(y + offset, vals, height=height * 0.95, label=method, color=palette[j % len(palette)])
    ax.axvline(0.0, color="#444", linewidth=0.8)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("value (payoff units)")
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    title = "Word values per method"
    if base_value is not None:
        title += f'  (base f("") = {float(base_value):.3f})'
    ax.set_title(title, fontsize=11)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    fig.tight_layout()
    return fig


def waterfall(explanation, labels: Sequence[str] | None = None, *, max_display: int = 20):
    """``shap.plots.waterfall`` of a single-prompt word explanation, relabelled for prompts.

    explanation: ``shap.Explanation`` with ``values`` ``(n_words,)`` and a scalar ``base_values`` (the empty
    prompt's payoff). labels: the bar names (default: ``explanation.feature_names``, else
    ``word_labels(explanation.data)``); the words are not repeated as feature values, so the two "a"s of
    "a red circle and a blue square" read ``a#0`` / ``a#1`` (not "a = a"). ``E[f(X)]`` becomes
    ``f("") (empty prompt) = ...`` and ``f(x)`` becomes ``f(prompt) = ...``. Returns the matplotlib
    ``Figure`` (a pyplot figure, as shap draws with pyplot; :func:`figure_data_uri` closes it).
    """
    import matplotlib.pyplot as plt
    import shap

    values = _vector(explanation.values, None, "explanation.values")
    base = np.asarray(explanation.base_values, dtype=np.float64).reshape(-1)
    if base.size != 1:
        raise ValueError(f"explanation must explain one prompt with one output; base_values {base.shape}")
    if labels is None:
        labels = getattr(explanation, "feature_names", None)
    if labels is None:
        data = getattr(explanation, "data", None)
        if data is None:
            raise ValueError("give labels: the explanation has neither feature_names nor data (words)")
        labels = word_labels([str(w).strip() for w in np.asarray(data, dtype=object).reshape(-1)])
    labels = [str(label) for label in labels]
    if len(labels) != values.size:
        raise ValueError(f"{len(labels)} labels for {values.size} values")
    plain = shap.Explanation(values=values, base_values=float(base[0]), data=None, feature_names=labels)
    fig = plt.figure()
    shap.plots.waterfall(plain, max_display=max_display, show=False)
    base_value, fx = float(base[0]), float(base[0] + values.sum())
    for ax in fig.axes:
        ticks = ax.get_xticklabels()
        texts = [t.get_text() for t in ticks]
        if any("E[f(X)]" in t for t in texts):
            ax.set_xticks(ax.get_xticks()[:1], [f"\n{BASE_LABEL} = {base_value:.3f}"], fontsize=12, ha="left")
        elif any("f(x)" in t for t in texts):
            ax.set_xticks(ax.get_xticks()[:1], [f"{PROMPT_LABEL} = {fx:.3f}"], fontsize=12, ha="left")
    return fig


def _table_cell(value: float, cmax: float) -> str:
    return f'<td class="num" style="background: {_css_rgba(value, cmax)}">{value:.3f}</td>'


def values_table_html(labels: Sequence[str], values_by_method: Mapping[str, object],
                      base_values_by_method: Mapping[str, float] | None = None) -> str:
    """A table, one row per word, one column per method (SHAP's beside LIME's and captum's), values to 3
    decimals, cells tinted like the words (red positive, blue negative, per-column scale). With
    ``base_values_by_method`` (method -> base / intercept) two more rows: the base value and
    ``base + sum`` (for exact Shapley values this is the full prompt's payoff: efficiency)."""
    labels = [str(label) for label in labels]
    if not values_by_method:
        raise ValueError("values_by_method is empty")
    methods = {str(m): _vector(v, len(labels), f"values of {m!r}") for m, v in values_by_method.items()}
    cmax = {m: float(np.abs(v).max()) for m, v in methods.items()}
    head = "".join(f"<th>{_esc(m)}</th>" for m in methods)
    rows = [f"<tr><th>{_esc(label)}</th>{''.join(_table_cell(v[i], cmax[m]) for m, v in methods.items())}</tr>"
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


# ---------------------------------------------------------------------------------------- images per game

def _thumbnail(image, size: int):
    img = as_rgb_image(image)
    if max(img.size) > size:
        img = img.copy()
        img.thumbnail((size, size))
    return img


def subprompt_grid_html(entries, *, thumb_size: int = 128) -> str:
    """A grid of the game's images, in the given (mask) order, each captioned with its sub-prompt and payoff.

    entries: iterable of ``(words, payoff, image)``: the sub-prompt (``str``; ``""`` is the empty prompt,
    shown as ``(empty prompt)``), its payoff (float, shown to 3 decimals) and its image. Images larger than
    ``thumb_size`` pixels are downscaled to keep the page small; all are shown ``thumb_size`` wide.
    """
    cells = []
    for words, payoff, image in entries:
        text = str(words).strip()
        caption = _esc(text) if text else f'<span class="empty">{EMPTY_PROMPT_LABEL}</span>'
        alt = text or EMPTY_PROMPT_LABEL
        uri = image_data_uri(_thumbnail(image, thumb_size))
        cells.append(f'<figure class="thumb">{_img(uri, alt, width=thumb_size)}'
                     f'<figcaption><span class="subprompt">{caption}</span>'
                     f'<span class="payoff">{float(payoff):.3f}</span></figcaption></figure>')
    if not cells:
        raise ValueError("entries is empty")
    return f'<div class="grid">{"".join(cells)}</div>'


def _maps(maps, n_labels: int) -> np.ndarray:
    if hasattr(maps, "detach"):
        maps = maps.detach().cpu().numpy()
    arr = np.asarray(maps, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] != n_labels:
        raise ValueError(f"maps must be (n_words={n_labels}, H, W); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("maps contain NaN or inf")
    return arr


def attention_maps_figure(image, maps, labels: Sequence[str], *, ncols: int = 8, alpha: float = 0.55,
                          cmap: str = "jet"):
    """One panel per word: its map blended (``alpha``) over ``image``, all panels on ONE colour scale
    (``vmin = min(0, all maps' min)``, ``vmax`` = all maps' max) with a single colour bar. maps: ``(n_words,
    h, w)`` float (any resolution; stretched over the image). Returns ``(Figure, (vmin, vmax))``."""
    labels = [str(label) for label in labels]
    arr = _maps(maps, len(labels))
    img = np.asarray(as_rgb_image(image))
    height, width = img.shape[:2]
    vmin, vmax = min(0.0, float(arr.min())), float(arr.max())
    if vmax <= vmin:
        vmax = vmin + 1.0
    n = len(labels)
    cols = max(1, min(ncols, n))
    rows = math.ceil(n / cols)
    fig = _new_figure(1.7 * cols + 0.9, 1.85 * rows + 0.1)
    axes = fig.subplots(rows, cols, squeeze=False)
    mappable = None
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(img)
        mappable = ax.imshow(arr[i], cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax, extent=(0, width, height, 0),
                             interpolation="bilinear")
        ax.set_title(labels[i], fontsize=11)
    bar = fig.colorbar(mappable, ax=axes.ravel().tolist(), fraction=0.04, pad=0.02)
    bar.set_label("attention (shared scale)", fontsize=9)
    return fig, (vmin, vmax)


def attention_maps_html(image, maps, labels: Sequence[str], **kwargs) -> str:
    """:func:`attention_maps_figure` inlined as one PNG, with a caption giving the shared scale."""
    fig, (vmin, vmax) = attention_maps_figure(image, maps, labels, **kwargs)
    uri = figure_data_uri(fig)
    return (f'<figure class="plot">{_img(uri, "DAAM attention map per word")}'
            f'<figcaption>One colour scale for all words: {vmin:.3g} (blue) to {vmax:.3g} (red).'
            f'</figcaption></figure>')


def segment_figure(image, segments):
    """The image with segment boundaries (yellow) and each segment's number at its centre. segments: int
    ``(H, W)`` label map, labels ``0..n-1`` (the rows of the segment table). Returns a ``Figure``."""
    img = np.asarray(as_rgb_image(image)).copy()
    seg = np.asarray(segments)
    if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.integer) or seg.shape != img.shape[:2]:
        raise ValueError(f"segments must be an int (H, W) label map matching the image {img.shape[:2]}; "
                         f"got dtype {seg.dtype} shape {seg.shape}")
    edge = np.zeros(seg.shape, dtype=bool)
    edge[:-1, :] |= seg[:-1, :] != seg[1:, :]
    edge[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    shown = img.copy()
    shown[edge] = (255, 255, 0)  # yellow boundaries
    fig = _new_figure(3.2, 3.2)
    ax = fig.add_subplot()
    ax.imshow(shown, interpolation="nearest")
    ax.set_axis_off()
    for label in np.unique(seg):
        ys, xs = np.nonzero(seg == label)
        # the segment pixel nearest the centroid (a centroid may fall outside a non-convex segment)
        k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
        ax.text(xs[k], ys[k], str(int(label)), ha="center", va="center", fontsize=10, fontweight="bold",
                color="black", bbox=dict(boxstyle="round,pad=0.15", facecolor="white", alpha=0.8, linewidth=0))
    fig.tight_layout(pad=0.1)
    return fig


def segment_table_html(image, segments, table, labels: Sequence[str]) -> str:
    """The numbered segments picture beside the segment-by-word table.

    segments: int ``(H, W)`` label map ``0..n_segments-1``; table: ``(n_segments, n_words)`` float, row ``i``
    = segment ``i``, column ``j`` = word ``labels[j]`` (e.g. shap values of the segments for each word's
    score); cells tinted per column (red positive, blue negative), the largest per column in bold.
    """
    labels = [str(label) for label in labels]
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
        cells = "".join(_table_cell(tab[i, j], cmax[j]).replace('class="num"', 'class="num best"')
                        if best[j] == i else _table_cell(tab[i, j], cmax[j]) for j in range(len(labels)))
        rows.append(f"<tr><th>{i}</th>{cells}</tr>")
    head = "".join(f"<th>{_esc(label)}</th>" for label in labels)
    table_html = (f'<table class="values segments"><thead><tr><th>segment</th>{head}</tr></thead>'
                  f'<tbody>{"".join(rows)}</tbody></table>')
    return (f'<div class="side-by-side"><figure class="plot">{_img(uri, "numbered image segments")}'
            f'<figcaption>Segments, numbered as the table rows.</figcaption></figure>{table_html}</div>')


# ------------------------------------------------------------------------------------------ seed agreement

def seed_agreement(values_per_seed, labels: Sequence[str]) -> dict:
    """How much the word ranking varies across seeds.

    values_per_seed: ``(n_seeds, n_words)`` float, one row of word values per seed; labels: ``n_words`` names.
    Returns a JSON-friendly dict:

    - ``n_seeds``, ``labels``;
    - ``per_seed``: per seed ``{"top": label of the largest value, "ranking": labels from largest to
      smallest value (stable for ties)}``;
    - ``pairs``: per seed pair ``i < j``: ``{"seeds": [i, j], "percent_ranks_aligned": 0..100,
      "spearman": rho, "kendall": tau}`` (percent of words with the same rank, ties sharing the smallest,
      :func:`captum_diffusion.metrics.percent_ranks_aligned` x 100; correlations from ``scipy.stats``,
      ``None`` when undefined, e.g. a seed whose values are all equal);
    - ``percent_ranks_aligned`` / ``spearman`` / ``kendall``: ``{"mean": ..., "min": ...}`` over the pairs
      (undefined pairs skipped; ``None`` when there is no defined pair, e.g. one seed);
    - ``mean`` / ``std``: per word, the mean and spread (population std, ``ddof=0``) across seeds;
    - ``same_top``: whether every seed has the same top word;
    - ``values`` (the input as lists) and ``ranks`` (per seed, rank 1 = largest, ties share the smallest).
    """
    from scipy import stats

    arr = np.asarray(values_per_seed, dtype=np.float64)
    labels = [str(label) for label in labels]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != len(labels) or arr.shape[1] < 1:
        raise ValueError(f"values_per_seed must be (n_seeds >= 1, n_words={len(labels)}); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("values_per_seed contains NaN or inf")
    per_seed = []
    for row in arr:
        order = np.argsort(-row, kind="stable")
        per_seed.append({"top": labels[int(order[0])], "ranking": [labels[int(k)] for k in order]})
    pairs = []
    for i, j in itertools.combinations(range(arr.shape[0]), 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant input: the correlation is undefined (nan -> None)
            rho = float(stats.spearmanr(arr[i], arr[j]).statistic) if arr.shape[1] > 1 else math.nan
            tau = float(stats.kendalltau(arr[i], arr[j]).statistic) if arr.shape[1] > 1 else math.nan
        pairs.append({"seeds": [i, j], "percent_ranks_aligned": 100.0 * percent_ranks_aligned(arr[i], arr[j]),
                      "spearman": None if math.isnan(rho) else rho, "kendall": None if math.isnan(tau) else tau})

    def summary(key: str) -> dict:
        xs = [p[key] for p in pairs if p[key] is not None]
        return {"mean": float(np.mean(xs)) if xs else None, "min": float(np.min(xs)) if xs else None}

    return {
        "n_seeds": int(arr.shape[0]),
        "labels": labels,
        "per_seed": per_seed,
        "pairs": pairs,
        "percent_ranks_aligned": summary("percent_ranks_aligned"),
        "spearman": summary("spearman"),
        "kendall": summary("kendall"),
        "mean": [float(x) for x in arr.mean(axis=0)],
        "std": [float(x) for x in arr.std(axis=0)],
        "same_top": len({s["top"] for s in per_seed}) == 1,
        "values": arr.tolist(),
        "ranks": [ranks(row).tolist() for row in arr],
    }


def _fmt(x, spec: str = ".3f", none: str = "&ndash;") -> str:
    return none if x is None else format(x, spec)


def seed_agreement_html(agreement: Mapping, seeds: Sequence[int] | None = None) -> str:
    """The :func:`seed_agreement` dict as HTML: a summary line (mean / min over seed pairs), a word-by-seed
    table of values with each word's mean and std, and each seed's ranking. seeds: the seed numbers to show
    (default ``0..n_seeds-1``)."""
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
        cells = "".join(_table_cell(values[i, j], cmax) for i in range(n))
        rows.append(f'<tr><th>{_esc(label)}</th>{cells}<td class="num">{agreement["mean"][j]:.3f}</td>'
                    f'<td class="num">{agreement["std"][j]:.3f}</td></tr>')
    table = (f'<table class="values seeds"><thead><tr><th>word</th>{head}</tr></thead>'
             f'<tbody>{"".join(rows)}</tbody></table>')
    rankings = "".join(f'<li>seed {s}: {" &gt; ".join(_esc(w) for w in p["ranking"])}</li>'
                       for s, p in zip(seeds, agreement["per_seed"]))
    return f'<div class="seed-agreement">{summary}{table}<ol class="rankings">{rankings}</ol></div>'


# ------------------------------------------------------------------------------------- pairs and curves

def interaction_pairs_html(pairs, index: str = "k-SII") -> str:
    """A table of word pairs ``[(label_i, label_j, value), ...]`` (``words.strongest_pairs``: strongest first),
    values to 3 decimals, tinted red (the two words act together: positive) or blue (redundant: negative) on
    one scale. ``index``: the interaction index named in the header."""
    pairs = [(str(a), str(b), float(v)) for a, b, v in pairs]
    if not pairs:
        raise ValueError("pairs is empty: give at least one (label_i, label_j, value)")
    values = _vector([v for _, _, v in pairs], None, "pair values")
    cmax = float(np.abs(values).max())
    rows = "".join(f"<tr><th>{_esc(a)}</th><th>{_esc(b)}</th>{_table_cell(v, cmax)}</tr>" for a, b, v in pairs)
    return (f'<table class="values interactions"><thead><tr><th>word</th><th>word</th><th>{_esc(index)}</th></tr>'
            f"</thead><tbody>{rows}</tbody></table>")


def deletion_curve_figure(curve, random_curves, method: str):
    """The payoff after deleting the attribution's top ``t`` words, ``t = 0..d`` (``curve`` ``(d+1,)``, from
    ``metrics.deletion_curve``), beside random word orderings (``random_curves`` ``(n, d+1)``: their mean and the
    5-95% band). The legend gives each one's AOPC (``mean_t [curve[0] - curve[t]]``, higher = the ranking finds
    the words the payoff depends on sooner). Returns a matplotlib ``Figure`` (not in pyplot)."""
    curve = _vector(curve, None, "curve")
    random_curves = np.asarray(random_curves, dtype=np.float64)
    if random_curves.ndim != 2 or random_curves.shape[1] != curve.size or not np.isfinite(random_curves).all():
        raise ValueError(f"random_curves must be finite, shape (n, {curve.size}), got shape {random_curves.shape}")
    steps = np.arange(curve.size)
    aopc = float((curve[0] - curve).mean())
    random_aopc = (random_curves[:, :1] - random_curves).mean(axis=1)
    fig = _new_figure(5.0, 3.2)
    ax = fig.add_subplot()
    low, high = np.percentile(random_curves, [5, 95], axis=0)
    ax.fill_between(steps, low, high, color="#bbbbbb", alpha=0.5, label="random orderings, 5-95%")
    ax.plot(steps, random_curves.mean(0), color="#777777", linestyle="--",
            label=f"random mean (AOPC {random_aopc.mean():.3f})")
    ax.plot(steps, curve, color="#d62728", marker="o", label=f"{method} order (AOPC {aopc:.3f})")
    ax.set_xlabel("words deleted, most important first")
    ax.set_ylabel("payoff")
    ax.set_xticks(steps)
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("Deletion curve", fontsize=11)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------- page

def how_to_read_html(payoff_description: str) -> str:
    """Short notes on reading each section. payoff_description: what the payoff is, e.g. "CLIP cosine
    between the sub-prompt's image and the full prompt's image, same seed"."""
    items = [
        ("Payoff", f"{_esc(payoff_description)}. Every sub-prompt of the prompt (some words deleted) is "
                   "generated and scored; the word values share out the full prompt's score among its words."),
        ("Base value", 'The empty prompt "" (every word deleted) is the empty coalition; its score '
                       '<code>f("")</code> is the base value. For exact Shapley values, base value + sum of '
                       'the word values = <code>f(prompt)</code>.'),
        ("Word values", "Positive (red): on average over the sub-prompts, adding the word raises the score. "
                        "Negative (blue): the word's presence lowers the score on average; deleting it "
                        "brings the image closer to the full prompt's. Colour strength is |value| relative "
                        "to the largest |value| of the prompt. Hover a word for its label and value; repeated "
                        "words are told apart as <code>a#0</code>, <code>a#1</code>."),
        ("Methods", "SHAP (exact or sampled Shapley values), LIME (weights of a local linear model with "
                    "its intercept as base) and captum attributions estimate the same game; disagreement "
                    "between them is a sign that the ranking is fragile."),
        ("Sub-prompt images", "Each thumbnail is one coalition's image with its payoff, in mask order."),
        ("Attention maps (DAAM)", "Cross-attention of each word summed over steps, layers and heads, laid over "
                                  "the image. All words share one colour scale (from 0 to the largest value "
                                  "of any word), so a faint map means little attention compared with the "
                                  "other words, not just a flat map."),
        ("Image segments", "The image is cut into numbered segments; the table gives each segment's value "
                           "for each word's score (largest per word in bold)."),
        ("Word pairs", "Shapley interaction (k-SII, order 2) of two words, from the same sub-prompt images: "
                       "positive (red) when the two words mean more together than apart (\"red\" with "
                       "\"circle\"), negative (blue) when either one alone does the job (redundant)."),
        ("Deletion curve", "The payoff as the words are deleted from the prompt in the order of their values, "
                           "most important first, beside random orders: the faster it falls below the random "
                           "band, the better the ranking names the words the image depends on (AOPC: the "
                           "average drop; higher is more faithful)."),
        ("Seed agreement", "The same game with different seeds. Ranks aligned: percent of words with the "
                           "same rank in both seeds (100% = identical ranking). Spearman &rho; and Kendall "
                           "&tau;: rank correlations, 1 = same order, -1 = reversed. Std: how much a "
                           "word's value moves between seeds; a large std beside a small mean means the "
                           "value is mostly the seed's noise."),
    ]
    body = "".join(f"<dt>{title}</dt><dd>{text}</dd>" for title, text in items)
    return f'<dl class="how-to-read">{body}</dl>'


def anchor_id(text: str) -> str:
    """An HTML id from ``text``: lower-case letters, digits and dashes (``"a red circle"`` ->
    ``"a-red-circle"``); ``"section"`` when nothing is left."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return slug or "section"


_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px; background: #f4f5f7; color: #1d1f23;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; }
h1 { font-size: 24px; margin: 0 0 16px; }
h2 { font-size: 18px; margin: 0 0 12px; }
section { background: #fff; border: 1px solid #dfe2e6; border-radius: 8px; padding: 16px 20px;
          margin: 0 0 18px; overflow-x: auto; }
nav.index { background: #fff; border: 1px solid #dfe2e6; border-radius: 8px; padding: 10px 20px;
            margin: 0 0 18px; }
nav.index ol { margin: 4px 0; padding-left: 22px; }
a { color: #0b57d0; }
code { background: #f0f1f3; padding: 0 3px; border-radius: 3px; }
img { image-rendering: auto; max-width: 100%; height: auto; }
.grid img, .thumb img { image-rendering: pixelated; }
.word-text { font-size: 18px; padding: 4px 0 8px; }
.word-text svg { overflow: visible; }
.shap-words { display: inline-block; font-size: 22px; line-height: 1.8; margin-top: 4px; }
.shap-word { padding: 1px 3px; border-radius: 3px; cursor: help; }
table.values { border-collapse: collapse; font-size: 14px; margin: 4px 0; }
table.values th, table.values td { border: 1px solid #dfe2e6; padding: 3px 10px; }
table.values thead th { background: #f0f1f3; }
table.values tbody th { text-align: left; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; }
tr.base td, tr.base th { background: #fafafa; font-style: italic; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; }
.thumb { width: 136px; padding: 4px; border: 1px solid #e3e5e8; border-radius: 6px; background: #fafbfc; }
.thumb img { display: block; border-radius: 3px; }
.thumb figcaption { font-size: 12px; line-height: 1.3; margin-top: 4px; word-wrap: break-word; }
.thumb .subprompt { display: block; }
.thumb .payoff { display: block; color: #555; font-variant-numeric: tabular-nums; }
.empty { color: #777; font-style: italic; }
figure.plot figcaption { font-size: 13px; color: #555; }
.side-by-side { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.side-by-side figure.plot { max-width: 340px; }
dl.how-to-read dt { font-weight: 600; margin-top: 8px; }
dl.how-to-read dd { margin: 2px 0 0 16px; }
.summary { margin: 0 0 10px; }
ol.rankings { margin: 10px 0 0; padding-left: 0; list-style: none; font-size: 14px; color: #333; }
footer { color: #777; font-size: 12px; text-align: center; margin-top: 8px; }
"""


def page(title: str, sections, index=None, *, footer: str | None = None) -> str:
    """One self-contained HTML5 document: inline CSS, no script, no external resource.

    sections: ``(heading, html)`` or ``(heading, html, anchor)`` tuples, rendered in order as
    ``<section id="anchor"><h2>heading</h2>html</section>`` (anchor default: :func:`anchor_id` of the
    heading, made unique). index: ``None`` (no index), ``True`` (link every section) or a sequence of
    ``(text, anchor)`` links, e.g. one per prompt of a multi-prompt run, shown at the top. footer: plain text.
    """
    used: set[str] = set()
    parts = []
    for entry in sections:
        if len(entry) not in (2, 3):
            raise ValueError(f"a section is (heading, html) or (heading, html, anchor); got {len(entry)} items")
        heading, body = entry[0], entry[1]
        anchor = anchor_id(entry[2] if len(entry) == 3 else heading)
        base, k = anchor, 2
        while anchor in used:
            anchor, k = f"{base}-{k}", k + 1
        used.add(anchor)
        parts.append((str(heading), str(body), anchor))
    if index is True:
        index = [(heading, anchor) for heading, _, anchor in parts]
    nav = ""
    if index:
        links = "".join(f'<li><a href="#{_esc(anchor_id(anchor))}">{_esc(str(text))}</a></li>'
                        for text, anchor in index)
        nav = f'<nav class="index"><b>Contents</b><ol>{links}</ol></nav>'
    body = "".join(f'<section id="{anchor}"><h2>{_esc(heading)}</h2>{html}</section>'
                   for heading, html, anchor in parts)
    foot = f"<footer>{_esc(footer)}</footer>" if footer else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>{_esc(str(title))}</title><style>{_CSS}</style></head>"
            f"<body><main><h1>{_esc(str(title))}</h1>{nav}{body}{foot}</main></body></html>\n")


def write_page(path, html: str) -> Path:
    """Write ``html`` to ``path`` (UTF-8) atomically: a temporary file in the same folder, then
    ``os.replace``; a reader never sees half a page. Creates missing parent folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(html)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the report unreadable to others
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
