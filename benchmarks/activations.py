"""Activation extraction + grid rendering per image: xconv against the book's loop, measured in one run.

    python benchmarks/activations.py [--repeats 3]

The baseline is Chollet's code (Deep Learning with Python, 2nd ed., ch. 9) as written: a multi-output
model run with ``predict``, then for every layer a Python loop over channels filling a numpy grid, a
matplotlib figure with ``imshow`` and ``savefig``. xconv: ``xconv.explain(..., "activations")`` and the
grid renderer (one vectorized tiling, one colormap call, one PNG write per layer).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


BOOK_MODELS: dict = {}


def book_visualization(model, image, out_dir: Path) -> None:
    import keras
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from xconv.layers import feature_layers

    infos = feature_layers(model.keras_model)
    if id(model) not in BOOK_MODELS:  # the book builds its activation model once, like xconv's cache
        BOOK_MODELS[id(model)] = keras.Model(model.keras_model.inputs, [info.layer.output for info in infos])
    activations = BOOK_MODELS[id(model)].predict(model.preprocess(image[None]), verbose=0)
    images_per_row = 16
    for info, layer_activation in zip(infos, activations):
        n_features = layer_activation.shape[-1]
        size = layer_activation.shape[1]
        n_cols = max(1, n_features // images_per_row)
        display_grid = np.zeros(((size + 1) * n_cols - 1, images_per_row * (size + 1) - 1))
        for col in range(n_cols):
            for row in range(images_per_row):
                channel_index = col * images_per_row + row
                channel_image = layer_activation[0, :, :, channel_index].copy()
                if channel_image.sum() != 0:
                    channel_image -= channel_image.mean()
                    channel_image /= channel_image.std()
                    channel_image *= 64
                    channel_image += 128
                channel_image = np.clip(channel_image, 0, 255).astype("uint8")
                display_grid[col * (size + 1): (col + 1) * size + col,
                             row * (size + 1): (row + 1) * size + row] = channel_image
        scale = 1.0 / size
        plt.figure(figsize=(scale * display_grid.shape[1], scale * display_grid.shape[0]))
        plt.title(info.path)
        plt.grid(False)
        plt.axis("off")
        plt.imshow(display_grid, aspect="auto", cmap="viridis")
        plt.savefig(out_dir / f"{info.path.replace('/', '_')}.png")
        plt.close()


def xconv_visualization(model, image, out_dir: Path) -> None:
    import xconv

    explanation = xconv.explain(model, image[None], method="activations")
    xconv.render(explanation, "grid", out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import xconv
    from xconv.demo import chelsea
    from xconv.images import resize

    print(f"one image (Chelsea), every conv/pool layer, {os.cpu_count()} CPU cores; median of {args.repeats}")
    print(f"{'model':<12} {'layers':>6} {'book s':>8} {'xconv s':>8} {'speed-up':>9}")
    for name, weights in [("catsdogs", "default"), ("inceptionv3", None)]:
        model = xconv.load_model(name, weights=weights)
        image = resize(chelsea(), model.input_size)
        timings = {}
        for label, function in [("book", book_visualization), ("xconv", xconv_visualization)]:
            with tempfile.TemporaryDirectory() as scratch:
                function(model, image, Path(scratch))  # warm-up: model building and tracing
                runs = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    function(model, image, Path(scratch))
                    runs.append(time.perf_counter() - start)
            timings[label] = statistics.median(runs)
        layers = len(model.feature_layers())
        print(f"{name:<12} {layers:>6} {timings['book']:>8.2f} {timings['xconv']:>8.2f} "
              f"{timings['book'] / timings['xconv']:>8.1f}x")


if __name__ == "__main__":
    main()
