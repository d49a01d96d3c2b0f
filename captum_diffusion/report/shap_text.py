"""``shap.plots.text`` made usable in a static page: its HTML repaired by regular expressions over shap's output.

shap 0.51 under numpy 2 writes colours as ``rgba(np.float64(255.0), ...)`` (invalid CSS), joins the words without
spaces, names the base value ``base value`` and ``f(inputs)``, and leaves axis numbers under the labels of its force
bar. :func:`shap_text_html` repairs all of that, or returns ``None`` when shap's HTML does not look as expected (another
shap version), so the caller can render the words itself.
"""
from __future__ import annotations

import re
from html import escape

import numpy as np

from captum_diffusion.report.common import BASE_LABEL, PROMPT_LABEL, word_title

#: What shap's HTML looks like (shap 0.51): numpy scalars in colours, word divs, the "inputs" caption, axis labels.
_NUMPY_SCALAR = re.compile(r"np\.(?:float|int|uint)\d*\(([^()]*)\)")
_SHAP_WORD = re.compile(r"<div id='(_tp_[a-z]+_ind_(\d+))'")
_SHAP_INPUTS = ("<div align='center'><div style=\"color: rgb(120,120,120); font-size: 12px; margin-top: -15px;\">"
                "inputs</div>")
_SHAP_BASE = ">base value</text>"
_SHAP_FX = '>f<tspan baseline-shift="sub" font-size="8px"></tspan>(inputs)</text>'


def shap_text_html(words: list[str], values: np.ndarray, labels: list[str], base_value) -> str | None:
    """``shap.plots.text`` of the words, repaired, or ``None`` when shap's HTML is not shaped as expected.

    Parameters
    ----------
    words : list of str
        The prompt's words (each but the last is given a trailing space, as shap joins them without one).
    values : numpy.ndarray
        float64 ``(n_words,)``, payoff units.
    labels : list of str
        ``n_words`` unique word names, for the tooltips.
    base_value : float or None
        The empty prompt's payoff; given, shap's force bar from ``f("")`` to ``f(prompt)`` is kept above the words.

    Returns
    -------
    str or None
        HTML: colours repaired for numpy 2 (``rgba(np.float64(255.0), ...)`` -> ``rgba(255.0, ...)``), each word a
        div of class ``shap-word`` with a tooltip, ``data-label`` and ``data-value``, all inside
        ``div.shap-words``. ``None`` when shap fails or writes other HTML (another shap version): the caller then
        renders the words itself.
    """
    import shap

    tokens = [escape(w, quote=False) + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
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
        return (f"<div id='{match.group(1)}' class='shap-word' title='{escape(word_title(labels[i], values[i]))}' "
                f"data-label='{escape(labels[i])}' data-value='{values[i]:.6g}'")

    out = _SHAP_WORD.sub(annotate, out)
    # move each word's trailing space out of its coloured box, between the words: the boxes stay apart
    out = re.sub(r"(\n\s*>[^<]*?) </div></div>", r"\1</div></div> ", out)
    head, tail = out.split(_SHAP_INPUTS, 1)
    if base_value is None:
        head = ""  # shap's force bar needs the base value; without one show the coloured words only
    else:
        head = _tidy_force_plot(head.replace(_SHAP_BASE, f">{escape(BASE_LABEL)}</text>")
                                .replace(_SHAP_FX, f">{PROMPT_LABEL}</text>"))
    inputs = _SHAP_INPUTS.replace("inputs</div>", "prompt words</div>")
    return f"{head}{inputs}<div class='shap-words'>{tail[:-len('</div>')]}</div></div>"
_SVG_LABEL_X = re.compile(r'<text x="([-+\d.eE]+)%" y="10"')
_SVG_NUMBER = re.compile(r'(<text x="[-+\d.eE]+%" y="27"[^>]*>)([-+]?\d+\.\d{4,})(</text>)')
_SVG_SEGMENT = re.compile(r'(<svg x="[-+\d.eE]+%" y="40" height="20" width="([-+\d.eE]+)%">\s*'
                          r'<svg x="0" y="0" width="100%" height="100%">\s*)<text [^>]*>([^<]*)</text>')
_SVG_TICK = re.compile(r'<text x="([-+\d.eE]+)%" y="27" font-size="12px" fill="rgb\(120,120,120\)" '
                       r'dominant-baseline="bottom" text-anchor="middle">[^<]*</text>')


def _tidy_force_plot(svg: str, *, clearance: float = 5.0, apart: float = 24.0) -> str:
    """Keep the labels of shap's force bar readable: drop axis tick numbers within ``clearance`` percent of the
    width of the ``f("")`` / ``f(prompt)`` value labels (shap paints a white halo over them, leaving stray
    digits), round those values to 3 decimals, drop a word's name from a bar segment too narrow for it (the page
    lets SVG overflow, so it would spill over its neighbours), and when the two labels are closer than ``apart``
    percent, anchor the left one's texts at their end and the right one's at their start so they do not
    overlap."""
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
    # f("") and f(prompt) to 3 decimals, as everywhere else on the page (shap writes 0.241275)
    svg = _SVG_NUMBER.sub(lambda m: f"{m.group(1)}{float(m.group(2)):.3f}{m.group(3)}", svg)
    # a word's name inside its segment of the bar only where it fits (about 1% of the bar per character)
    svg = _SVG_SEGMENT.sub(lambda m: m.group(0) if float(m.group(2)) >= 1.1 * len(m.group(3)) + 1 else m.group(1), svg)
    if abs(xs[0] - xs[1]) < apart:
        order = sorted(zip(xs, specials))
        for (_, x), anchor in zip(order, ("end", "start")):
            svg = re.sub(rf'(<text x="{re.escape(x)}%" y="(?:10|27)"[^>]*?)text-anchor="middle"',
                         rf'\1text-anchor="{anchor}"', svg)
    return svg

