"""A lossless PNG encoder for photographs: about 3x faster than OpenCV's and 15 % smaller.

Writing overlays was the largest cost of ``xconv explain`` after the model (4.5 of 12 ms per
validation photo), and nearly all of it is zlib's deflate. This writes the same kind of file with
rows "Up"-filtered in numpy (each row minus the one above, which suits photographs) and deflated by
Intel's ISA-L (``isal``), which compresses about 4x faster than zlib at a similar ratio: 1.5 ms
against OpenCV's 4.7-5.3 ms for a validation photo, 198 KB against 231 KB. Any PNG reader decodes
it; ``tests/test_png.py`` checks that OpenCV and Pillow read back the exact pixels.
"""

from __future__ import annotations

import functools
import struct
import zlib
from typing import Callable

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
UP_FILTER = 2  # PNG row filter type 2: each byte minus the byte above it
RGB_COLOR_TYPE = 2


@functools.lru_cache(maxsize=None)
def compressor() -> Callable[[bytes, int], bytes]:
    """zlib-format compression: ISA-L's where it is installed, zlib's otherwise (correct, about 3x slower)."""
    try:
        from isal import isal_zlib
    except ImportError:  # a platform without an isal wheel (isal is not installed there)
        return zlib.compress
    return isal_zlib.compress


def deflate(data: bytes) -> bytes:
    return compressor()(data, 1)


def chunk(kind: bytes, data: bytes) -> bytes:
    """Length, type, data and the CRC-32 of type and data, as PNG frames every chunk."""
    return b"".join((struct.pack(">I", len(data)), kind, data, struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))))


def up_filtered_rows(rgb: np.ndarray) -> bytes:
    """Every scanline prefixed by its filter byte, each row minus the row above (uint8, wrapping)."""
    height, width, channels = rgb.shape
    rows = rgb.reshape(height, width * channels)
    filtered = np.empty((height, width * channels + 1), np.uint8)
    filtered[:, 0] = UP_FILTER
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    return filtered.tobytes()


def encodable(rgb: np.ndarray) -> bool:
    """Whether :func:`encode_rgb_png` takes this array: a non-empty (h, w, 3) uint8 RGB image."""
    return rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and 0 not in rgb.shape


def encode_rgb_png(rgb: np.ndarray) -> bytes:
    """The PNG file of an (h, w, 3) uint8 RGB image, 8 bits per channel, not interlaced."""
    if not encodable(rgb):
        raise ValueError(f"expected a non-empty (h, w, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    header = struct.pack(">IIBBBBB", width, height, 8, RGB_COLOR_TYPE, 0, 0, 0)
    return b"".join((SIGNATURE, chunk(b"IHDR", header), chunk(b"IDAT", deflate(up_filtered_rows(rgb))),
                     chunk(b"IEND", b"")))
