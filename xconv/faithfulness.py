"""Shared machinery for faithfulness metrics: maps at input size, pixel rankings, and the deletion game.

Deletion and insertion (Petsiuk et al. 2018) remove pixels from the image, or reveal them on a baseline,
in the order of the map's values, and follow the target's softmax probability. Every step is one
compiled forward pass over all images of a batch (``S`` steps: ``S + 1`` passes, the floor), or over
several steps' copies when the batch is smaller than ``batch_size`` (larger passes cost less per image);
the copies are built inside the graph from each image's pixel ranks, so nothing per step crosses from
the host. The two ends of a curve (the image, the baseline) are the same for every map, so the curves
of several methods on one batch share them: each further curve costs ``S - 1`` passes. Insertion in one
order shows exactly the copies deletion in the reverse order shows, read backwards; curves are
remembered per image by the copies they show, so a game already played is never played again (the
``random`` reference row's insertion, on the complement of its deletion noise, costs no pass).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

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
    order, not by position, so a flat map removes pixels evenly rather than from the top row down.

    Value and tie-break are packed into one unique 64-bit key per pixel and sorted once: 2.5x faster than
    a two-key lexsort, which took 7 % of a deletion curve's time on the bundled model."""
    count, height, width = maps.shape
    tie_break = np.random.default_rng(seed).permutation(height * width).astype(np.uint64)
    keys = (descending_order_bits(maps.reshape(count, -1)).astype(np.uint64) << np.uint64(32)) | tie_break
    order = np.argsort(keys, axis=-1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(height * width)[None].repeat(count, 0), axis=-1)
    return ranks.reshape(count, height, width).astype(np.int32)


def map_ranks(maps: np.ndarray) -> np.ndarray:
    """:func:`pixel_ranks`, without the sorts that need not happen; both shortcuts give its exact result.

    A batch of one repeated map (the ``center`` row) is ranked once, and a map of evenly spread distinct
    levels (the ``random`` row, and its ``1 - map``) ranks itself: on the bundled model these were 3 of
    every 5 sorts of ``xconv score``'s default run."""
    if len(maps) > 1 and (maps == maps[:1]).all():
        return np.repeat(pixel_ranks(maps[:1]), len(maps), axis=0)
    ranks = np.empty(maps.shape, np.int32)
    to_sort = []
    for index, values in enumerate(maps):
        levels = evenly_spread_ranks(values)
        if levels is None:
            to_sort.append(index)
        else:
            ranks[index] = levels
    if to_sort:  # pixel_ranks breaks ties by a fixed order, the same whichever maps it is given
        ranks[to_sort] = pixel_ranks(maps[to_sort])
    return ranks


def evenly_spread_ranks(values: np.ndarray) -> np.ndarray | None:
    """(H, W) int32 descending ranks of a map whose n pixels hold n distinct levels evenly spread between
    its minimum and maximum, read off the levels in a few linear passes; None for any other map."""
    count = values.size
    low, high = values.min(), values.max()
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        return None
    ranks = np.rint((high - values.ravel()) / (high - low) * (count - 1)).astype(np.int64)
    if not (np.bincount(ranks, minlength=count) == 1).all():
        return None
    by_rank = np.empty(count, np.int64)
    by_rank[ranks] = np.arange(count)
    if not (np.diff(values.ravel()[by_rank]) < 0).all():  # strictly falling along the ranks: exactly the sort's
        return None
    return ranks.reshape(values.shape).astype(np.int32)


def descending_order_bits(values: np.ndarray) -> np.ndarray:
    """uint32 keys that sort finite float32 values from highest to lowest (equal values, -0 and 0 too,
    get equal keys): IEEE bits with the sign flipped for positives and every bit for negatives order
    floats as unsigned integers."""
    negated = -np.asarray(values, np.float32) + np.float32(0)  # + 0 turns -0.0 into 0.0
    bits = negated.view(np.uint32)
    return np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))


def baseline_images(model, images: np.ndarray, kind: str) -> np.ndarray:
    """Preprocessed baselines: the image blurred (a Gaussian of sigma 5 px per 224 px), black, or gray.

    Petsiuk et al.'s code differs: insertion reveals pixels on a blur whose sigma-5 kernel is cut to 11 x 11
    (milder than this whole Gaussian), and deletion replaces them with zeros of the normalized input (the
    dataset's mean colour, near ``gray``). One baseline for both games, as the issue asks, lets insertion
    read deletion's copies backwards; the docs give every baseline's numbers."""
    from xconv.images import baseline_pixels

    return model.preprocess(baseline_pixels(images, kind, blur_sigma=5.0 * max(images.shape[1:3]) / 224))


def game_step(model):
    """tf.function (inputs, baselines, ranks, counts (K,), targets, insertion) -> target probabilities (K, N):
    for each count, the ``count`` top-ranked pixels of each image replaced by the baseline (deletion) or
    the only ones shown on it (insertion), all K * N copies in one forward pass."""
    return model.cached(("deletion_game",), lambda: _build_game_step(model))


def _build_game_step(model):
    import tensorflow as tf

    height, width = model.input_size
    network = model.probability_network()

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32),
                                  tf.TensorSpec([None, height, width, 3], tf.float32),
                                  tf.TensorSpec([None, height, width], tf.int32), tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.bool)])
    def step(inputs, baselines, ranks, counts, targets, insertion):
        on_baseline = tf.math.logical_xor(ranks[None] < counts[:, None, None, None], insertion)
        copies = tf.where(on_baseline[..., None], baselines[None], inputs[None])  # one pass over the copies
        probabilities = network(tf.reshape(copies, [-1, height, width, 3]))
        chosen = tf.gather(probabilities, tf.tile(targets, [tf.size(counts)]), axis=1, batch_dims=1)
        return tf.reshape(chosen, [tf.size(counts), -1])

    return step


@dataclass
class BatchGame:
    """What every deletion and insertion curve on one batch starts from: the preprocessed images and
    baselines, the two ends of every curve (the target's probability with no pixel and with every pixel
    changed, which do not depend on the map), and what the batch has already computed: each image's
    curve by the name of the copies it shows, each map's pixel ranks by the map's content."""

    inputs: np.ndarray
    baselines: np.ndarray
    on_images: np.ndarray
    on_baselines: np.ndarray
    curves: dict = field(default_factory=dict)
    ranks: dict = field(default_factory=dict)


def remembered_for_last_batch(model, name: str, key, build):
    """``build()``, kept on the model under ``name`` for the last ``key`` only: what every method and metric
    scored on one batch shares, dropped when the next batch arrives, so memory stays flat."""
    memo = model.memo(name)
    if key not in memo:
        memo.clear()
        memo[key] = build()
    return memo[key]


def game_setup(model, images: np.ndarray, targets: np.ndarray, baseline: str, batch_size: int = 64) -> BatchGame:
    """The batch's :class:`BatchGame`, remembered for the last batch by content, targets and baseline, so
    the curves of every method on one batch pay for the 2 ends of their S + 1 passes once."""
    def build():
        baselines = baseline_images(model, images, baseline)
        return BatchGame(model.preprocess(images), baselines, image_probabilities(model, images, targets, batch_size),
                         target_probabilities(model, baselines, targets, batch_size))

    return remembered_for_last_batch(model, "deletion_game_setup", (*batch_name(images, targets), baseline), build)


def step_counts(pixels: int, steps: int, insertion: bool) -> np.ndarray:
    """(S + 1,) int32: how many top-ranked pixels step k removes (deletion) or shows (insertion). Insertion's
    counts mirror deletion's (what deletion at step S - k keeps), so insertion in the reverse order shows
    exactly deletion's copies even where an odd pixel count makes k / S of it fall between two pixels."""
    removed = np.round(np.linspace(0, pixels, steps + 1)).astype(np.int32)
    return pixels - removed[::-1] if insertion else removed


def removal_steps(ranks: np.ndarray, counts: np.ndarray, insertion: bool) -> np.ndarray:
    """(N, H * W) int32: the step of a deletion game from which each pixel shows the baseline. It names
    the copies a game shows: insertion at step j shows what deletion in the reverse order shows at step
    S - j, so an insertion game gets the removal steps of that deletion, and the two get the same name."""
    steps = len(counts) - 1
    shown_from = np.searchsorted(counts, ranks.reshape(len(ranks), -1), side="right").astype(np.int32)
    return steps + 1 - shown_from if insertion else shown_from


def game_curves(model, images: np.ndarray, targets: np.ndarray, maps: np.ndarray, steps: int, baseline: str,
                insertion: bool, batch_size: int = 64) -> np.ndarray:
    """(N, steps + 1) target probabilities as a fraction 0, 1/S, ..., 1 of the pixels is deleted (or inserted).
    Only the images whose game this batch has not played yet go through the model."""
    counts = step_counts(images.shape[1] * images.shape[2], steps, insertion)
    game = game_setup(model, images, targets, baseline, batch_size)
    maps_name = (np.shape(maps), digest(np.asarray(maps, np.float32)))
    if maps_name not in game.ranks:  # deletion and insertion of one map rank its pixels once
        game.ranks[maps_name] = map_ranks(maps_at_input_size(maps, images.shape[1:3]))
    ranks = game.ranks[maps_name]
    names = [(index, steps, digest(row)) for index, row in enumerate(removal_steps(ranks, counts, insertion))]
    new = np.array([index for index, name in enumerate(names) if name not in game.curves], np.int64)
    if len(new):
        curves = play_game(model, game.inputs[new], game.baselines[new], ranks[new], targets[new], counts, insertion,
                           batch_size)
        ends = (game.on_images[new], game.on_baselines[new])
        curves[:, 0], curves[:, -1] = ends[::-1] if insertion else ends
        for index, curve in zip(new, curves):
            game.curves[names[index]] = curve[::-1] if insertion else curve  # as deletion: the image first
    curves = np.stack([game.curves[name] for name in names])
    return curves[:, ::-1].copy() if insertion else curves


def digest(array: np.ndarray) -> bytes:
    """A 16-byte name for an array's bytes."""
    return hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=16).digest()


def batch_name(images: np.ndarray, targets: np.ndarray) -> tuple:
    """What the per-batch memos know a batch by: its images' shape and content, and its targets."""
    return images.shape, digest(images), np.asarray(targets, np.int64).tobytes()


def play_game(model, inputs, baselines, ranks, targets, counts, insertion: bool, batch_size: int) -> np.ndarray:
    """(N, S + 1) curves with the inner steps 1 .. S - 1 filled in by compiled passes (the ends left 0)."""
    import tensorflow as tf

    step, steps = game_step(model), len(counts) - 1
    curves = np.zeros((len(inputs), steps + 1), np.float64)
    for start in range(0, len(inputs), batch_size):
        part = slice(start, start + batch_size)
        tensors = [tf.constant(a[part]) for a in (inputs, baselines, ranks)]
        chosen = tf.constant(np.asarray(targets[part], np.int32))
        per_call = max(1, batch_size // len(ranks[part]))  # a small batch takes several steps per pass
        for first in range(1, steps, per_call):
            indices = np.arange(first, min(first + per_call, steps))
            curves[part, indices] = step(*tensors, tf.constant(counts[indices]), chosen, tf.constant(insertion)).numpy().T
    return curves


def area_under(curves: np.ndarray) -> np.ndarray:
    """Trapezoid area under each curve over x = 0 .. 1 in equal steps (written out: ``np.trapezoid`` needs
    NumPy 2, and xconv supports 1.26)."""
    curves = np.asarray(curves, np.float64)
    return (curves.sum(axis=1) - (curves[:, 0] + curves[:, -1]) / 2) / (curves.shape[1] - 1)


def image_probabilities(model, images: np.ndarray, targets: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """:func:`plain_probabilities` remembered for the last batch: every method's curves and confidences on a
    batch start from the same probabilities of its images (read-only)."""
    def build():
        probabilities = plain_probabilities(model, images, targets, batch_size)
        probabilities.flags.writeable = False
        return probabilities

    return remembered_for_last_batch(model, "image_probabilities", batch_name(images, targets), build)


def plain_probabilities(model, images: np.ndarray, targets: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The target's softmax probability on each image, straight from the network (no test-time flipping):
    the same function the perturbed copies go through."""
    return target_probabilities(model, model.preprocess(images), targets, batch_size)


def target_probabilities(model, inputs: np.ndarray, targets: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The target's softmax probability on each preprocessed input, through the folded network."""
    network, out = model.probability_network(), []
    for start in range(0, len(inputs), batch_size):
        probabilities = np.asarray(network(inputs[start:start + batch_size]))
        out.append(probabilities[np.arange(len(probabilities)), targets[start:start + batch_size]])
    return np.concatenate(out)
