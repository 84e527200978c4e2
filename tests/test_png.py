"""The photo PNG encoder: any reader must get the exact pixels back, whichever deflate wrote them."""

import io
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from xconv import png


def photo_like(height: int, width: int) -> np.ndarray:
    """Smooth gradients plus noise, with wrap-around differences between rows (255 above 0)."""
    rng = np.random.default_rng(7)
    rows = np.linspace(0, 255, height)[:, None, None]
    cols = np.linspace(0, 255, width)[None, :, None]
    image = (rows * 0.5 + cols * 0.5 + rng.normal(0, 20, (height, width, 3))).clip(0, 255).astype(np.uint8)
    image[::7] = 255
    image[1::7] = 0
    return image


@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (29, 1), (375, 499)])
def test_encoded_png_decodes_to_the_same_pixels_in_opencv_and_pillow(shape):
    rgb = photo_like(*shape)
    data = png.encode_rgb_png(rgb)
    from_pillow = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    from_opencv = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(from_pillow, rgb)
    np.testing.assert_array_equal(from_opencv, rgb)


def test_rows_are_up_filtered_with_their_filter_byte():
    rgb = photo_like(3, 4)
    rows = np.frombuffer(png.up_filtered_rows(rgb), np.uint8).reshape(3, 4 * 3 + 1)
    assert (rows[:, 0] == png.UP_FILTER).all()
    np.testing.assert_array_equal(rows[0, 1:], rgb[0].ravel())
    np.testing.assert_array_equal(rows[2, 1:], (rgb[2].ravel().astype(int) - rgb[1].ravel()) % 256)


def test_zlib_fallback_writes_a_valid_file(monkeypatch):
    """Without isal (no wheel for the platform) the file is the same PNG, deflated by zlib."""
    import builtins

    real_import = builtins.__import__

    def no_isal(name, *args, **kwargs):
        if name.startswith("isal"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    rgb = photo_like(50, 60)
    png.compressor.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_isal)
    data = png.encode_rgb_png(rgb)
    monkeypatch.undo()
    assert png.compressor() is zlib.compress
    png.compressor.cache_clear()
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), rgb)
    idat = data[data.index(b"IDAT") + 4:data.index(b"IEND") - 8]
    assert zlib.decompress(idat) == png.up_filtered_rows(rgb)


@pytest.mark.parametrize("shape, dtype", [((4, 4), np.uint8), ((4, 4, 3), np.float32), ((0, 4, 3), np.uint8),
                                          ((4, 0, 3), np.uint8), ((4, 4, 4), np.uint8)])
def test_other_arrays_are_refused(shape, dtype):
    with pytest.raises(ValueError, match="uint8 RGB"):
        png.encode_rgb_png(np.zeros(shape, dtype))


def test_isal_deflates_where_it_is_installed():
    isal_zlib = pytest.importorskip("isal.isal_zlib", reason="isal is installed wherever it has a wheel")
    assert png.compressor() is isal_zlib.compress


def test_views_encode_their_own_pixels():
    """A mirrored or cropped view (non-contiguous, as overlays of flipped photos are) is encoded as shown."""
    rgb = photo_like(40, 30)
    for view in (rgb[:, ::-1], rgb[5:25, 3:20], rgb[::2]):
        decoded = np.asarray(Image.open(io.BytesIO(png.encode_rgb_png(view))).convert("RGB"))
        np.testing.assert_array_equal(decoded, view)
