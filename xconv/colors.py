"""Colormaps for heatmaps and feature maps, by OpenCV name, returned as RGB.

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
