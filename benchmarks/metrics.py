"""Deletion and insertion: cost per image against their floor, S + 1 forward passes, and against xplique.

    python benchmarks/metrics.py [--steps 10] [--images 16] [--batch 16] [--model inceptionv3|tiny]

InceptionV3 with random weights (no download) unless ``--model tiny``. The same Grad-CAM maps are scored
by xconv's ``deletion`` and ``insertion`` and, when importable (a benchmark-only dependency: see
benchmarks/methods.py for the install line), by xplique's ``Deletion`` and ``Insertion`` with the same
steps, batch size and a black baseline. Each time is the median of ``--repeats`` runs after a warm-up.
Targets: at most 1.2x the floor, and at least as fast as xplique.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import itertools  # noqa: E402

from timing import median_seconds as seconds  # noqa: E402 - benchmarks/ is the script folder

CALLS = itertools.count(1)


def unseen_batch(images):
    """A copy of ``images`` with one pixel changed by a new amount each call: the same cost, and a batch
    the previous call did not see."""
    changed = images.copy()
    changed[0, 0, 0, 0] = (int(changed[0, 0, 0, 0]) + next(CALLS)) % 256
    return changed


def another_order(explanation):
    """The explanation with its maps rolled by one more column each call: a pixel order this batch has not
    played (xconv remembers a batch's curves, so the same map again would cost no pass)."""
    import dataclasses

    import numpy as np

    rolled = np.roll(explanation.heatmaps, next(CALLS), axis=2)
    return dataclasses.replace(explanation, arrays={**explanation.arrays, "heatmaps": rolled})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("inceptionv3", "tiny"), default="inceptionv3")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    import xconv
    from xconv.faithfulness import maps_at_input_size
    from xconv.registry import get_registry
    from xconv.testing import random_images, tiny_convnet

    tf.get_logger().setLevel("ERROR")
    model = tiny_convnet() if args.model == "tiny" else xconv.load_model("inceptionv3", weights=None)
    images = random_images(args.images, model.input_size, seed=3)
    explanation = xconv.explain(model, images, "gradcam", batch_size=args.batch)
    targets = np.asarray(explanation.targets)
    forward = tf.function(lambda x: model.keras_model(x, training=False), reduce_retracing=True)
    inputs = tf.constant(model.preprocess(images[:args.batch]))
    forward_per_image = seconds(lambda: forward(inputs).numpy(), args.repeats) / len(inputs)
    floor = (args.steps + 1) * forward_per_image
    print(f"model {args.model} ({model.input_size[0]} px), {args.images} images, {args.steps} steps, batch "
          f"{args.batch}, {os.cpu_count()} CPU cores, TensorFlow {tf.__version__}")
    print(f"one forward pass {forward_per_image * 1000:.2f} ms/image; floor {args.steps + 1} passes = "
          f"{floor * 1000:.1f} ms/image")
    print(f"{'metric':<12}{'library':<9}{'ms/image':>10}{'x forward':>11}{'x floor':>9}{'AUC':>8}")
    xconv_times = {}
    for name in ("deletion", "insertion"):
        metric = get_registry().get("metric", name)(model, steps=args.steps, baseline="black", batch_size=args.batch)
        # xconv passes the two ends of the curves once per batch, for every map scored on it: each call here
        # gets a batch it has not seen (one pixel changed), so the ends are paid as a lone curve pays them.
        per_image = seconds(lambda: metric.score(unseen_batch(images), targets, explanation), args.repeats) / args.images
        xconv_times[name] = per_image
        auc = float(np.mean(metric.score(images, targets, explanation).values))
        print(f"{name:<12}{'xconv':<9}{per_image * 1000:>10.1f}{per_image / forward_per_image:>10.1f}x"
              f"{per_image / floor:>8.2f}x{auc:>8.3f}")
        further = seconds(lambda: metric.score(images, targets, another_order(explanation)), args.repeats) / args.images
        print(f"{'':<12}{'':<9}{further * 1000:>10.1f}{further / forward_per_image:>10.1f}x{further / floor:>8.2f}x"
              "          a further map on the same batch (ends shared)")
    try:
        from xplique.metrics import Deletion, Insertion
    except Exception as error:  # noqa: BLE001 - not installed: not measured
        print(f"xplique: not importable here ({type(error).__name__}); install it to compare")
        return
    one_hot = np.eye(len(model.class_names), dtype=np.float32)[targets]
    maps = maps_at_input_size(explanation.heatmaps, model.input_size)
    for name, cls in (("deletion", Deletion), ("insertion", Insertion)):
        metric = cls(model.keras_model, model.preprocess(images), one_hot, batch_size=args.batch, baseline_mode=float(
            model.preprocess(np.zeros((1, 1, 1, 3), np.uint8)).ravel()[0]), steps=args.steps)
        per_image = seconds(lambda: metric(maps), args.repeats) / args.images
        auc = float(metric(maps))
        print(f"{name:<12}{'xplique':<9}{per_image * 1000:>10.1f}{per_image / forward_per_image:>10.1f}x"
              f"{per_image / floor:>8.2f}x{auc:>8.3f}   xconv {per_image / xconv_times[name]:.2f}x faster")


if __name__ == "__main__":
    main()
