"""ExplainCallback's cost: explaining 8 photos after each epoch, against the epoch itself, in one run.

    python benchmarks/train_callback.py [--epochs 3] [--photos 8] [--train-images 2000]

Trains the bundled architecture (catsdogs, from scratch) on the cats-vs-dogs training photos of
../shared with `xconv.training.fit`, with an ExplainCallback (Grad-CAM, a strip per epoch) on validation
photos. Prints each epoch's seconds (training and validation) and the callback's seconds after it; the
first epoch's callback includes tracing the explainer once.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cats-vs-dogs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--train-images", type=int, default=2000)
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs the photos in {SHARED}")

    import numpy as np

    from xconv.callbacks import ExplainCallback
    from xconv.registry import get_registry
    from xconv.image_folders import read_image_folder
    from xconv.training import TrainConfig, fit
    from xconv.training_log import EpochTimer

    model_cls = get_registry().get("model", "catsdogs")
    size = tuple(model_cls.default_image_size)
    train = read_image_folder(SHARED / "train", size)
    keep = np.random.default_rng(0).permutation(len(train.labels))[:args.train_images]
    train.images, train.labels = train.images[keep], train.labels[keep]
    validation = read_image_folder(SHARED / "validation", size, train.class_names)
    photos = [validation.paths[i] for i in np.linspace(0, len(validation.paths) - 1, args.photos).astype(int)]
    model = model_cls.build_for_training(train.class_names, size, None)
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as scratch:
        callback = ExplainCallback(photos, Path(scratch) / "strips", train.class_names)
        fit(model, train, validation, Path(scratch) / "model.keras", TrainConfig(epochs=args.epochs, patience=99),
            extra_callbacks=[timer, callback])
    print(f"catsdogs from scratch, {len(train.labels)} training and {len(validation.labels)} validation photos, "
          f"{args.photos} explained per epoch (Grad-CAM strip), {os.cpu_count()} CPU cores")
    print(f"{'epoch':>5} {'epoch s':>8} {'callback s':>11} {'share':>7}")
    for epoch, (seconds, extra) in enumerate(zip(timer.durations, callback.seconds), 1):
        print(f"{epoch:>5} {seconds:>8.1f} {extra:>11.2f} {extra / seconds:>6.1%}")
    steady = np.median(callback.seconds[1:] or callback.seconds) / np.median(timer.durations)
    print(f"callback after the first epoch: {steady:.1%} of an epoch (target: at most 5 %)")


if __name__ == "__main__":
    main()
