"""Bar charts drawn in HTML and CSS: word values by method with their error bars, and the waterfall from the empty
prompt's payoff to the full prompt's. Text is the page's own (readable at any zoom, selectable), no image is made,
and a page of a thousand prompts draws them in milliseconds.

Each bar is a ``span.bar`` placed on a track by ``left`` / ``width`` percentages of one shared scale; an interval is
a ``span.err`` (a line with end caps) over it, with ``data-low`` / ``data-high`` in payoff units. A value is red when
positive, blue when negative (shap's colours, as the coloured words)."""
from __future__ import annotations

from html import escape
from typing import Mapping, Sequence

import numpy as np

from captum_diffusion.report.common import finite_vector

#: Colours of the methods' bars, in order (matplotlib's tab10, as the other figures).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
POSITIVE, NEGATIVE = "#ff0051", "#008bfb"


class Scale:
    """A linear map from payoff units to percent of a track, covering the finite numbers of ``arrays`` and, when
    ``zero``, 0."""

    def __init__(self, *arrays, zero: bool = True):
        finite = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays]
                                + [np.zeros(1 if zero else 0)])
        finite = finite[np.isfinite(finite)]
        self.low, self.high = float(finite.min()), float(finite.max())
        if self.high - self.low < 1e-12:
            self.high = self.low + 1.0

    def at(self, x: float) -> float:
        """``x`` as percent of the track, 0..100."""
        return 100.0 * (float(x) - self.low) / (self.high - self.low)

    def span(self, a: float, b: float, css_class: str, style: str = "", title: str = "", data: str = "") -> str:
        """A ``span`` of ``css_class`` from ``a`` to ``b`` (either order) on the track."""
        left, right = sorted((self.at(a), self.at(b)))
        tip = f' title="{escape(title)}"' if title else ""
        return (f'<span class="{css_class}" style="left: {left:.2f}%; width: {max(right - left, 0.15):.2f}%;'
                f'{style}"{tip}{data}></span>')

    def zero(self) -> str:
        """The track's zero line."""
        return f'<span class="zero" style="left: {self.at(0.0):.2f}%"></span>'


def _value_text(value: float, half: float | None) -> str:
    """``"+0.123 ± 0.045"`` (``half``: the interval's half-width, omitted when unknown or zero)."""
    if half is None or not np.isfinite(half) or half == 0:
        return f"{value:+.3f}"
    return f"{value:+.3f} ± {half:.3f}"


def value_bars_html(labels: Sequence[str], values_by_method: Mapping[str, object],
                    half_widths_by_method: Mapping[str, object] | None = None, *, level: float = 0.95) -> str:
    """Horizontal grouped bars, one group per word (in prompt order), one bar per method, with error bars.

    Parameters
    ----------
    labels : sequence of str
        ``n_words`` word labels.
    values_by_method : mapping of str to array_like
        Method -> ``(n_words,)`` values, payoff units.
    half_widths_by_method : mapping of str to array_like, optional
        Method -> ``(n_words,)`` half-widths of the ``level`` intervals (``value ± half``), payoff units; NaN
        (not known) or 0 (exact) draw no error bar. Methods left out have none.
    level : float, optional
        The intervals' level, for the legend.

    Returns
    -------
    str
        HTML ``div.bars``: per word a ``div.bar-group`` of ``div.bar-row`` (method, track, value text); a drawn
        interval is a ``span.err`` with ``data-low`` / ``data-high``.
    """
    labels = [str(label) for label in labels]
    if not values_by_method:
        raise ValueError("values_by_method is empty")
    methods = {str(m): finite_vector(v, len(labels), f"values of {m!r}") for m, v in values_by_method.items()}
    halves = {str(m): np.asarray(h, dtype=np.float64).reshape(-1) for m, h in (half_widths_by_method or {}).items()}
    for m, h in halves.items():
        if m not in methods or h.size != len(labels):
            raise ValueError(f"half_widths_by_method[{m!r}] must be one half-width per word of a shown method")
    ends = [v + halves[m] for m, v in methods.items() if m in halves] + [v - halves[m] for m, v in methods.items()
                                                                         if m in halves]
    scale = Scale(*methods.values(), *ends)
    colours = {m: PALETTE[j % len(PALETTE)] for j, m in enumerate(methods)}
    groups = []
    for i, label in enumerate(labels):
        rows = []
        for m, v in methods.items():
            half = float(halves[m][i]) if m in halves else None
            bar = scale.span(0.0, v[i], "bar", f" background: {colours[m]};", f"{m}: {_value_text(v[i], half)}")
            err = ""
            if half is not None and np.isfinite(half) and half > 0:
                err = scale.span(v[i] - half, v[i] + half, "err", "", f"{100 * level:g}% interval",
                                 f' data-low="{v[i] - half:.6g}" data-high="{v[i] + half:.6g}"')
            rows.append(f'<div class="bar-row"><span class="bar-method" title="{escape(m)}">{escape(m)}</span>'
                        '<span class="track">'
                        f'{scale.zero()}{bar}{err}</span>'
                        f'<span class="bar-value">{_value_text(v[i], half)}</span></div>')
        groups.append(f'<div class="bar-group"><div class="bar-word">{escape(label)}</div>{"".join(rows)}</div>')
    legend = "".join(f'<span class="key" style="background: {c}"></span>{escape(m)} ' for m, c in colours.items())
    return (f'<div class="bars"><div class="bar-legend">{legend}<span class="err-key"></span>{100 * level:g}% '
            f'interval (where known)</div>{"".join(groups)}</div>')


def waterfall_html(labels: Sequence[str], values, base_value: float, *, max_display: int = 20) -> str:
    """shap's waterfall in HTML: from ``f("")`` (the empty prompt) to ``f(prompt)``, one word at a time.

    Parameters
    ----------
    labels : sequence of str
        ``n_words`` word labels.
    values : array_like
        float ``(n_words,)`` Shapley values, payoff units.
    base_value : float
        The empty prompt's payoff.
    max_display : int, optional
        Words shown at most, largest ``|value|`` first; the rest share one row.

    Returns
    -------
    str
        HTML ``div.waterfall``: rows from ``f("")`` down to ``f(prompt) = f("") + sum(values)``, each word a red
        (raises) or blue (lowers) bar from the running total before it to the one after it.
    """
    labels = [str(label) for label in labels]
    values = finite_vector(values, len(labels), "values")
    base = float(base_value)
    order = list(np.argsort(-np.abs(values), kind="stable"))
    steps = [(labels[i], float(values[i])) for i in order[:max_display]]
    if len(order) > max_display:
        steps.append((f"{len(order) - max_display} other words", float(values[order[max_display:]].sum())))
    totals = base + np.cumsum([0.0] + [v for _, v in steps])
    scale = Scale(totals, zero=False)
    rows = [_waterfall_row('f("") (empty prompt)', scale.span(scale.low, base, "bar", " background: #999;"),
                           f"{base:.3f}")]
    for (label, v), before in zip(steps, totals[:-1]):
        colour = POSITIVE if v >= 0 else NEGATIVE
        rows.append(_waterfall_row(label, scale.span(before, before + v, "bar", f" background: {colour};"),
                                   f"{v:+.3f}"))
    rows.append(_waterfall_row("f(prompt)", scale.span(scale.low, totals[-1], "bar", " background: #555;"),
                               f"{totals[-1]:.3f}"))
    return f'<div class="waterfall">{"".join(rows)}</div>'


def _waterfall_row(label: str, bar: str, text: str) -> str:
    return (f'<div class="bar-row"><span class="bar-method">{escape(label)}</span><span class="track">{bar}</span>'
            f'<span class="bar-value">{text}</span></div>')
