"""Train the same tiny model on one replica and on two logical CPU replicas at the same global batch and
learning rate; print both final losses as JSON. Run in its own process: logical devices must be set up
before TensorFlow starts."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

[cpu] = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from xconv.testing import tiny_keras_convnet  # noqa: E402
from xconv.image_folders import ImageFolder  # noqa: E402
from xconv.training import TrainConfig, fit  # noqa: E402


def data(seed):
    rng = np.random.default_rng(seed)
    labels = np.arange(64) % 2
    images = np.clip(rng.normal(0, 40, (64, 32, 32, 3)) + np.where(labels[:, None, None, None], 170, 90), 0, 255)
    return ImageFolder(images.astype(np.uint8), labels.astype(np.int32), ["cats", "dogs"])


def run(strategy: str, per_replica: int, out: str) -> dict:
    from xconv.distribute import make_distribution

    distribution = make_distribution(strategy)
    with distribution.strategy.scope():
        model = tiny_keras_convnet((32, 32), classes=2, seed=0)
    config = TrainConfig(epochs=4, batch_size=per_replica, patience=99, augment=False, seed=7, warmup_epochs=0,
                         strategy=strategy, scale_learning_rate=False)
    summary = fit(model, data(0), data(1), out, config, distribution=distribution)
    with open(summary["history"]) as handle:
        last = handle.read().strip().splitlines()[-1].split(",")
    header = open(summary["history"]).readline().strip().split(",")
    row = dict(zip(header, last))
    return {"replicas": summary["replicas"], "global_batch": summary["global_batch_size"], "loss": float(row["loss"]),
            "val_loss": float(row["val_loss"])}


out = sys.argv[1]
print(json.dumps({"one": run("default", 16, os.path.join(out, "one.keras")),
                  "two": run("mirrored", 8, os.path.join(out, "two.keras"))}))
