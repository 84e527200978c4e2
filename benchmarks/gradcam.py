"""Grad-CAM cost relative to one forward pass of the same model, measured in the same run.

    python benchmarks/gradcam.py [--repeats 5]

InceptionV3 with random weights (no download). Both sides are compiled (tf.function) and warmed up;
each figure is the median over repeats. Target: Grad-CAM at batch 16 within 1.1x a forward pass.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from timing import median_seconds  # noqa: E402 - benchmarks/ is the script folder




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()

    import tensorflow as tf

    import xconv
    from xconv.testing import random_images

    model = xconv.load_model("inceptionv3", weights=None)
    forward = tf.function(lambda x: model.keras_model(x, training=False), reduce_retracing=True)
    explainer = xconv.registry.get_registry().get("explainer", "gradcam")(model, batch_size=max(args.batches))
    print(f"model inceptionv3 (random weights), layer {explainer.layer}, {os.cpu_count()} CPU cores, "
          f"TensorFlow {tf.__version__}")
    print(f"{'batch':>5} {'forward s/img':>14} {'gradcam s/img':>14} {'ratio':>6}")
    for batch in args.batches:
        images = random_images(batch, model.input_size, seed=batch)
        inputs = tf.constant(model.preprocess(images))
        forward_seconds = median_seconds(lambda: forward(inputs).numpy(), args.repeats)
        gradcam_seconds = median_seconds(lambda: explainer.explain(images), args.repeats)
        print(f"{batch:>5} {forward_seconds / batch:>14.4f} {gradcam_seconds / batch:>14.4f} "
              f"{gradcam_seconds / forward_seconds:>6.2f}")


if __name__ == "__main__":
    main()
