"""Training on more than one device with tf.distribute: the strategy, and the batch and learning-rate scaling.

``--strategy mirrored`` copies the model onto every local GPU (or, without GPUs, every logical CPU device
configured) and averages gradients each step. ``--strategy multi-worker`` (the same across machines) is
refused with the reason: Keras 3 cannot fit under it (``MULTI_WORKER_BROKEN``). ``--batch-size`` stays the batch *per replica*, so the
global batch grows with the replica count, and the learning rate grows with it (the linear scaling rule
of Goyal et al. 2017, with the warm-up the schedule already has); ``scale_learning_rate=False`` keeps it.
"""

from __future__ import annotations

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


#: Why ``multi-worker`` is refused: Keras 3's ``fit`` hands the step PerReplica batches that it cannot convert
#: under MultiWorkerMirroredStrategy (TensorFlow's own multi-worker tutorial fails the same way). Tried
#: here with two worker processes on one machine: Keras 3.15, TensorFlow 2.21.
MULTI_WORKER_BROKEN = ("--strategy multi-worker cannot train: Keras 3's model.fit fails under TensorFlow's "
                       "MultiWorkerMirroredStrategy (keras-team/keras#20585); use --strategy mirrored (every GPU "
                       "of one machine)")


def check_strategy(name: str) -> None:
    """A wrong name, in one line, before any photo is decoded."""
    if name not in STRATEGIES:
        raise XconvError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if name == "multi-worker":
        raise XconvError(MULTI_WORKER_BROKEN)


def make_distribution(name: str = "default") -> Distribution:
    import tensorflow as tf

    check_strategy(name)
    if name == "default":
        strategy = tf.distribute.get_strategy()
    else:
        gpus = tf.config.list_logical_devices("GPU")
        cpus = tf.config.list_logical_devices("CPU")
        devices = [d.name for d in gpus] or ([d.name for d in cpus] if len(cpus) > 1 else None)
        strategy = tf.distribute.MirroredStrategy(devices=devices)
    return Distribution(strategy, int(strategy.num_replicas_in_sync))
