"""The example plugin's own tests: xconv's contract check plus numeric checks of each method."""

import numpy as np
import tensorflow as tf

import xconv
from xconv.testing import check_explainer, random_images, tiny_convnet
from xconv_saliency import GradCAMPlusPlus, SmoothGrad


def test_contract():
    check_explainer(SmoothGrad, samples=4)
    check_explainer(GradCAMPlusPlus)


def test_smoothgrad_without_noise_is_the_plain_gradient():
    model = tiny_convnet()
    images = random_images(2, model.input_size, seed=3)
    explained = SmoothGrad(model, samples=1, noise=0.0).explain(images, [1, 1])
    inputs = tf.constant(model.preprocess(images))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        score = tf.reduce_sum(model.feature_model([])(inputs)[0][:, 1])
    expected = tf.reduce_max(tf.abs(tape.gradient(score, inputs)), axis=-1).numpy()
    expected /= expected.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(explained.heatmaps, expected, atol=1e-5)
    assert explained.heatmaps.shape == (2, *model.input_size)


def test_gradcam_plus_plus_weights_match_numpy():
    rng = np.random.default_rng(0)
    features = rng.uniform(0, 2, (2, 3, 3, 4)).astype(np.float32)
    gradients = rng.normal(0, 1, (2, 3, 3, 4)).astype(np.float32)
    explainer = GradCAMPlusPlus(tiny_convnet())
    weights = explainer.channel_weights(tf.constant(features), tf.constant(gradients)).numpy()
    denominator = 2 * gradients ** 2 + features.sum(axis=(1, 2), keepdims=True) * gradients ** 3
    alpha = np.where(denominator != 0, gradients ** 2 / np.where(denominator != 0, denominator, 1), 0)
    np.testing.assert_allclose(weights, (alpha * np.maximum(gradients, 0)).sum(axis=(1, 2)), rtol=1e-5)


def test_registered_through_the_entry_point():
    registry = xconv.registry.get_registry()
    assert registry.entries["explainer"]["smoothgrad"].distribution == "xconv-saliency"
    assert registry.get("explainer", "gradcam++") is GradCAMPlusPlus
