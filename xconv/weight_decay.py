"""AdamW's weight decay at one learning rate per step, read once.

Keras's AdamW evaluates its learning-rate schedule (warm-up branch and cosine) once per variable for the
decoupled weight decay, so the traced training step holds one copy of the schedule per variable: 49 for
catsdogs, about 4 of the 9 s it takes to trace on 2 cores, paid by every ``xconv train`` and every phase.
Every variable decays at the step's one rate either way, so reading the schedule once gives the same
weights; the optimizer stays a stock AdamW, so checkpoints load anywhere.
"""

from __future__ import annotations


def decay_at_one_rate(optimizer) -> None:
    """Make ``optimizer``'s weight decay read a learning-rate schedule once per step (idempotent; leaves a
    constant rate, a non-decaying optimizer and a distribution strategy's replicas, which trace in
    parallel threads, to Keras)."""
    import tensorflow as tf
    from keras.optimizers.schedules import LearningRateSchedule

    schedule = getattr(optimizer, "_learning_rate", None)
    stock = getattr(optimizer, "_apply_weight_decay", None)
    if (getattr(optimizer, "weight_decay", None) is None or stock is None or getattr(stock, "one_rate", False)
            or not isinstance(schedule, LearningRateSchedule)):
        return

    def apply_weight_decay(variables):
        if tf.distribute.has_strategy():
            return stock(variables)
        optimizer._learning_rate = schedule(optimizer.iterations)  # what Keras reads for each variable
        try:
            return stock(variables)
        finally:
            optimizer._learning_rate = schedule

    apply_weight_decay.one_rate = True
    optimizer._apply_weight_decay = apply_weight_decay
