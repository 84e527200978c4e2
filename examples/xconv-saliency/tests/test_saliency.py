"""The example plugin's own tests: xconv's contract checks plus a numeric check of the method."""

import numpy as np
import tensorflow as tf

import xconv
from xconv.testing import check_explainer, check_renderer, random_images, tiny_convnet
from xconv_saliency import ContourRenderer, InputXGradient


def test_contract():
    explanation = check_explainer(InputXGradient)
    check_renderer(ContourRenderer, explanation, levels=3)
    check_explainer(InputXGradient, signed=True)


def test_input_x_gradient_is_the_input_times_the_plain_gradient():
    model = tiny_convnet()
    images = random_images(2, model.input_size, seed=3)
    explained = InputXGradient(model, score="logit").explain(images, [1, 1])
    inputs = tf.constant(model.preprocess(images))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        score = tf.reduce_sum(model.feature_model([])(inputs)[0][:, 1])
    expected = (inputs * tape.gradient(score, inputs)).numpy()
    np.testing.assert_allclose(explained.attributions, expected, rtol=1e-4, atol=1e-7)
    peak = np.abs(expected).max(axis=-1)
    np.testing.assert_allclose(explained.heatmaps, peak / peak.max(axis=(1, 2), keepdims=True), atol=1e-5)


def test_contours_draw_on_a_copy_of_the_photo(tmp_path):
    model = tiny_convnet()
    images = random_images(1, model.input_size, seed=4)
    explained = xconv.explain(model, images, "input-x-gradient")
    [output] = ContourRenderer(levels=2).render(explained, tmp_path)
    drawn = xconv.load_image(output)
    assert drawn.shape == images[0].shape and (drawn != images[0]).any() and output.index == 0


def test_registered_through_the_entry_point():
    registry = xconv.registry.get_registry()
    assert registry.entry("explainer", "input-x-gradient").distribution == "xconv-saliency"
    assert registry.get("renderer", "contours") is ContourRenderer
    assert registry.warnings == []  # no clash with a built-in name
