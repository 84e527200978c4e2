"""Shared machinery for faithfulness metrics: maps at input size, pixel rankings, and the deletion game.

Deletion and insertion (Petsiuk et al. 2018) remove pixels from the image, or reveal them on a baseline,
in the order of the map's values, and follow the target's softmax probability. Every step is one
compiled forward pass over all images of a batch (``S`` steps: ``S + 1`` passes, the floor); the copies
are built inside the graph from each image's pixel ranks, so nothing per step crosses from the host.
"""

from __future__ import annotations

import numpy as np

BASELINES = ("blurred", "black", "gray")


def maps_at_input_size(heatmaps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) maps resized bilinearly to (N, H, W) float32."""
    import cv2

    height, width = size
    return np.stack([cv2.resize(np.asarray(m, np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
                     for m in heatmaps])


def pixel_ranks(maps: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, H, W) int32: 0 for each map's highest pixel. Ties (flat regions) are broken by one fixed random
    order, not by position, so a flat map removes pixels evenly rather than from the top row down."""
    count, height, width = maps.shape
    flat = maps.reshape(count, -1)
    tie_break = np.random.default_rng(seed).permutation(height * width)
    order = np.lexsort((np.broadcast_to(tie_break, flat.shape), -flat), axis=-1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(height * width)[None].repeat(count, 0), axis=-1)
    return ranks.reshape(count, height, width).astype(np.int32)


def baseline_images(model, images: np.ndarray, kind: str) -> np.ndarray:
    """Preprocessed baselines: the image blurred (sigma 5 px per 224, as Petsiuk et al.), black, or gray."""
    import cv2

    if kind == "blurred":
        sigma = 5.0 * max(images.shape[1:3]) / 224
        pixels = np.stack([cv2.GaussianBlur(image, (0, 0), sigma) for image in images])
    else:
        pixels = np.full_like(images, 0 if kind == "black" else 128)
    return model.preprocess(pixels)


def game_step(model):
    """tf.function (inputs, baselines, ranks, count, targets, insertion) -> target probabilities (N,):
    the ``count`` top-ranked pixels of each image replaced by the baseline (deletion) or the only ones
    shown on it (insertion)."""
    return model.cached(("deletion_game",), lambda: _build_game_step(model))


def _build_game_step(model):
    import tensorflow as tf

    height, width = model.input_size
    network = model.probability_network()

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32),
                                  tf.TensorSpec([None, height, width, 3], tf.float32),
                                  tf.TensorSpec([None, height, width], tf.int32), tf.TensorSpec([], tf.int32),
                                  tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.bool)])
    def step(inputs, baselines, ranks, count, targets, insertion):
        top = ranks < count
        shown = tf.cast(tf.math.logical_xor(top, tf.logical_not(insertion))[..., None], inputs.dtype)
        probabilities = network(baselines + shown * (inputs - baselines))
        return tf.gather(probabilities, targets, axis=1, batch_dims=1)

    return step


def game_curves(model, images: np.ndarray, targets: np.ndarray, maps: np.ndarray, steps: int, baseline: str,
                insertion: bool, batch_size: int = 32) -> np.ndarray:
    """(N, steps + 1) target probabilities as a fraction 0, 1/S, ..., 1 of the pixels is deleted (or inserted)."""
    import tensorflow as tf

    step = game_step(model)
    pixels = images.shape[1] * images.shape[2]
    counts = np.round(np.linspace(0, pixels, steps + 1)).astype(np.int32)
    ranks = pixel_ranks(maps_at_input_size(maps, images.shape[1:3]))
    inputs, baselines = model.preprocess(images), baseline_images(model, images, baseline)
    curves = np.zeros((len(images), steps + 1), np.float64)
    for start in range(0, len(images), batch_size):
        part = slice(start, start + batch_size)
        tensors = [tf.constant(a[part]) for a in (inputs, baselines, ranks)]
        chosen = tf.constant(np.asarray(targets[part], np.int32))
        for index, count in enumerate(counts):
            curves[part, index] = step(*tensors, tf.constant(count), chosen, tf.constant(insertion)).numpy()
    return curves


def area_under(curves: np.ndarray) -> np.ndarray:
    """Trapezoid area under each curve over x = 0 .. 1 in equal steps."""
    return np.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), axis=1)


def plain_probabilities(model, images: np.ndarray, targets: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The target's softmax probability on each image, straight from the network (no test-time flipping):
    the same function the perturbed copies go through."""
    network, out = model.probability_network(), []
    for start in range(0, len(images), batch_size):
        probabilities = np.asarray(network(model.preprocess(images[start:start + batch_size])))
        out.append(probabilities[np.arange(len(probabilities)), targets[start:start + batch_size]])
    return np.concatenate(out)
