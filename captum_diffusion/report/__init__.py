"""Building blocks of the self-contained HTML report: plain Python / numpy / shap objects in, HTML out.

Nothing here loads a model or touches the network, so a saved run can be re-rendered years later. Images are
inlined as base64 PNG ``data:`` URIs or linked as files beside the page; the page carries its CSS inline and loads
no script, font or style from anywhere (the index page of a large run has a little inline script to sort and
filter), so it opens from disk with no console errors. Fragments are ``str`` of HTML; :func:`page` puts them in one
document and :func:`write_page` saves it atomically.

Modules: ``document`` (the page, its CSS, writing it), ``sections`` (one HTML fragment per kind of section),
``bars`` (bar charts with error bars and the waterfall, in HTML), ``index`` (the index page's sortable table),
``figures`` (matplotlib figures, returned, never shown), ``shap_text`` (the repair of ``shap.plots.text``'s HTML),
``inline`` (images as ``data:`` URIs) and ``common`` (captions, checks and colours they share). A new kind of
section is a function in ``sections`` (its figure in ``figures``), exported here and called by
``captum_diffusion.runs.render``.

Conventions: ``words`` are the prompt's words in order; ``labels`` are their unique names (``a#0``, ``a#1``
for a repeated "a", from :func:`captum_diffusion.words.word_labels`); values are one float per word in the
payoff's units (e.g. CLIP cosine); images are PIL images or arrays accepted by
:func:`captum_diffusion.convert.as_rgb_image` (uint8 ``(H, W, 3)`` etc.).

``seed_agreement`` (a statistic, not HTML) now lives in :mod:`captum_diffusion.metrics`; reading it from here still
works for one release with a ``DeprecationWarning``.

>>> from captum_diffusion import report
>>> words = "a red circle".split()
>>> html = report.page("a red circle", [("Words", report.word_text_html(words, [0.1, 0.6, -0.2]))])
>>> report.write_page("run/report.html", html)  # doctest: +SKIP
"""
from __future__ import annotations

import warnings

from captum_diffusion.lazy import lazy_getattr

_EXPORTS = {
    "EMPTY_PROMPT_LABEL": "common",
    "BASE_LABEL": "common",
    "PROMPT_LABEL": "common",
    "image_data_uri": "inline",
    "figure_data_uri": "inline",
    "bar_chart": "figures",
    "waterfall": "figures",
    "attention_maps_figure": "figures",
    "segment_figure": "figures",
    "deletion_curve_figure": "figures",
    "word_text_html": "sections",
    "values_table_html": "sections",
    "subprompt_grid_html": "sections",
    "attention_maps_html": "sections",
    "segment_table_html": "sections",
    "seed_agreement_html": "sections",
    "interaction_pairs_html": "sections",
    "how_to_read_html": "sections",
    "certainty_html": "sections",
    "collapsed_html": "sections",
    "value_bars_html": "bars",
    "waterfall_html": "bars",
    "top_words_html": "index",
    "index_table_html": "index",
    "anchor_id": "document",
    "page": "document",
    "write_page": "document",
}

__all__ = sorted(_EXPORTS)

_lazy = lazy_getattr(__name__, _EXPORTS)


def __getattr__(name: str):
    """The exports above, imported on first use; ``seed_agreement`` from its new home, with a warning."""
    if name == "seed_agreement":
        warnings.warn("captum_diffusion.report.seed_agreement moved to captum_diffusion.metrics.seed_agreement; "
                      "the old name goes in the next release", DeprecationWarning, stacklevel=2)
        from captum_diffusion.metrics.agreement import seed_agreement

        return seed_agreement
    return _lazy(name)
