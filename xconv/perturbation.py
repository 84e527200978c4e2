"""The perturbation family's shared machinery: a model's answers on many masked copies of an image.

Occlusion, RISE and Score-CAM all ask the same question many times: what probability does the model give
the target class when the image is seen only through a mask m, i.e. on the copy x * m + b * (1 - m) with a
baseline b? :func:`masked_probabilities` answers it for any number of masks in compiled chunks of
``chunk`` copies: each chunk is one forward pass, built inside the graph from the image and the masks (at
any resolution: they are resized bilinearly to the input), so memory is bounded and the passes are the
floor: one per copy. Probabilities are the model's plain softmax output for each copy, computed by the
network with its batch norms folded into the convolutions (:meth:`xconv.Model.probability_network`).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from xconv.cancel import stop_if_cancelled


def masked_probability_step(model, normalize: bool):
    """tf.function (image (H, W, 3), baseline (H, W, 3), masks (B, h, w), target ()) -> (probabilities (B,),
    usable (B,)). With ``normalize`` each mask is first scaled to [0, 1] by its own minimum and maximum, and a
    constant mask is unusable (Score-CAM skips it)."""
    return model.cached(("masked_probabilities", normalize), lambda: _build_step(model, normalize))


def _build_step(model, normalize: bool):
    import tensorflow as tf

    height, width = model.input_size
    network = model.probability_network()

    @tf.function(input_signature=[tf.TensorSpec([height, width, 3], tf.float32),
                                  tf.TensorSpec([height, width, 3], tf.float32),
                                  tf.TensorSpec([None, None, None], tf.float32),
                                  tf.TensorSpec([], tf.int32)])
    def step(image, baseline, masks, target):
        masks = masks[..., None]
        at_input_size = tf.logical_and(tf.shape(masks)[1] == height, tf.shape(masks)[2] == width)
        masks = tf.cond(at_input_size, lambda: tf.ensure_shape(masks, [None, height, width, 1]),
                        lambda: tf.image.resize(masks, (height, width), method="bilinear"))
        usable = tf.ones(tf.shape(masks)[:1], tf.bool)
        if normalize:
            low = tf.reduce_min(masks, axis=(1, 2, 3), keepdims=True)
            span = tf.reduce_max(masks, axis=(1, 2, 3), keepdims=True) - low
            usable = tf.reshape(span > 0, [-1])
            masks = tf.math.divide_no_nan(masks - low, span)
        copies = baseline + masks * (image - baseline)
        probabilities = network(copies)
        return probabilities[:, target], usable

    return step


def masked_probabilities(model, image: np.ndarray, baseline: np.ndarray, masks: Iterable[np.ndarray], target: int,
                         normalize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The target's probability on the copy seen through each mask, for ``masks`` given in chunks
    (arrays (B, h, w)); returns (probabilities, usable) concatenated over the chunks."""
    import tensorflow as tf

    step = masked_probability_step(model, normalize)
    image, baseline = tf.constant(image, tf.float32), tf.constant(baseline, tf.float32)
    target = tf.constant(int(target), tf.int32)
    results = []
    for chunk in masks:
        stop_if_cancelled()
        results.append(step(image, baseline, tf.constant(chunk, tf.float32), target))
    if not results:
        return np.zeros(0, np.float32), np.zeros(0, bool)
    return (np.concatenate([r[0].numpy() for r in results]), np.concatenate([r[1].numpy() for r in results]))


def chunked(array: np.ndarray, size: int):
    """Consecutive slices of ``size`` rows."""
    return (array[start:start + size] for start in range(0, len(array), size))
