"""The report's matplotlib figures: word values by method, shap's waterfall, attention maps, numbered image
segments and the deletion curve. Each function returns its ``Figure`` and shows nothing; all but the waterfall
(shap draws with pyplot) are built outside pyplot, so no GUI backend or global state is involved.
:func:`captum_diffusion.report.figure_data_uri` turns a figure into an ``<img>`` source."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from captum_diffusion.convert import as_rgb_image
from captum_diffusion.report.common import BASE_LABEL, PROMPT_LABEL, finite_vector
from captum_diffusion.words.game import word_labels


def _new_figure(width: float, height: float):
    """A matplotlib ``Figure`` outside pyplot (no global state, no GUI backend needed)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def bar_chart(labels: Sequence[str], values_by_method: Mapping[str, object], base_value: float | None = None,
              errors_by_method: Mapping[str, object] | None = None):
    """Horizontal grouped bars: one group per word (first word on top), one bar per method, with error bars.

    The report draws the same chart in HTML (:func:`captum_diffusion.report.bars.value_bars_html`); this figure is
    for notebooks and papers. Its text is 11-12 pt at 5.5 inches wide: shown at its own size it reads at 15 px.

    Parameters
    ----------
    labels : sequence of str
        ``n_words`` word labels.
    values_by_method : mapping of str to array_like
        Method name (``"shap-exact"``, ``"lime"``, ``"captum-shapley_sampling"``...) -> ``(n_words,)`` values,
        payoff units.
    base_value : float, optional
        The empty prompt's payoff, noted in the title.
    errors_by_method : mapping of str to array_like, optional
        Method -> ``(n_words,)`` error-bar half-widths (e.g. 95% intervals), payoff units; NaN draws none.

    Returns
    -------
    matplotlib.figure.Figure
        Not shown; not in pyplot.
    """
    labels = [str(label) for label in labels]
    errors = {str(m): np.asarray(e, dtype=np.float64).reshape(-1) for m, e in (errors_by_method or {}).items()}
    if not values_by_method:
        raise ValueError("values_by_method is empty")
    methods = {str(m): finite_vector(v, len(labels), f"values of {m!r}") for m, v in values_by_method.items()}
    n, k = len(labels), len(methods)
    fig = _new_figure(5.5, 1.0 + max(1.4, n * (0.12 + 0.2 * k)))
    ax = fig.add_subplot()
    height = 0.8 / k
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
    y = np.arange(n)
    for j, (method, vals) in enumerate(methods.items()):
        offset = (j - (k - 1) / 2) * height
        err = errors.get(method)
        err = None if err is None or not np.isfinite(err).any() else np.where(np.isfinite(err), err, 0.0)
        ax.barh(y + offset, vals, height=height * 0.95, label=method, color=palette[j % len(palette)], xerr=err,
                error_kw=dict(ecolor="#222", elinewidth=1.2, capsize=3))
    ax.axvline(0.0, color="#444", linewidth=0.8)
    ax.set_yticks(y, labels, fontsize=12)
    ax.tick_params(axis="x", labelsize=11)
    ax.invert_yaxis()
    ax.set_xlabel("value (payoff units)", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    title = "Word values per method"
    if base_value is not None:
        title += f'  (base f("") = {float(base_value):.3f})'
    ax.set_title(title, fontsize=12)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=11, frameon=False)
    fig.tight_layout()
    return fig


def waterfall(explanation, labels: Sequence[str] | None = None, *, max_display: int = 20):
    """``shap.plots.waterfall`` of a single-prompt word explanation, relabelled for prompts.

    Parameters
    ----------
    explanation : shap.Explanation
        ``values`` ``(n_words,)`` and a scalar ``base_values`` (the empty prompt's payoff).
    labels : sequence of str, optional
        The bar names; default ``explanation.feature_names``, else ``word_labels(explanation.data)``. The words
        are not repeated as feature values, so the two "a"s of "a red circle and a blue square" read ``a#0`` /
        ``a#1`` (not "a = a").
    max_display : int, optional
        As for ``shap.plots.waterfall``.

    Returns
    -------
    matplotlib.figure.Figure
        A pyplot figure (shap draws with pyplot; :func:`captum_diffusion.report.figure_data_uri` closes it), with
        ``E[f(X)]`` written ``f("") (empty prompt) = ...`` and ``f(x)`` written ``f(prompt) = ...``.
    """
    import matplotlib.pyplot as plt
    import shap

    values = finite_vector(explanation.values, None, "explanation.values")
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


def _maps(maps, n_labels: int) -> np.ndarray:
    """``maps`` (array or tensor) as float64 ``(n_labels, H, W)``; ``ValueError`` for another shape or NaN / inf."""
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
    """One panel per word, its attention map over the image, all panels on one colour scale.

    Parameters
    ----------
    image : PIL.Image.Image or array_like
        The generated image.
    maps : array_like or torch.Tensor
        float ``(n_words, h, w)``, any resolution (stretched over the image).
    labels : sequence of str
        ``n_words`` panel titles.
    ncols : int, optional
        Panels per row at most.
    alpha : float, optional
        Opacity of the maps over the image.
    cmap : str, optional
        A matplotlib colour map name.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Not in pyplot; one colour bar for all panels.
    scale : tuple of (float, float)
        ``(vmin, vmax)``: ``min(0, all maps' min)`` and all maps' max.
    """
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


def segment_figure(image, segments):
    """The image with segment boundaries (yellow) and each segment's number at its centre.

    Parameters
    ----------
    image : PIL.Image.Image or array_like
        The image, ``(H, W)`` pixels.
    segments : array_like
        int ``(H, W)`` label map, labels ``0..n-1`` (the rows of the segment table).

    Returns
    -------
    matplotlib.figure.Figure
        Not in pyplot.
    """
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


def deletion_curve_figure(curve, random_curves, method: str):
    """The payoff as the attribution's top words are deleted, beside random word orderings.

    Parameters
    ----------
    curve : array_like
        float ``(d+1,)``: the payoff after deleting the top ``t`` words, ``t = 0..d``
        (:func:`captum_diffusion.metrics.deletion_curve`).
    random_curves : array_like
        float ``(n, d+1)``: the same for random orderings, drawn as their mean and 5-95% band.
    method : str
        The attribution's name, for the legend.

    Returns
    -------
    matplotlib.figure.Figure
        Not in pyplot. The legend gives each one's AOPC (``mean_t [curve[0] - curve[t]]``; higher: the ranking
        finds the words the payoff depends on sooner).
    """
    curve = finite_vector(curve, None, "curve")
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

