"""Labels on pictures (class names, methods, layers) in a font that has more than ASCII.

OpenCV's Hershey fonts draw ASCII only: a class folder named ``chèvre`` or ``кошка`` came out as ``ch??vre``
and ``?????``. DejaVu Sans, which matplotlib ships, covers Latin, Greek and Cyrillic; a character it lacks
(Chinese, say) is still drawn as one box, so the label keeps its length.
"""

from __future__ import annotations

import functools
import math

import numpy as np


@functools.lru_cache(maxsize=None)
def font(pixels: int):
    """DejaVu Sans at ``pixels`` (the em height: capitals are about 0.73 of it)."""
    import os

    import matplotlib
    from PIL import ImageFont

    return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"), pixels)


def text_width(text: str, pixels: int) -> int:
    """Width in pixels of ``text`` as :func:`put_text` draws it at ``pixels``: to size a band before drawing."""
    return math.ceil(font(pixels).getlength(text))


def put_text(image: np.ndarray, text: str, left: int, baseline: int, pixels: int, color=(0, 0, 0)) -> None:
    """Draw ``text`` on a uint8 RGB ``image`` in place, its baseline at row ``baseline`` (as cv2.putText).
    Only the rows the glyphs can reach go through PIL (a grid draws a label per row and column)."""
    from PIL import Image, ImageDraw

    top, bottom = max(0, baseline - 2 * pixels), min(image.shape[0], baseline + pixels)
    if top >= bottom:
        return
    rows = image[top:bottom]
    canvas = Image.fromarray(np.ascontiguousarray(rows))
    ImageDraw.Draw(canvas).text((left, baseline - top), text, font=font(pixels), fill=tuple(int(c) for c in color),
                                anchor="ls")
    rows[...] = np.asarray(canvas)
