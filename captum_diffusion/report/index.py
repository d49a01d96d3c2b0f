"""The index page of a large run: one sortable, filterable table row per prompt, linking to the prompt's own page.

The table is plain HTML; a little inline JavaScript (:data:`INDEX_SCRIPT`, no library, no network) sorts it when a
column's header is clicked (by each cell's ``data-sort``: numbers as numbers, empty cells last) and filters its rows
by the text typed in ``input#filter`` (each row's ``data-text``)."""
from __future__ import annotations

from html import escape
from typing import Sequence

import numpy as np

from captum_diffusion.report.bars import NEGATIVE, POSITIVE, Scale


def top_words_html(labels: Sequence[str], values, half_widths=None, *, k: int = 3) -> str:
    """The ``k`` largest word values of a prompt, largest first, each a small bar with its error bar.

    Parameters
    ----------
    labels : sequence of str
        ``n_words`` word labels.
    values : array_like
        float ``(n_words,)``, payoff units.
    half_widths : array_like, optional
        float ``(n_words,)`` half-widths of the 95% intervals; NaN (not known) or 0 (exact) draw none.
    k : int, optional
        How many words.

    Returns
    -------
    str
        HTML ``div.top-words`` of ``div.top-word`` (label, bar on a scale shared by the row's words, value and
        ``± half``); a drawn interval is a ``span.err``.
    """
    values = np.asarray(values, dtype=np.float64)
    halves = np.full(values.shape, np.nan) if half_widths is None else np.asarray(half_widths, dtype=np.float64)
    order = np.argsort(-values, kind="stable")[:k]
    known = np.where(np.isfinite(halves), halves, 0.0)
    scale = Scale(values[order] - known[order], values[order] + known[order])
    rows = []
    for i in order:
        colour = POSITIVE if values[i] >= 0 else NEGATIVE
        err = ""
        text = f"{values[i]:+.3f}"
        if np.isfinite(halves[i]) and halves[i] > 0:
            err = scale.span(values[i] - halves[i], values[i] + halves[i], "err", "", "95% interval")
            text += f" ± {halves[i]:.3f}"
        rows.append(f'<div class="top-word"><span class="word">{escape(str(labels[i]))}</span><span class="track">'
                    f'{scale.zero()}{scale.span(0.0, values[i], "bar", f" background: {colour};")}{err}</span>'
                    f'<span class="num">{text}</span></div>')
    return f'<div class="top-words">{"".join(rows)}</div>'


def cell(html: str, sort=None) -> tuple[str, str]:
    """A table cell: its HTML and its sort key (a number, a string, or ``None``: sorted last)."""
    if sort is None or (isinstance(sort, float) and not np.isfinite(sort)):
        return html, ""
    return html, (f"{sort:.9g}" if isinstance(sort, (int, float, np.floating)) else str(sort))


def index_table_html(columns: Sequence[str], rows: Sequence[Sequence[tuple[str, str]]], texts: Sequence[str]) -> str:
    """The sortable, filterable table of the index page.

    Parameters
    ----------
    columns : sequence of str
        The headers (plain text).
    rows : sequence of sequence of (str, str)
        Per row, one :func:`cell` per column: its HTML and sort key.
    texts : sequence of str
        Per row, the text the filter searches (e.g. the prompt, its words and its status).

    Returns
    -------
    str
        HTML: the filter box (``input#filter``, with the count of rows shown in ``span#shown``) and
        ``table.index``; :data:`INDEX_SCRIPT` makes them work.
    """
    if len(rows) != len(texts):
        raise ValueError(f"{len(rows)} rows but {len(texts)} filter texts")
    head = "".join(f'<th tabindex="0" scope="col">{escape(c)}</th>' for c in columns)
    body = []
    for row, text in zip(rows, texts):
        if len(row) != len(columns):
            raise ValueError(f"a row has {len(row)} cells for {len(columns)} columns")
        cells = "".join(f'<td data-sort="{escape(key)}">{html}</td>' for html, key in row)
        body.append(f'<tr data-text="{escape(text.lower())}">{cells}</tr>')
    box = (f'<div class="filter"><label>Filter <input id="filter" type="search" '
           f'placeholder="words, prompt or status"></label><span><span id="shown">{len(rows)}</span> of '
           f'{len(rows)} prompts shown; click a header to sort</span></div>')
    return f'{box}<table class="index"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


#: Sorting and filtering of ``table.index`` (see the module docstring); plain JavaScript, run once at load.
INDEX_SCRIPT = """
(function () {
  const table = document.querySelector('table.index');
  if (!table) return;
  const body = table.tBodies[0];
  const heads = Array.from(table.tHead.rows[0].cells);
  function sortBy(col) {
    const th = heads[col];
    const dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    heads.forEach(h => h.removeAttribute('aria-sort'));
    th.setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
    const rows = Array.from(body.rows);
    const key = r => r.cells[col].dataset.sort;
    const numeric = rows.every(r => key(r) === '' || !isNaN(Number(key(r))));
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === '' || y === '') return (x === '') - (y === '');
      return dir * (numeric ? Number(x) - Number(y) : x.localeCompare(y));
    });
    body.append(...rows);
  }
  heads.forEach((th, col) => {
    th.addEventListener('click', () => sortBy(col));
    th.addEventListener('keydown', e => { if (e.key === 'Enter') sortBy(col); });
  });
  const input = document.getElementById('filter');
  const shown = document.getElementById('shown');
  input.addEventListener('input', () => {
    const words = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
    let n = 0;
    for (const row of body.rows) {
      row.hidden = !words.every(w => row.dataset.text.includes(w));
      n += !row.hidden;
    }
    shown.textContent = n;
  });
})();
"""
