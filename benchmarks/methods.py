"""Every attribution method's cost in passes of the same model, and against tf-keras-vis and xplique.

    python benchmarks/methods.py [--batch 16] [--images 2] [--rise-masks 500] [--ig-images 16]

InceptionV3 with random weights (no download), 299 px, unless ``--model tiny`` (a 32 px test net). All
figures come from one run; each is the median of ``--repeats`` after a warm-up call (tracing excluded).

* Gradient CAMs, per image at batch ``--batch``, as a multiple of one compiled forward pass per image
  (target: at most 1.1x, like Grad-CAM).
* Copy-based methods, per image on ``--images`` images, as a multiple of the passes they need: SmoothGrad
  (20 samples) and integrated gradients (50 steps) one forward and backward pass per copy, occlusion
  (patch 32, stride 16) and RISE one forward pass per copy, Score-CAM with ``top`` 64 channels 64 forward
  passes (target: at most 1.1x the floor; Score-CAM at most 1.5x 64 forward passes).
* The same settings in xplique and tf-keras-vis when they are importable (benchmark-only dependencies
  whose pins conflict with ours: ``pip install --no-deps xplique tf-keras-vis tensorflow-probability
  tf-keras`` then ``pip install einops deprecated imageio scikit-learn dm-tree``); their rows are skipped
  otherwise.
* Peak memory of integrated gradients at ``--ig-images`` images x 64 steps: the process's peak resident
  memory above what it held before (measured first, so nothing else has raised the peak yet).
"""

from __future__ import annotations

import argparse
import os
import resource
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from timing import median_seconds as seconds  # noqa: E402 - benchmarks/ is the script folder

GRADIENT_CAMS = ("gradcam", "gradcam++", "layercam", "hirescam", "xgradcam", "eigencam")




def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("inceptionv3", "tiny"), default="inceptionv3")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--rise-masks", type=int, default=500)
    parser.add_argument("--top", type=int, default=64)
    parser.add_argument("--ig-images", type=int, default=16)
    parser.add_argument("--ig-steps", type=int, default=64)
    parser.add_argument("--scorecam-images", type=int, default=None,
                        help="images for the tf-keras-vis Score-CAM comparison (default: --images); it takes the "
                             "union of the batch's top channels, so its cost per image grows with the batch")
    parser.add_argument("--scorecam-photos", type=Path, default=None,
                        help="a folder of photos for that comparison instead of random images (--scorecam-images "
                             "of its files, spread evenly over their sorted list): photos share fewer top channels "
                             "than noise, so the union grows")
    parser.add_argument("--only", default="", help="comma-separated copy-based methods to time (default: all); "
                                                   "--ig-images 0 skips the memory measurement")
    args = parser.parse_args()

    import tensorflow as tf

    import xconv
    from xconv.testing import random_images, tiny_convnet

    tf.get_logger().setLevel("ERROR")  # each CAM class traces its own step: TensorFlow's retrace notice is noise

    model = tiny_convnet() if args.model == "tiny" else xconv.load_model("inceptionv3", weights=None)
    layer = model.default_layer
    print(f"model {args.model} ({model.input_size[0]} px, layer {layer}), {os.cpu_count()} CPU cores, "
          f"TensorFlow {tf.__version__}")
    if args.ig_images:
        before = peak_rss_mb()
        ig_images = random_images(args.ig_images, model.input_size, seed=9)
        xconv.explain(model, ig_images, "integrated-gradients", steps=args.ig_steps, batch_size=args.batch)
        print(f"integrated gradients, {args.ig_images} images x {args.ig_steps} steps, internal batch {args.batch}: "
              f"peak memory +{peak_rss_mb() - before:.0f} MB")

    forward = tf.function(lambda x: model.keras_model(x, training=False), reduce_retracing=True)
    batch = random_images(args.batch, model.input_size, seed=1)
    inputs = tf.constant(model.preprocess(batch))
    forward_per_image = seconds(lambda: forward(inputs).numpy(), args.repeats) / args.batch
    gradient_explainer = xconv.registry.get_registry().get("explainer", "saliency")(model)
    step = gradient_explainer.gradient_step()
    targets = tf.zeros(args.batch, tf.int32)
    gradient_per_copy = seconds(lambda: step(inputs, targets)[0].numpy(), args.repeats) / args.batch
    print(f"one forward pass {forward_per_image * 1000:.2f} ms/image, one forward+backward pass "
          f"{gradient_per_copy * 1000:.2f} ms/copy (batch {args.batch})")

    print(f"\n{'gradient CAM':<22}{'ms/image':>10}{'x forward':>11}")
    for method in GRADIENT_CAMS:
        per_image = seconds(lambda: xconv.explain(model, batch, method, batch_size=args.batch), args.repeats) / args.batch
        print(f"{method:<22}{per_image * 1000:>10.2f}{per_image / forward_per_image:>10.2f}x")

    images = random_images(args.images, model.input_size, seed=2)
    runs = {
        "smoothgrad": (dict(samples=args.samples, batch_size=args.batch), args.samples * gradient_per_copy
                       + forward_per_image),
        "integrated-gradients": (dict(steps=args.steps, batch_size=args.batch), args.steps * gradient_per_copy
                                 + 3 * forward_per_image),
        "occlusion": (dict(patch=args.patch, stride=args.stride, chunk=args.batch), None),
        "rise": (dict(masks=args.rise_masks, chunk=args.batch), (args.rise_masks + 1) * forward_per_image),
        "scorecam": (dict(top=args.top, chunk=args.batch), (args.top + 2) * forward_per_image),
        "ablationcam": (dict(chunk=64), None),
    }
    if args.only:
        runs = {name: run for name, run in runs.items() if name in args.only.split(",")}
    print(f"\n{'method (per image)':<22}{'seconds':>9}{'x forward':>11}{'x floor':>9}   floor")
    xconv_seconds = {}
    for method, (options, floor) in runs.items():
        if method == "occlusion":
            patches = xconv.explain(model, images[:1], method, **options).metadata["patches"]
            floor = (patches + 1) * forward_per_image
        per_image = seconds(lambda: xconv.explain(model, images, method, **options), 1) / args.images
        xconv_seconds[method] = per_image
        ratio = f"{per_image / floor:>8.2f}x" if floor else f"{'-':>9}"
        described = {"smoothgrad": f"{args.samples} fwd+bwd", "integrated-gradients": f"{args.steps} fwd+bwd",
                     "occlusion": "patches fwd", "rise": f"{args.rise_masks} fwd", "scorecam": f"{args.top} fwd",
                     "ablationcam": "head only"}[method]
        print(f"{method:<22}{per_image:>9.3f}{per_image / forward_per_image:>10.1f}x{ratio}   {described}")
    if "scorecam" in xconv_seconds:
        print(f"scorecam top {args.top} vs {args.top} forward passes: "
              f"{xconv_seconds['scorecam'] / (args.top * forward_per_image):.2f}x")

    compare_with_xplique(model, images, args, xconv_seconds, forward_per_image)
    compare_with_tf_keras_vis(model, images, layer, args, xconv_seconds)


def compare_with_xplique(model, images, args, xconv_seconds, forward_per_image) -> None:
    try:
        from xplique.attributions import IntegratedGradients, Occlusion, Rise, SmoothGrad
    except Exception as error:  # noqa: BLE001 - any import failure means: not measured here
        print(f"\nxplique: not importable here ({type(error).__name__}); install it to compare")
        return
    import numpy as np

    inputs = model.preprocess(images)
    labels = np.eye(len(model.class_names), dtype=np.float32)[np.zeros(len(images), int)]
    methods = {
        "smoothgrad": SmoothGrad(model.keras_model, nb_samples=args.samples, batch_size=args.batch),
        "integrated-gradients": IntegratedGradients(model.keras_model, steps=args.steps, batch_size=args.batch),
        "occlusion": Occlusion(model.keras_model, patch_size=args.patch, patch_stride=args.stride,
                               batch_size=args.batch),
        "rise": Rise(model.keras_model, nb_samples=args.rise_masks, batch_size=args.batch),
    }
    print(f"\n{'xplique (per image)':<22}{'seconds':>9}{'x forward':>11}{'xconv faster':>14}")
    for name, explainer in methods.items():
        if name not in xconv_seconds:
            continue
        per_image = seconds(lambda: explainer.explain(inputs, labels), 1) / len(images)
        print(f"{name:<22}{per_image:>9.3f}{per_image / forward_per_image:>10.1f}x"
              f"{per_image / xconv_seconds[name]:>13.2f}x")


def compare_with_tf_keras_vis(model, images, layer, args, xconv_seconds) -> None:
    try:
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.scores import CategoricalScore
    except Exception as error:  # noqa: BLE001
        print(f"\ntf-keras-vis: not importable here ({type(error).__name__}); install it to compare")
        return
    if "scorecam" not in xconv_seconds:
        return
    import xconv

    count = args.scorecam_images or len(images)
    if count != len(images) or args.scorecam_photos:
        images = comparison_images(model, count, args.scorecam_photos)
        xconv_seconds = {**xconv_seconds, "scorecam": seconds(
            lambda: xconv.explain(model, images, "scorecam", top=args.top, chunk=args.batch), 0) / count}
    inputs = model.preprocess(images)
    scorecam = Scorecam(model.keras_model)
    masked = count_rows(scorecam.model)
    score = CategoricalScore([0] * count)
    try:
        per_image = seconds(lambda: scorecam(score, inputs, penultimate_layer=layer.split("/")[-1], max_N=args.top),
                            0 if count > 2 else 1) / count
    except Exception as error:  # noqa: BLE001 - its Keras 3 support varies by version
        print(f"\ntf-keras-vis Scorecam failed here: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
        return
    print(f"\ntf-keras-vis Scorecam max_N={args.top} on {count} images: {per_image:.3f} s/image, "
          f"{sum(masked) / count:.0f} masked copies per image (xconv: {args.top}); xconv scorecam top {args.top} "
          f"{xconv_seconds['scorecam']:.3f} s/image: {per_image / xconv_seconds['scorecam']:.2f}x faster")


def comparison_images(model, count: int, folder: Path | None):
    """``count`` photos spread evenly over ``folder``'s sorted files (every class of a class-folder tree), or
    random images."""
    import numpy as np

    from xconv.images import expand_inputs, load_image, resize
    from xconv.testing import random_images

    if folder is None:
        return random_images(count, model.input_size, seed=4)
    files = expand_inputs([folder])  # as `xconv explain FOLDER` lists them
    chosen = files[::max(1, len(files) // count)][:count]
    return np.stack([resize(load_image(path), model.input_size) for path in chosen])


def count_rows(keras_model) -> list[int]:
    """The rows of every ``predict`` call on ``keras_model``, from then on: how many masked copies
    tf-keras-vis ran (it masks with the union of the batch's top channels, which grows with the batch)."""
    rows, predict = [], keras_model.predict

    def counted(inputs, **kwargs):
        rows.append(len(inputs[0] if isinstance(inputs, (list, tuple)) else inputs))
        return predict(inputs, **kwargs)

    keras_model.predict = counted
    return rows


if __name__ == "__main__":
    main()
