"""Images inlined into the page as base64 PNG ``data:`` URIs (the report loads nothing from anywhere)."""
from __future__ import annotations

import base64
import io
from html import escape

from captum_diffusion.convert import as_rgb_image


def image_data_uri(image) -> str:
    """The image as a lossless PNG ``data:`` URI.

    Parameters
    ----------
    image : PIL.Image.Image or array_like
        PIL image in any mode, or a uint8 / uint16 / bool / float-in-[0, 1] array ``(H, W)`` or
        ``(H, W, 1|3|4)``; converted to 8-bit RGB.

    Returns
    -------
    str
        ``"data:image/png;base64,..."``.
    """
    buffer = io.BytesIO()
    as_rgb_image(image).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_data_uri(fig, *, dpi: int = 100) -> str:
    """A matplotlib figure as a PNG ``data:`` URI; the figure is closed afterwards (pyplot forgets it).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    dpi : int, optional
        Dots per inch.

    Returns
    -------
    str
        ``"data:image/png;base64,..."``: tight bounding box, white background, no timestamp metadata.
    """
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", facecolor="white",
                    metadata={"Software": None})
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def img_tag(uri: str, alt: str, *, css_class: str = "", width: int | None = None) -> str:
    """An ``<img>`` of ``uri`` (e.g. from :func:`image_data_uri`) with escaped ``alt`` text, optional class and width
    in CSS pixels."""
    size = f' width="{int(width)}"' if width else ""
    cls = f' class="{css_class}"' if css_class else ""
    return f'<img src="{uri}" alt="{escape(alt)}"{cls}{size}>'

