"""Filter patterns: speed against the keras-io recipe, and quality (robustness, high frequencies), in one run.

    python benchmarks/filters.py [--filters 16] [--steps 30] [--size 180] [--bundled-layers ...]

Part 1, InceptionV3 (random weights, no top) layer mixed3, 180x180, 16 filters, 30 steps:
  recipe      keras-io "Visualizing what convnets learn" as written: one filter at a time, normalized
              gradient steps of 10, the compiled step re-traced for each new filter index
  warm loop   the same step, traced once (filter index as a tensor), one filter at a time
  plain batch the same step on a batch of 16, one filter per batch element
  xconv       default settings: all filters in one batch, Fourier/decorrelated parameterization, random
              shift/scale/rotation each step, Adam, batch norms folded
Each reports seconds per filter, the mean activation on the saved picture, and the median robustness:
the share of that activation kept under 8 small random moves (shift up to 6 px, scale 0.92-1.08,
rotation up to 8 degrees, reflected borders).

Part 2, the bundled model, filters 0-15 of three layers, xconv's defaults against plain ascent
(``robust=False``): median robustness and the median share of each pattern's luminance energy above
1/8 cycle per pixel (high-frequency noise).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=180)
    parser.add_argument("--layer", default="mixed3")
    parser.add_argument("--bundled-layers", nargs="*", default=["block2_sepconv2", "block3_sepconv2", "block4_sepconv2"])
    parser.add_argument("--bundled-steps", type=int, default=None, help="steps on the bundled model (default: its default)")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from xconv.registry import get_registry
    from xconv_plugins.inceptionv3 import InceptionV3

    keras.utils.set_random_seed(0)
    base = keras.applications.InceptionV3(include_top=False, weights=None)
    extractor = keras.Model(base.input, base.get_layer(args.layer).output)
    size, steps, count = args.size, args.steps, args.filters

    map_size = extractor.compute_output_shape((1, args.size, args.size, 3))[1:3]
    border = 2 if min(map_size) > 6 else 0  # as xconv does, so small maps keep a centre

    def inner(activation):
        return activation[:, border:activation.shape[1] - border, border:activation.shape[2] - border]

    def inner_mean(activation, filter_index):
        return tf.reduce_mean(inner(activation)[..., filter_index])

    def recipe_step_fn(img, filter_index, learning_rate):
        with tf.GradientTape() as tape:
            tape.watch(img)
            loss = inner_mean(extractor(img), filter_index)
        grads = tf.math.l2_normalize(tape.gradient(loss, img))
        return loss, img + learning_rate * grads

    def initial_image(batch=1):
        return (tf.random.uniform((batch, size, size, 3)) - 0.5) * 0.25

    def deprocess(image):
        """keras-io's deprocess_image (without its border crop): what the recipe saves as a picture."""
        image = image - image.mean()
        image = image / (image.std() + 1e-5) * 0.15 + 0.5
        return np.clip(np.clip(image, 0, 1) * 255, 0, 255).astype("uint8")

    def displayed(images, indices):
        """Each filter's activation on the saved uint8 picture, fed back through the same preprocessing."""
        pixels = np.stack([deprocess(np.asarray(image)) for image in images]).astype(np.float32) / 127.5 - 1
        activation = inner(extractor(pixels))
        return tf.reduce_mean(tf.gather(activation, indices, axis=3, batch_dims=1), axis=(1, 2)).numpy().tolist()

    recipe_images = []

    def one_at_a_time(step):
        finals, images = [], []
        for index in range(count):
            image = initial_image()
            for _ in range(steps):
                _, image = step(image, index, 10.0)
            finals.append(float(inner_mean(extractor(image), index)))
            images.append(image[0])
        one_at_a_time.images = images
        return finals, displayed(images, tf.range(count))

    def run_recipe():
        step = tf.function(recipe_step_fn)  # a Python int index: one trace per filter, as in the recipe
        finals, shown = one_at_a_time(step)
        recipe_images.extend(one_at_a_time.images)
        return finals, shown

    warm_step = tf.function(recipe_step_fn)

    def run_warm():
        return one_at_a_time(lambda image, index, rate: warm_step(image, tf.constant(index), tf.constant(rate)))

    @tf.function
    def batch_step(images, indices):
        with tf.GradientTape() as tape:
            tape.watch(images)
            activation = inner(extractor(images))
            loss = tf.reduce_sum(tf.reduce_mean(tf.gather(activation, indices, axis=3, batch_dims=1), axis=(1, 2)))
        grads = tape.gradient(loss, images)
        grads = grads / (tf.norm(tf.reshape(grads, (count, -1)), axis=1)[:, None, None, None] + 1e-12)
        return images + 10.0 * grads

    def run_plain_batch():
        images, indices = initial_image(count), tf.range(count)
        for _ in range(steps):
            images = batch_step(images, indices)
        activation = inner(extractor(images))
        finals = tf.reduce_mean(tf.gather(activation, indices, axis=3, batch_dims=1), axis=(1, 2)).numpy().tolist()
        return finals, displayed(images, indices)

    model = InceptionV3(base, [])
    explainer_cls = get_registry().get("explainer", "filters")

    def run_xconv():
        explainer = explainer_cls(model, layer=args.layer, filters=range(count), steps=steps, size=size)
        explanation = explainer.explain()
        run_xconv.robustness = explanation.arrays["robustness"]
        return explanation.scores.tolist(), explanation.scores.tolist()  # already the saved uint8 pictures

    def measure(name, function):
        start = time.perf_counter()
        finals, shown = function()
        seconds = (time.perf_counter() - start) / count
        return name, seconds, float(np.mean(finals)), float(np.mean(shown))

    run_plain_batch()  # warm-up: trace the batched step outside the timed run
    explainer_cls(model, layer=args.layer, filters=range(count), steps=2, size=size).explain()  # warm-up: xconv
    rows = [measure("recipe", run_recipe), measure("warm loop", run_warm), measure("plain batch", run_plain_batch),
            measure("xconv", run_xconv)]
    # The recipe's robustness, measured as xconv measures its own, on the recipe's saved pictures.
    plain = explainer_cls(model, layer=args.layer, filters=range(count), steps=1, size=size, robust=False)
    recipe_pictures = np.stack([deprocess(np.asarray(image)) for image in recipe_images])
    recipe_robustness = plain.robustness(recipe_pictures, list(range(count)), plain.scores(recipe_pictures, list(range(count))))
    robustness = {"recipe": recipe_robustness, "xconv": run_xconv.robustness}
    recipe_seconds, plain_seconds = rows[0][1], rows[2][1]
    print(f"InceptionV3 (random weights) {args.layer}, {size}x{size}, {count} filters, {steps} steps, "
          f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}")
    print("activation: each filter's mean over its map on the optimized input; saved: on the uint8 picture;")
    print("robust: median share of the saved picture's activation kept under small random moves")
    print(f"{'method':<12} {'s/filter':>9} {'vs recipe':>9} {'vs plain':>9} {'activation':>11} {'saved':>8} {'robust':>7}")
    for name, seconds, activation, shown in rows:
        kept = f"{np.nanmedian(robustness[name]):>7.2f}" if name in robustness else f"{'-':>7}"
        print(f"{name:<12} {seconds:>9.3f} {recipe_seconds / seconds:>8.2f}x {plain_seconds / seconds:>8.2f}x "
              f"{activation:>11.4f} {shown:>8.4f} {kept}")
    bundled_quality(args.bundled_layers, args.bundled_steps)


def bundled_quality(layers: list[str], steps: int | None) -> None:
    """xconv's defaults against plain ascent on the bundled model: robustness and high-frequency share."""
    import numpy as np

    import xconv
    from xconv_plugins.filters import high_frequency_share

    model = xconv.load_model("catsdogs")
    print("\nbundled model catsdogs, filters 0-15, median over filters")
    print(f"{'layer':<18} {'setting':<10} {'robust':>7} {'high freq':>10} {'s/filter':>9}")
    for layer in layers:
        for setting, options in (("plain", {"robust": False}), ("default", {})):
            if steps:
                options = {**options, "steps": steps}
            start = time.perf_counter()
            explanation = xconv.explain(model, None, method="filters", layer=layer, filters="0-15", **options)
            seconds = (time.perf_counter() - start) / 16
            print(f"{layer:<18} {setting:<10} {np.nanmedian(explanation.arrays['robustness']):>7.2f} "
                  f"{np.median(high_frequency_share(explanation.patterns)):>10.2f} {seconds:>9.3f}")


if __name__ == "__main__":
    main()
