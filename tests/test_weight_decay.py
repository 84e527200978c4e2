"""AdamW's weight decay reads the learning-rate schedule once per step: same weights, far less to trace."""

import numpy as np

from xconv.testing import random_images, tiny_keras_convnet
from xconv.weight_decay import decay_at_one_rate


def test_weight_decay_reads_the_schedule_once_per_step_and_trains_the_same_weights():
    import keras

    class CountingSchedule(keras.optimizers.schedules.CosineDecay):
        calls = 0

        def __call__(self, step):
            CountingSchedule.calls += 1  # per traced copy in the graph
            return super().__call__(step)

    images = random_images(8, (32, 32), seed=1).astype("float32")
    labels = np.eye(2, dtype="float32")[np.arange(8) % 2]
    runs = []
    for one_rate in (False, True):
        model = tiny_keras_convnet((32, 32), classes=2, seed=0)
        schedule = CountingSchedule(1e-3, decay_steps=4, warmup_target=1e-2, warmup_steps=2, alpha=0.01)
        model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.05), loss="categorical_crossentropy")
        model.optimizer.build(model.trainable_variables)
        if one_rate:
            decay_at_one_rate(model.optimizer)
            decay_at_one_rate(model.optimizer)  # a second call (a resumed run's fit) wraps nothing twice
        CountingSchedule.calls = 0
        model.fit(images, labels, batch_size=4, epochs=2, shuffle=False, verbose=0)  # warm-up and cosine steps
        runs.append((CountingSchedule.calls, model.get_weights()))
    (stock_calls, stock_weights), (calls, weights) = runs
    assert stock_calls == len(model.trainable_variables) + 1 and calls == 2  # the decay's and the update's
    for stock, once in zip(stock_weights, weights):
        np.testing.assert_array_equal(stock, once)
