"""What the report's modules share: the captions of the empty prompt and of shap's base value, argument checks for
word values and labels, and shap's red / blue colour of a value (as CSS and as a tinted table cell)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from captum_diffusion.words.game import word_labels

#: How the empty prompt ``""`` (the empty coalition) is shown in captions.
EMPTY_PROMPT_LABEL = "(empty prompt)"
#: The waterfall's label for shap's base value ``E[f(X)]``: the empty prompt's score.
BASE_LABEL = 'f("") (empty prompt)'
#: The waterfall's label for shap's ``f(x)``: the full prompt's score.
PROMPT_LABEL = "f(prompt)"


def finite_vector(values, d: int | None, name: str) -> np.ndarray:
    """``values`` as a float64 vector, checked.

    Parameters
    ----------
    values : array_like
        Any shape; flattened.
    d : int or None
        The number of words it must hold; ``None``: any number.
    name : str
        The argument's name, for the error.

    Returns
    -------
    numpy.ndarray
        float64 ``(d,)``. ``ValueError`` naming ``name`` for a wrong length, NaN or inf.
    """
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if d is not None and arr.size != d:
        raise ValueError(f"{name} has {arr.size} values but there are {d} words")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf: {arr}")
    return arr


def label_list(words: Sequence[str], labels) -> list[str]:
    """One unique name per word: ``labels`` as strings, or ``word_labels(words)`` (``a#0``, ``a#1``) when ``None``.

    Parameters
    ----------
    words : sequence of str
        The prompt's words.
    labels : sequence of str or None
        Given names, one per word.

    Returns
    -------
    list of str
        ``len(words)`` names; ``ValueError`` when ``labels`` has another length.
    """
    labels = word_labels(list(words)) if labels is None else [str(label) for label in labels]
    if len(labels) != len(words):
        raise ValueError(f"{len(labels)} labels for {len(words)} words")
    return labels


def css_rgba(value: float, cmax: float) -> str:
    """shap's text-plot colour of ``value`` as CSS ``"rgba(r, g, b, a)"``.

    Parameters
    ----------
    value : float
        The value to colour, payoff units.
    cmax : float
        The end of the symmetric scale ``[-cmax, cmax]`` (e.g. the largest ``|value|`` shown beside it).

    Returns
    -------
    str
        Red for positive, blue for negative, alpha growing with ``|value| / cmax``
        (``shap.plots.colors.red_transparent_blue``).
    """
    from shap.plots import colors

    r, g, b, a = colors.red_transparent_blue(0.5 + 0.5 * value / (cmax + 1e-8))
    return f"rgba({round(r * 255)}, {round(g * 255)}, {round(b * 255)}, {round(float(a), 3)})"


def word_title(label: str, value: float) -> str:
    """A word's tooltip: ``"label: +0.1234"``."""
    return f"{label}: {value:+.4f}"


def table_cell(value: float, cmax: float, extra: str = "") -> str:
    """A ``<td class="num">`` with ``value`` to 3 decimals (then ``extra`` HTML, e.g. its interval), tinted by
    :func:`css_rgba` on the scale ``cmax``."""
    return f'<td class="num" style="background: {css_rgba(value, cmax)}">{value:.3f}{extra}</td>'
