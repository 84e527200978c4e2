"""Grid renderer: every channel of a layer tiled into one image, or filter patterns laid out with margins.

Channels are post-processed as in Chollet's book (standardize, scale by 64, shift to 128, clip to
uint8); a dead channel (constant) stays blank instead of becoming NaN. Tiling is one reshape and
transpose over all channels, colored by one colormap call, labelled with row and column indices,
and written once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import xconv
from xconv import safe_name, save_image, tile

BACKGROUND = 255
MIN_TILE = 32


def channel_images(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, w, c) float -> (c, h, w) uint8 per Chollet's post-processing, and a (c,) mask of dead channels."""
    channels = np.moveaxis(np.asarray(maps, np.float32), -1, 0)
    mean = channels.mean(axis=(1, 2), keepdims=True)
    std = channels.std(axis=(1, 2), keepdims=True)
    dead = std[:, 0, 0] < 1e-7
    scaled = (channels - mean) / np.where(std < 1e-7, 1.0, std) * 64.0 + 128.0
    scaled[dead] = BACKGROUND
    return np.clip(scaled, 0, 255).astype(np.uint8), dead


def upscale(tiles: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of (n, h, w) tiles so that small maps stay readable."""
    return tiles if factor == 1 else tiles.repeat(factor, axis=1).repeat(factor, axis=2)


def colorize_gray(gray: np.ndarray, colormap: str, blank: np.ndarray) -> np.ndarray:
    colored = xconv.apply_colormap(gray, colormap)
    colored[blank] = BACKGROUND
    return colored


def add_labels(grid: np.ndarray, title: str, tile_size: tuple[int, int], columns: int, margin: int,
               rows: int, first_index: int = 0) -> np.ndarray:
    """A title band on top, column indices under it, and each row's first channel index on the left."""
    import cv2

    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
    left = 8 * len(str(first_index + rows * columns)) + 8
    top = 40
    canvas = np.full((grid.shape[0] + top, grid.shape[1] + left, 3), BACKGROUND, np.uint8)
    canvas[top:, left:] = grid
    cv2.putText(canvas, title, (4, 16), font, 0.5, (0, 0, 0), thickness, cv2.LINE_AA)
    step_y, step_x = tile_size[0] + margin, tile_size[1] + margin
    for column in range(columns):
        cv2.putText(canvas, str(column), (left + column * step_x + 2, top - 6), font, scale, (80, 80, 80), thickness,
                    cv2.LINE_AA)
    for row in range(rows):
        y = top + row * step_y + min(tile_size[0], 14)
        cv2.putText(canvas, str(first_index + row * columns), (2, y), font, scale, (80, 80, 80), thickness, cv2.LINE_AA)
    return canvas


def layer_grid(maps: np.ndarray, title: str, columns: int = 16, colormap: str = "viridis") -> np.ndarray:
    """All channels of one image's (h, w, c) feature maps as one labelled RGB picture."""
    gray, dead = channel_images(maps)
    factor = max(1, -(-MIN_TILE // gray.shape[1]))
    gray = upscale(gray, factor)
    columns = min(columns, len(gray))
    margin = 2
    blank = np.zeros(gray.shape, bool)
    blank[dead] = True
    grid = tile(gray, columns, margin)
    mask = tile(blank, columns, margin, fill=True)
    colored = colorize_gray(grid, colormap, mask)
    rows = -(-len(gray) // columns)
    return add_labels(colored, title, gray.shape[1:3], columns, margin, rows)


def single_channel(maps: np.ndarray, channel: int, title: str, size: int = 384, colormap: str = "viridis") -> np.ndarray:
    """One channel, enlarged, colored with the colormap (viridis by default)."""
    import cv2

    if not 0 <= channel < maps.shape[-1]:
        raise xconv.XconvError(f"--channel {channel} is out of range: the layer has {maps.shape[-1]} channels")
    gray, dead = channel_images(maps[..., channel:channel + 1])
    height, width = gray.shape[1:]
    scale = size / max(height, width)
    big = cv2.resize(gray[0], (round(width * scale), round(height * scale)), interpolation=cv2.INTER_NEAREST)
    colored = colorize_gray(big, colormap, np.full(big.shape, bool(dead[0])))
    return add_labels(colored, title, big.shape, 1, 0, 1, first_index=channel)


class GridRenderer(xconv.Renderer):
    name = "grid"
    description = "channels of each layer tiled in rows (--channel K: one channel large); filter patterns laid out"
    accepts = ("activations", "patterns")
    options = (
        xconv.Option("channel", int, None, "activations: show only this channel, large"),
        xconv.Option("columns", int, None, "tiles per row (default: 16 channels, 8 patterns)"),
        xconv.Option("colormap", str, "viridis", "OpenCV colormap for activations", choices=xconv.COLORMAPS),
    )

    def render(self, explanation, out_dir):
        if explanation.kind == "patterns":
            return [explanation.output(self.render_patterns(explanation, Path(out_dir)))]
        written = []
        for layer, maps in explanation.activations.items():
            for index in range(len(maps)):
                title = f"{layer}  {maps.shape[1]}x{maps.shape[2]}x{maps.shape[3]}"
                if self.channel is None:
                    picture, suffix = layer_grid(maps[index], title, self.columns or 16, self.colormap), "grid"
                else:
                    picture = single_channel(maps[index], self.channel, f"{title}  channel {self.channel}",
                                             colormap=self.colormap)
                    suffix = f"channel{self.channel}"
                name = f"{explanation.stem(index)}_{safe_name(layer)}_{suffix}.png"
                written.append(explanation.output(save_image(Path(out_dir) / name, picture), index))
        return written

    def render_patterns(self, explanation, out_dir: Path) -> Path:
        patterns = explanation.patterns
        filters = explanation.metadata.get("filters", list(range(len(patterns))))
        columns = min(self.columns or 8, len(patterns))
        margin = max(4, patterns.shape[1] // 25)
        grid = tile(patterns, columns, margin)
        rows = -(-len(patterns) // columns)
        title = f"{explanation.layer}: filters {format_filters(filters)}"
        picture = add_labels(grid, title, patterns.shape[1:3], columns, margin, rows, first_index=filters[0])
        return save_image(out_dir / f"{safe_name(explanation.model_name)}_{safe_name(explanation.layer)}_filters.png",
                          picture)


def format_filters(filters) -> str:
    filters = list(filters)
    contiguous = filters == list(range(filters[0], filters[0] + len(filters)))
    return f"{filters[0]}-{filters[-1]}" if contiguous and len(filters) > 1 else ",".join(map(str, filters))


@xconv.hookimpl
def xconv_register_renderers(register):
    register(GridRenderer)
