"""Colormaps for heatmaps and feature maps, by OpenCV name, returned as RGB; blending and tiling pictures.

``cv2.applyColorMap`` returns BGR while every array in xconv is RGB; converting here, once, keeps colors
right in every renderer. The names are listed without importing OpenCV, so plugins can declare them as
option choices at start-up.
"""

from __future__ import annotations

import numpy as np

COLORMAPS = ("jet", "turbo", "viridis", "inferno", "magma", "plasma", "cividis", "parula", "hot", "bone", "rainbow",
             "hsv", "cool", "spring", "summer", "autumn", "winter", "ocean", "pink", "twilight", "deepgreen")


def apply_colormap(levels: np.ndarray, name: str) -> np.ndarray:
    """uint8 (h, w) levels -> uint8 RGB (h, w, 3) through OpenCV colormap ``name``."""
    import cv2

    from xconv.errors import UnknownNameError

    code = getattr(cv2, f"COLORMAP_{name.upper()}", None) if name in COLORMAPS else None
    if code is None:
        raise UnknownNameError("colormap", name, COLORMAPS)
    return cv2.cvtColor(cv2.applyColorMap(np.ascontiguousarray(levels), code), cv2.COLOR_BGR2RGB)


def overlay_heatmap(photo: np.ndarray, heatmap: np.ndarray, colormap: str = "jet", alpha: float = 0.4) -> np.ndarray:
    """The heatmap (float in [0, 1]), resized bilinearly to the photo, colored and blended over it, in RGB."""
    import cv2

    height, width = photo.shape[:2]
    # Cleaned at the map's own size: bilinear weights are convex, so values in [0, 1] stay there.
    heatmap = np.clip(np.nan_to_num(np.asarray(heatmap, np.float32)), 0.0, 1.0)
    resized = cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_LINEAR)
    levels = cv2.convertScaleAbs(resized, alpha=255.0)  # round(255 x), half to even like np.round, in one pass
    colored = apply_colormap(levels, colormap)
    # OpenCV's saturating uint8 blend: the rounded, clipped float blend, without four float copies of the photo.
    return cv2.addWeighted(np.ascontiguousarray(photo, np.uint8), 1.0 - alpha, colored, alpha, 0.0)


def tile(tiles: np.ndarray, columns: int, margin: int, fill=255) -> np.ndarray:
    """(n, h, w[, 3]) -> one image of ceil(n / columns) rows with ``margin`` pixels between tiles."""
    count, height, width = tiles.shape[:3]
    extra = tiles.shape[3:]
    rows = -(-count // columns)
    padded = np.full((rows * columns, height + margin, width + margin, *extra), fill, tiles.dtype)
    padded[:count, :height, :width] = tiles
    grid = padded.reshape(rows, columns, height + margin, width + margin, *extra)
    grid = grid.swapaxes(1, 2).reshape(rows * (height + margin), columns * (width + margin), *extra)
    return grid[: grid.shape[0] - margin, : grid.shape[1] - margin] if margin else grid
