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

#: Filter patterns keeping less than this share of their activation under small moves are faded.
FRAGILE = 0.5


def channel_images(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, w, c) float -> (c, h, w) uint8 per Chollet's post-processing, and a (c,) mask of dead channels."""
    channels = np.moveaxis(np.asarray(maps, np.float32), -1, 0)
    # A 1x1 map (a small input after many poolings) has no spatial pattern: channels are compared instead.
    axes = (0, 1, 2) if channels.shape[1] * channels.shape[2] == 1 else (1, 2)
    low, high = channels.min(axis=axes, keepdims=True), channels.max(axis=axes, keepdims=True)
    # Constant up to float32 round-off (the std of a constant 1.7 is 1e-7, not 0), relative to the value.
    flat = (high - low) <= 1e-6 * np.maximum(1.0, np.abs(high))
    mean, std = channels.mean(axis=axes, keepdims=True), channels.std(axis=axes, keepdims=True)
    scaled = (channels - mean) / np.where(flat, 1.0, std) * 64.0 + 128.0
    dead = np.broadcast_to(flat, channels.shape)[:, 0, 0]
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
               rows: int, first_index: int = 0, row_labels=None) -> np.ndarray:
    """A title band on top, column indices under it, and each row's first channel index (or its entry of
    ``row_labels``) on the left."""
    small, large, gray = 12, 15, (80, 80, 80)
    row_labels = [str(first_index + row * columns) for row in range(rows)] if row_labels is None else row_labels
    left = max(xconv.text_width(label, small) for label in row_labels) + 8
    top = 40
    title_width = xconv.text_width(title, large) + 8
    canvas = np.full((grid.shape[0] + top, max(grid.shape[1] + left, title_width), 3), BACKGROUND, np.uint8)
    canvas[top:, left:left + grid.shape[1]] = grid
    xconv.put_text(canvas, title, 4, 16, large)
    step_y, step_x = tile_size[0] + margin, tile_size[1] + margin
    for column in range(columns):
        xconv.put_text(canvas, str(column), left + column * step_x + 2, top - 6, small, gray)
    for row in range(rows):
        xconv.put_text(canvas, row_labels[row], 2, top + row * step_y + min(tile_size[0], 14), small, gray)
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
        xconv.Option("columns", int, None, "tiles per row (default: 16 channels, 8 patterns)", minimum=1),
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
        """Patterns tiled in rows (one row per filter when there are several per filter), each with its
        robustness in a corner; fragile patterns are faded."""
        patterns = explanation.patterns
        filters = explanation.metadata.get("filters", list(range(len(patterns))))
        copies = int(explanation.metadata.get("diversity", 1))
        columns = min(self.columns or (copies if copies > 1 else 8), len(patterns))
        margin = max(4, patterns.shape[1] // 25)
        robustness = explanation.arrays.get("robustness")
        shown = patterns if robustness is None else mark_robustness(patterns, robustness)
        grid = tile(shown, columns, margin)
        rows = -(-len(patterns) // columns)
        unique = list(dict.fromkeys(filters))
        title = f"{explanation.layer}: filters {format_filters(unique)}"
        if copies > 1:
            title += f", {copies} diverse patterns each"
        if robustness is not None and np.isnan(robustness).all():  # "keeps < 50 %" would be wrong: nothing to keep
            title += "; faded, '-': the pattern does not activate its filter"
        elif robustness is not None:
            title += f"; faded: keeps < {FRAGILE:.0%} of its activation when moved ('-': none to keep)"
        row_labels = [str(filters[row * columns]) for row in range(rows)]  # each row's own first filter
        picture = add_labels(grid, title, patterns.shape[1:3], columns, margin, rows, first_index=filters[0],
                             row_labels=row_labels)
        stem = f"{safe_name(explanation.model_name)}_{safe_name(explanation.layer)}_filters_{filters_label(unique)}"
        return save_image(out_dir / f"{stem}.png", picture)


def mark_robustness(patterns: np.ndarray, robustness: np.ndarray) -> np.ndarray:
    """Each pattern with its robustness written in its lower-left corner; fragile (or dead) ones faded
    toward white, so a reader does not take adversarial noise for a feature."""
    import cv2

    marked = patterns.copy()
    fragile = ~(np.nan_to_num(robustness, nan=0.0) >= FRAGILE)
    marked[fragile] = (0.35 * marked[fragile] + 0.65 * BACKGROUND).astype(np.uint8)
    height = patterns.shape[1]
    pixels = max(9, round(height / 13))
    for picture, value in zip(marked, robustness):
        text = "-" if np.isnan(value) else f"{value:.2f}"
        cv2.rectangle(picture, (0, height - round(0.75 * pixels) - 6), (xconv.text_width(text, pixels) + 4, height - 1),
                      (255, 255, 255), -1)
        xconv.put_text(picture, text, 2, height - 4, pixels)
    return marked


def format_filters(filters) -> str:
    filters = list(filters)
    contiguous = filters == list(range(filters[0], filters[0] + len(filters)))
    return f"{filters[0]}-{filters[-1]}" if contiguous and len(filters) > 1 else ",".join(map(str, filters))


def filters_label(filters) -> str:
    """The filters in a file name, so patterns of filters 0-7 and of 8-15 do not overwrite each other:
    ``0-7``, ``1,5,9``, or for a long list its count and a digest of it."""
    import zlib

    label = format_filters(filters)
    return label if len(label) <= 32 else f"{len(filters)}-filters-{zlib.crc32(label.encode()):08x}"


@xconv.hookimpl
def xconv_register_renderers(register):
    register(GridRenderer)
