"""The report as self-contained HTML documents: inline CSS (and, for the index, a little inline script), no external
resource, written atomically."""
from __future__ import annotations

import re
from html import escape
from pathlib import Path

from captum_diffusion.files import atomic_write


def anchor_id(text: str) -> str:
    """An HTML id made of ``text``.

    Parameters
    ----------
    text : str
        A heading or name.

    Returns
    -------
    str
        Lower-case letters, digits and dashes (``"a red circle"`` -> ``"a-red-circle"``); ``"section"`` when
        nothing is left.
    """
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
.bars, .waterfall { font-size: 14px; min-width: 420px; max-width: 640px; flex: 1 1 420px; }
.bar-legend { font-size: 13px; color: #444; margin-bottom: 4px; }
.bar-legend .key { display: inline-block; width: 12px; height: 12px; margin: 0 4px -1px 8px; }
.bar-legend .err-key { display: inline-block; width: 22px; height: 8px; margin: 0 4px 0 10px;
                       border: 2px solid #222; border-width: 0 2px; background: linear-gradient(#222, #222)
                       center / 100% 2px no-repeat; }
.bar-group { margin: 2px 0 6px; }
.bar-word { font-weight: 600; }
.bar-row { display: flex; align-items: center; gap: 8px; height: 20px; }
.bar-method { flex: 0 0 185px; font-size: 13px; color: #444; overflow: hidden; text-overflow: ellipsis;
              white-space: nowrap; }
.track { position: relative; flex: 1 1 auto; height: 16px; background: #f4f5f7; }
.track .bar { position: absolute; top: 2px; height: 12px; }
.track .zero { position: absolute; top: 0; height: 16px; border-left: 1px solid #444; }
.track .err { position: absolute; top: 3px; height: 10px; border: 0 solid #222; border-width: 0 2px;
              background: linear-gradient(#222, #222) center / 100% 2px no-repeat; }
.bar-value { flex: 0 0 120px; font-size: 13px; font-variant-numeric: tabular-nums; text-align: right; }
.ci { display: block; font-size: 11px; color: #333; white-space: nowrap; }
ul.certainty { margin: 6px 0 12px; padding-left: 20px; }
details > summary { cursor: pointer; color: #0b57d0; margin: 6px 0; }
table.index { border-collapse: collapse; font-size: 14px; width: 100%; }
table.index th, table.index td { border-bottom: 1px solid #e3e5e8; padding: 4px 8px; vertical-align: middle; }
table.index thead th { position: sticky; top: 0; background: #f0f1f3; cursor: pointer; white-space: nowrap;
                       user-select: none; }
table.index thead th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.index thead th[aria-sort="descending"]::after { content: " \\25BC"; }
table.index img { display: block; image-rendering: pixelated; }
.top-words { min-width: 260px; }
.top-word { display: flex; align-items: center; gap: 6px; height: 18px; font-size: 13px; }
.top-word .word { flex: 0 0 80px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.top-word .track { flex: 0 0 90px; height: 12px; }
.top-word .track .bar { top: 2px; height: 8px; }
.top-word .track .err { top: 1px; }
.top-word .num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.filter { margin: 0 0 10px; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
.filter input { font: inherit; padding: 3px 8px; min-width: 280px; }
.back { margin: 0 0 12px; }
"""


def page(title: str, sections, index=None, *, footer: str | None = None, header: str | None = None,
         script: str | None = None) -> str:
    """One self-contained HTML5 document: inline CSS, no external resource.

    Parameters
    ----------
    title : str
        The page's title and top heading.
    sections : iterable of tuple
        ``(heading, html)`` or ``(heading, html, anchor)``, rendered in order as
        ``<section id="anchor"><h2>heading</h2>html</section>``; anchor default: :func:`anchor_id` of the
        heading, made unique.
    index : None, True or sequence of (str, str), optional
        ``None``: no index; ``True``: link every section; or ``(text, anchor)`` links (e.g. one per prompt of a
        multi-prompt run), shown at the top.
    footer : str, optional
        Plain text at the bottom.
    header : str, optional
        HTML placed under the title (e.g. a link back to the index page).
    script : str, optional
        JavaScript run from an inline ``<script>`` at the end of the body (no other script is loaded).

    Returns
    -------
    str
        The document, ending in a newline.
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
        links = "".join(f'<li><a href="#{escape(anchor_id(anchor))}">{escape(str(text))}</a></li>'
                        for text, anchor in index)
        nav = f'<nav class="index"><b>Contents</b><ol>{links}</ol></nav>'
    body = "".join(f'<section id="{anchor}"><h2>{escape(heading)}</h2>{html}</section>'
                   for heading, html, anchor in parts)
    foot = f"<footer>{escape(footer)}</footer>" if footer else ""
    code = f"<script>{script}</script>" if script else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>{escape(str(title))}</title><style>{_CSS}</style></head>"
            f"<body><main><h1>{escape(str(title))}</h1>{header or ''}{nav}{body}{foot}</main>{code}</body></html>\n")


def write_page(path, html: str) -> Path:
    """Write the page to a file atomically (:func:`captum_diffusion.files.atomic_write`).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.html`` file; missing parent folders are created.
    html : str
        The document, e.g. from :func:`page`; written as UTF-8, newlines unchanged.

    Returns
    -------
    pathlib.Path
        ``path``. A reader (a browser reloading it) sees the old page or the new one, never half of one.
    """
    return atomic_write(path, str(html).encode("utf-8"))
