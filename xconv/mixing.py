"""CutMix and MixUp on whole training batches, inside tf.data.

Why: a small photo set is memorised long before the schedule ends; mixing two photos and their labels is
a regulariser that keeps the net learning from the whole set. CutMix (Yun et al. 2019) pastes a box of
one photo into another and weights the labels by the box's area, so the net must find each animal where
it is: the paper measured better class-activation localisation too, which Grad-CAM relies on. MixUp
(Zhang et al. 2018) blends whole photos. One draw per batch, as in both papers' reference code; a batch
is mixed with its own reversal, so no photo is mixed with itself unless the batch has odd size.

The draws are stateless and take their seeds from ``tf.data.Dataset.random(..., rerandomize_each_iteration
=True)``: stateful random ops inside ``Dataset.map`` restart with every new iterator once a global seed is
set, so every epoch would repeat the same boxes batch by batch.
"""

from __future__ import annotations

MIXINGS = ("none", "cutmix", "mixup")


def cutmix_box(height, width, area_share, seed):
    """Top, bottom, left, right of a box covering about ``area_share`` of the image at a random centre."""
    import tensorflow as tf

    side = tf.sqrt(area_share)
    box_h = tf.cast(tf.cast(height, tf.float32) * side, tf.int32)
    box_w = tf.cast(tf.cast(width, tf.float32) * side, tf.int32)
    seed_y, seed_x = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    centre_y = tf.random.stateless_uniform([], seed_y, 0, height, dtype=tf.int32)
    centre_x = tf.random.stateless_uniform([], seed_x, 0, width, dtype=tf.int32)
    top = tf.clip_by_value(centre_y - box_h // 2, 0, height)
    bottom = tf.clip_by_value(centre_y + box_h // 2, 0, height)
    left = tf.clip_by_value(centre_x - box_w // 2, 0, width)
    right = tf.clip_by_value(centre_x + box_w // 2, 0, width)
    return top, bottom, left, right


def cutmix(images, labels, seed):
    """Paste a box of the reversed batch into each photo; labels mixed by the pasted area (after clipping).
    ``seed``: a stateless seed, shape (2,)."""
    import tensorflow as tf

    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    seed_share, seed_box = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    share = 1.0 - tf.random.stateless_uniform([], seed_share)  # lambda ~ Beta(1, 1)
    top, bottom, left, right = cutmix_box(height, width, share, seed_box)
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    mask = tf.cast(inside, images.dtype)[None, :, :, None]
    partner_images, partner_labels = tf.reverse(images, [0]), tf.reverse(labels, [0])
    mixed = images * (1.0 - mask) + partner_images * mask
    pasted = tf.cast((bottom - top) * (right - left), tf.float32) / tf.cast(height * width, tf.float32)
    return mixed, (1.0 - pasted) * labels + pasted * partner_labels


def mixup(images, labels, seed, alpha: float = 0.2):
    """Blend each photo with its partner by lambda ~ Beta(alpha, alpha), labels alike."""
    import tensorflow as tf

    first_seed, second_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    first = tf.random.stateless_gamma([], first_seed, alpha)
    second = tf.random.stateless_gamma([], second_seed, alpha)
    share = first / (first + second)
    partner_images, partner_labels = tf.reverse(images, [0]), tf.reverse(labels, [0])
    return share * images + (1 - share) * partner_images, share * labels + (1 - share) * partner_labels


def batch_mixer(kind: str, probability: float):
    """A map function ``(images, labels, seed) -> (images, labels)`` that mixes a batch with ``probability``,
    else passes it through; ``seed`` is a stateless seed of shape (2,), a new one per batch and epoch."""
    import tensorflow as tf

    if kind not in MIXINGS:
        raise ValueError(f"unknown mixing {kind!r}; choose from {', '.join(MIXINGS)}")
    mix = {"cutmix": cutmix, "mixup": mixup}.get(kind)

    def maybe_mix(images, labels, seed):
        if mix is None or probability <= 0:
            return images, labels
        seed = tf.cast(seed, tf.int64)
        seed_coin, seed_mix = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        coin = tf.random.stateless_uniform([], seed_coin)
        return tf.cond(coin < probability, lambda: mix(images, labels, seed_mix), lambda: (images, labels))

    return maybe_mix


def with_mixing(data, kind: str, probability: float, seed: int):
    """``data`` (batches of images, one-hot labels) with ``batch_mixer`` applied, fresh draws every epoch."""
    import tensorflow as tf

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    mixer = batch_mixer(kind, probability)
    return tf.data.Dataset.zip(data, seeds).map(lambda batch, pair: mixer(*batch, pair),
                                                num_parallel_calls=tf.data.AUTOTUNE)
