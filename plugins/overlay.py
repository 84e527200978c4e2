"""Overlay renderer: a heatmap resized to the original photo, colored with an OpenCV colormap, blended.

Colors come back from ``xconv.apply_colormap`` as RGB, like the photo; blending happens in RGB and
``xconv.save_image`` converts once for OpenCV's writer, so colors are right in every viewer.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

import xconv


def draw_cell_grid(image: np.ndarray, cells: tuple[int, int], color=(255, 255, 255)) -> np.ndarray:
    """Lines splitting the image into the explained layer's h x w cells: each cell is one heatmap value."""
    import cv2

    out = image.copy()
    height, width = out.shape[:2]
    rows, columns = cells
    thickness = max(1, round(min(height, width) / 300))
    for edge in np.linspace(0, height, rows + 1)[1:-1]:
        cv2.line(out, (0, int(round(edge))), (width - 1, int(round(edge))), color, thickness)
    for edge in np.linspace(0, width, columns + 1)[1:-1]:
        cv2.line(out, (int(round(edge)), 0), (int(round(edge)), height - 1), color, thickness)
    return out


def has_cells(explanation) -> bool:
    """Whether the maps are coarser than the model's input (one value per layer cell), else warn.

    Pixel-level maps (saliency, occlusion, guided Grad-CAM...) have a value per input pixel: a grid over
    them would be a line every pixel, so the photo is left without one.
    """
    heatmaps = np.asarray(explanation.heatmaps)
    input_size = (explanation.images.shape[1:3] if explanation.images is not None
                  else explanation.originals[0].shape[:2])
    if heatmaps.shape[1] < input_size[0] or heatmaps.shape[2] < input_size[1]:
        return True
    warnings.warn(f"grid: {explanation.method}'s maps have a value per input pixel, not per layer cell; "
                  "no grid drawn", xconv.XconvWarning, stacklevel=2)
    return False


class OverlayRenderer(xconv.Renderer):
    name = "overlay"
    description = "heatmap blended over the original photo (OpenCV colormap); --grid draws the layer's cells"
    accepts = ("heatmap",)
    options = (
        xconv.Option("colormap", str, "jet", "OpenCV colormap for the heatmap", choices=xconv.COLORMAPS),
        xconv.Option("alpha", float, 0.4, "weight of the colored heatmap in the blend", minimum=0.0, maximum=1.0),
        xconv.Option("grid", bool, False, "draw the explained layer's cells (each is one heatmap value)"),
    )

    def render(self, explanation, out_dir):
        photos = explanation.originals or list(explanation.images)
        grid = self.grid and has_cells(explanation)
        written = []
        for index, (photo, heatmap) in enumerate(zip(photos, explanation.heatmaps)):
            image = xconv.overlay_heatmap(photo, heatmap, self.colormap, self.alpha)
            if grid:
                image = draw_cell_grid(image, heatmap.shape)
            target = xconv.safe_name(explanation.target_names[index])
            name = f"{explanation.stem(index)}_{xconv.safe_name(explanation.method)}{layer_part(explanation)}_{target}.png"
            written.append(explanation.output(xconv.save_image(Path(out_dir) / name, image, photo=True), index))
        return written


def layer_part(explanation) -> str:
    """``_LAYER`` for a layer other than the model's default, so ``--layer block3_out`` does not overwrite
    the default layer's picture of the same photo and target; empty otherwise (and for pixel-level maps)."""
    if not explanation.layer or explanation.metadata.get("layer_is_default", True):
        return ""
    return f"_{xconv.safe_name(explanation.layer)}"


@xconv.hookimpl
def xconv_register_renderers(register):
    register(OverlayRenderer)
