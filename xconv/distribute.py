"""Training on more than one device with tf.distribute: the strategy, and the batch and learning-rate scaling.

``--strategy mirrored`` copies the model onto every local GPU (or, without GPUs, every logical CPU device
configured) and averages gradients each step; ``--strategy multi-worker`` does the same across machines,
each reading the cluster from ``TF_CONFIG``. ``--batch-size`` stays the batch *per replica*, so the
global batch grows with the replica count, and the learning rate grows with it (the linear scaling rule
of Goyal et al. 2017, with the warm-up the schedule already has); ``scale_learning_rate=False`` keeps it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from xconv.errors import XconvError

STRATEGIES = ("default", "mirrored", "multi-worker")


@dataclass
class Distribution:
    strategy: object
    replicas: int

    def global_batch(self, per_replica: int) -> int:
        return per_replica * self.replicas

    def learning_rate(self, base: float, scale: bool = True) -> float:
        return base * self.replicas if scale else base


def check_strategy(name: str) -> None:
    """A wrong name or an unreadable TF_CONFIG, in one line, before any photo is decoded."""
    if name not in STRATEGIES:
        raise XconvError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if name == "multi-worker" and os.environ.get("TF_CONFIG"):
        try:
            cluster = json.loads(os.environ["TF_CONFIG"])
        except ValueError as error:
            raise XconvError(f"TF_CONFIG is not valid JSON ({error}); see docs/scale.md for its form") from None
        if not isinstance(cluster, dict):
            raise XconvError("TF_CONFIG must be a JSON object with 'cluster' and 'task'; see docs/scale.md")


def make_distribution(name: str = "default") -> Distribution:
    import tensorflow as tf

    check_strategy(name)
    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        cpus = tf.config.list_logical_devices("CPU")
        devices = [d.name for d in gpus] or ([d.name for d in cpus] if len(cpus) > 1 else None)
        strategy = tf.distribute.MirroredStrategy(devices=devices)
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return Distribution(strategy, int(strategy.num_replicas_in_sync))
