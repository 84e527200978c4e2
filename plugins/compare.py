"""Compare renderer: the photo and each method's heatmap side by side, one figure per image and target.

Every tile is the photo at one height with the method's map blended over it (the overlay renderer's
colors), under a label naming the method; the first tile is the photo itself, labelled with the target
and its probability, which is the same for every method (it is the model's, ``xconv predict``'s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import xconv
from xconv_plugins.overlay import layer_part

LABEL_HEIGHT = 26
GAP = 6
#: Widest tile, in tile heights: a 1 x 4000 strip at the tile height was 896,000 px wide, more than a PNG
#: can hold, and its failed write stopped the whole batch.
MAX_ASPECT = 4


def labelled(tile: np.ndarray, text: str) -> np.ndarray:
    """The tile under a white band with ``text``, shrunk to fit the tile's width."""
    band = np.full((LABEL_HEIGHT, tile.shape[1], 3), 255, np.uint8)
    pixels = 15
    while pixels > 8 and xconv.text_width(text, pixels) > tile.shape[1] - 8:
        pixels -= 1
    xconv.put_text(band, text, 4, LABEL_HEIGHT - 9, pixels)
    return np.vstack([band, tile])


class CompareRenderer(xconv.Renderer):
    name = "compare"
    description = "the photo and each method's heatmap side by side (xconv explain --method a,b,c or all)"
    accepts = ("comparison",)
    options = (
        xconv.Option("height", int, 224, "height of each tile in pixels", minimum=1),
        xconv.Option("columns", int, 5, "tiles per row", minimum=1),
        xconv.Option("colormap", str, "jet", "OpenCV colormap for the heatmaps", choices=xconv.COLORMAPS),
        xconv.Option("alpha", float, 0.45, "weight of the colored heatmap in each blend", minimum=0.0, maximum=1.0),
    )

    def render(self, explanation, out_dir):
        import cv2

        photos = explanation.originals or list(explanation.images)
        maps = explanation.heatmaps
        written = []
        for index, photo in enumerate(photos):
            scale = min(self.height / photo.shape[0], MAX_ASPECT * self.height / photo.shape[1])
            size = (max(1, round(photo.shape[1] * scale)), max(1, round(photo.shape[0] * scale)))
            small = cv2.resize(photo, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            target = explanation.target_names[index]
            label, probability = target, explanation.metadata["target_scores"][index]
            tiles = [labelled(small, f"{label} p={probability:.3f}")]
            tiles += [labelled(xconv.overlay_heatmap(small, maps[method][index], self.colormap, self.alpha), method)
                      for method in maps]
            figure = xconv.tile(np.stack(tiles), min(self.columns, len(tiles)), GAP)
            # Another layer's comparison keeps its own file, as a single method's picture does.
            name = f"{explanation.stem(index)}_compare{layer_part(explanation)}_{xconv.safe_name(target)}.png"
            written.append(explanation.output(xconv.save_image(Path(out_dir) / name, figure), index))
        return written


@xconv.hookimpl
def xconv_register_renderers(register):
    register(CompareRenderer)
