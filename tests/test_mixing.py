"""CutMix and MixUp on batches: what is pasted or blended, and labels weighted by exactly that share."""

import numpy as np
import pytest
import tensorflow as tf

from xconv.mixing import batch_mixer, cutmix, mixup, with_mixing


def constant_batch(size=4, side=16):
    """Photo i is filled with the value i + 1, so every output pixel says which photo it came from."""
    images = tf.constant(np.arange(1, size + 1, dtype=np.float32)[:, None, None, None] * np.ones((1, side, side, 3), np.float32))
    labels = tf.one_hot([0, 1, 0, 1][:size], 2)
    return images, labels


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_pastes_one_box_from_the_partner_and_weights_labels_by_its_area(seed):
    images, labels = constant_batch()
    mixed, mixed_labels = (np.asarray(t) for t in cutmix(images, labels, tf.constant([seed, 7], tf.int64)))
    for index in range(4):
        own, partner = index + 1, 4 - index  # the partner is the reversed batch
        pixels = mixed[index, :, :, 0]
        assert set(np.unique(pixels)) <= {own, partner}
        from_partner = pixels == partner
        share = from_partner.mean()
        if share:
            rows, cols = np.nonzero(from_partner)
            box = from_partner[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
            assert box.all()  # one solid rectangle
        expected = (1 - share) * np.asarray(labels[index]) + share * np.asarray(labels[3 - index])
        np.testing.assert_allclose(mixed_labels[index], expected, atol=1e-6)
    # One box for the whole batch, as in the paper's code.
    np.testing.assert_array_equal(mixed[0, :, :, 0] == 4, mixed[1, :, :, 0] == 3)


def test_cutmix_boxes_cover_the_whole_range_of_areas():
    images, labels = constant_batch()
    shares = [float(np.asarray(cutmix(images, labels, tf.constant([i, 0], tf.int64))[1])[0, 1]) for i in range(60)]
    assert min(shares) < 0.1 and max(shares) > 0.5


def test_mixup_blends_photos_and_labels_by_the_same_share():
    images, labels = constant_batch()
    mixed, mixed_labels = (np.asarray(t) for t in mixup(images, labels, tf.constant([3, 0], tf.int64)))
    share = (mixed[0, 0, 0, 0] - 4) / (1 - 4)  # photo 1 blended with photo 4
    assert 0 <= share <= 1
    np.testing.assert_allclose(mixed[0], share * 1 + (1 - share) * 4, rtol=1e-5)
    np.testing.assert_allclose(mixed_labels[0], share * np.asarray(labels[0]) + (1 - share) * np.asarray(labels[3]),
                               atol=1e-6)


def test_mixer_probability_decides_how_often_a_batch_is_mixed():
    images, labels = constant_batch()
    never, always = batch_mixer("cutmix", 0.0), batch_mixer("mixup", 1.0)
    seed = tf.constant([1, 2], tf.int64)
    np.testing.assert_array_equal(np.asarray(never(images, labels, seed)[0]), np.asarray(images))
    assert not np.array_equal(np.asarray(always(images, labels, seed)[1]), np.asarray(labels))
    with pytest.raises(ValueError, match="unknown mixing"):
        batch_mixer("blend", 0.5)


def test_every_epoch_draws_new_boxes_even_under_a_global_seed():
    """Stateful random ops in Dataset.map repeat per iterator once a global seed is set; the mixing must not."""
    tf.random.set_seed(5)
    images, labels = constant_batch(side=32)
    data = with_mixing(tf.data.Dataset.from_tensors((images, labels)).repeat(3), "cutmix", 1.0, seed=11)
    epochs = [[np.asarray(mixed_labels) for _, mixed_labels in data] for _ in range(2)]
    first, second = (np.stack(epoch)[:, 0, 1] for epoch in epochs)  # the pasted share of each batch
    assert len(set(np.round(first, 5))) > 1  # batches differ within an epoch
    assert not np.allclose(first, second)  # and the next epoch draws anew
