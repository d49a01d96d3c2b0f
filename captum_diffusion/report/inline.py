"""Images inlined into the page as base64 PNG ``data:`` URIs (the report loads nothing from anywhere)."""
from __future__ import annotations

import base64
import io
import os
import struct
from html import escape
from pathlib import Path

from captum_diffusion.convert import as_rgb_image


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` in pixels of PNG ``data``, read from its header (nothing decoded); ``None`` when ``data``
    is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def png_data_uri(data: bytes) -> str:
    """PNG file bytes ``data`` as a ``data:`` URI, byte for byte (nothing decoded or encoded again)."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def image_data_uri(image) -> str:
    """The image as a lossless PNG ``data:`` URI.

    Parameters
    ----------
    image : PIL.Image.Image, array_like or os.PathLike
        PIL image in any mode, or a uint8 / uint16 / bool / float-in-[0, 1] array ``(H, W)`` or
        ``(H, W, 1|3|4)``; converted to 8-bit RGB. A path (e.g. a run's stored ``prompts/NNN/...png``): a PNG
        file's bytes are inlined as they are (no decode / re-encode, about 50 times faster); another image file
        is read and converted like an image.

    Returns
    -------
    str
        ``"data:image/png;base64,..."``.
    """
    if isinstance(image, os.PathLike):
        image = stored_image(image)
        if isinstance(image, str):
            return image
    buffer = io.BytesIO()
    as_rgb_image(image).save(buffer, format="PNG", optimize=True)
    return png_data_uri(buffer.getvalue())


def stored_image(path, max_side: int | None = None):
    """A stored image file as it can be inlined: its PNG ``data:`` URI when the file is a PNG (at most
    ``max_side`` pixels a side when given), else the image read as RGB (to convert or downscale).

    Parameters
    ----------
    path : os.PathLike
        The image file.
    max_side : int, optional
        The largest side, pixels, a PNG may have to be inlined as it is.

    Returns
    -------
    str or PIL.Image.Image
        ``"data:image/png;base64,..."`` of the file's own bytes, or the decoded RGB image.
    """
    import PIL.Image

    data = Path(path).read_bytes()
    dims = png_size(data)
    if dims is not None and (max_side is None or max(dims) <= max_side):
        return png_data_uri(data)
    with PIL.Image.open(io.BytesIO(data)) as opened:
        return opened.convert("RGB")


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
    return png_data_uri(buffer.getvalue())


def img_tag(uri: str, alt: str, *, css_class: str = "", width: int | None = None) -> str:
    """An ``<img>`` of ``uri`` (e.g. from :func:`image_data_uri`) with escaped ``alt`` text, optional class and width
    in CSS pixels."""
    size = f' width="{int(width)}"' if width else ""
    cls = f' class="{css_class}"' if css_class else ""
    return f'<img src="{uri}" alt="{escape(alt)}"{cls}{size}>'

