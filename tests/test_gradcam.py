"""Grad-CAM against hand-computed values and an independent implementation; batching; nested models."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import xconv
from reference_gradcam import reference_gradcam
from xconv.testing import TinyModel, random_images, tiny_keras_convnet


def dense_logits(dense):
    """Pre-softmax scores of a Dense layer, computed by hand from its weights."""
    kernel, bias = (np.asarray(w) for w in dense.get_weights())
    return lambda pooled: tf.matmul(pooled, kernel) + bias


def gap_then(dense):
    logits = dense_logits(dense)
    return lambda features: logits(tf.reduce_mean(features, axis=(1, 2)))


def hand_model():
    """RGB (2, 2) -> 1x1 conv copying R and G into 'feat' -> global average -> Dense with known weights."""
    inputs = keras.Input((2, 2, 3))
    features = keras.layers.Conv2D(2, 1, use_bias=False, name="feat")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(2, activation="softmax", name="scores")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("feat").set_weights([np.array([[1, 0], [0, 1], [0, 0]], np.float32).reshape(1, 1, 3, 2)])
    model.get_layer("scores").set_weights([np.array([[1.0, -1.0], [0.5, 2.0]], np.float32), np.zeros(2, np.float32)])
    image = np.zeros((1, 2, 2, 3), np.uint8)
    image[0, ..., 0] = [[1, 2], [3, 4]]
    image[0, ..., 1] = [[4, 3], [2, 1]]
    return TinyModel(model, ["a", "b"]), image


def test_matches_hand_computed_values():
    # Scores: a = 1*mean(R) + 0.5*mean(G) = 3.75, b = -mean(R) + 2*mean(G) = 2.5; so 'a' is predicted.
    # alpha_k = W[k, c] / 4 (the spatial mean of a constant gradient), then ReLU and division by the max.
    model, image = hand_model()
    explained = xconv.explain(model, image, score="logit")
    assert explained.target_names == ["a"] and explained.predictions[0][0] == "a"
    np.testing.assert_allclose(explained.heatmaps[0], np.array([[0.75, 0.875], [1.0, 1.125]]) / 1.125, atol=1e-6)
    explained = xconv.explain(model, image, target="b", score="logit")
    np.testing.assert_allclose(explained.heatmaps[0], np.array([[1.75, 1.0], [0.25, 0.0]]) / 1.75, atol=1e-6)
    assert explained.targets == [1] and explained.layer == "feat"


def test_two_class_contrast_score_matches_hand_computed_values():
    # Two classes: by default the score is the log-odds y_a - y_b, so alpha = (W[:, a] - W[:, b]) / 4 =
    # (0.5, -0.375), and the map is ReLU(0.5 R - 0.375 G) = [[0, 0], [0.75, 1.625]], then / 1.625.
    model, image = hand_model()
    explained = xconv.explain(model, image, target="a")
    np.testing.assert_allclose(explained.heatmaps[0], np.array([[0, 0], [0.75, 1.625]]) / 1.625, atol=1e-6)
    with pytest.raises(xconv.XconvError, match="one of auto, logit, contrast"):
        xconv.explain(model, image, score="nope")


def test_all_zero_gradient_gives_zeros_not_nan():
    model, image = hand_model()
    model.keras_model.get_layer("scores").set_weights([np.zeros((2, 2), np.float32), np.zeros(2, np.float32)])
    heatmap = xconv.explain(model, image).heatmaps[0]
    assert not np.isnan(heatmap).any() and (heatmap == 0).all()


@pytest.fixture(scope="module")
def tiny():
    return TinyModel(tiny_keras_convnet((32, 32), classes=3, seed=1), ["x", "y", "z"])


@pytest.mark.parametrize("target", [None, 2])
def test_matches_independent_implementation(tiny, target):
    images = random_images(4, (32, 32), seed=7)
    keras_model = tiny.keras_model
    feature_fn = keras.Model(keras_model.inputs, keras_model.get_layer("conv3").output)
    explained = xconv.explain(tiny, images, target=target, layer="conv3")
    assert explained.heatmaps.shape == (4, 8, 8) and explained.heatmaps.dtype == np.float32
    for index, image in enumerate(images):
        expected, expected_target = reference_gradcam(
            feature_fn, gap_then(keras_model.get_layer("predictions")), tiny.preprocess(image[None])[0], target)
        np.testing.assert_allclose(explained.heatmaps[index], expected, atol=1e-5)
        assert explained.targets[index] == expected_target
    assert explained.heatmaps.min() >= 0 and np.allclose(explained.heatmaps.max(axis=(1, 2)), 1)


def test_batch_equals_one_by_one(tiny):
    images = random_images(6, (32, 32), seed=11)
    together = xconv.explain(tiny, images, target="y")
    for index in range(len(images)):
        alone = xconv.explain(tiny, images[index:index + 1], target="y")
        np.testing.assert_allclose(together.heatmaps[index], alone.heatmaps[0], atol=1e-5)


def test_gradients_are_pooled_per_image_not_over_the_batch(tiny):
    """A batch of two very different images must not share channel weights."""
    images = np.stack([random_images(1, (32, 32), seed=1)[0], 255 - random_images(1, (32, 32), seed=2)[0]])
    explained = xconv.explain(tiny, images, target=0)
    alone = xconv.explain(tiny, images[1:], target=0)
    np.testing.assert_allclose(explained.heatmaps[1], alone.heatmaps[0], atol=1e-5)


def test_per_image_targets_and_default_layer(tiny):
    images = random_images(3, (32, 32), seed=5)
    explained = xconv.explain(tiny, images, target=["x", "z", 1])
    assert explained.targets == [0, 2, 1]
    assert explained.layer == "conv3"  # the last layer with a spatial output


def nested_models(inner_input=(32, 32)):
    """The transfer-learning shape: a functional base nested inside a Sequential and a Functional model."""
    base = tiny_keras_convnet(inner_input, classes=3, seed=4)
    backbone = keras.Model(base.inputs, base.get_layer("conv3").output, name="backbone")
    head = keras.layers.Dense(2, activation="softmax", name="head")
    sequential = keras.Sequential([keras.Input((*inner_input, 3)), backbone,
                                   keras.layers.GlobalAveragePooling2D(name="pool"), head], name="seq")
    inputs = keras.Input((*inner_input, 3))
    functional = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D(name="pool")(backbone(inputs))), name="fun")
    return backbone, head, sequential, functional


@pytest.mark.parametrize("which", ["sequential", "functional"])
def test_nested_base_layer_works_without_graph_disconnected(which):
    backbone, head, sequential, functional = nested_models()
    model = TinyModel(sequential if which == "sequential" else functional, ["cat", "dog"])
    assert model.default_layer == "backbone/conv3"
    images = random_images(3, (32, 32), seed=9)
    explained = xconv.explain(model, images, target="dog", score="logit")
    feature_fn = keras.Model(backbone.inputs, backbone.get_layer("conv3").output)
    for index, image in enumerate(images):
        expected, _ = reference_gradcam(feature_fn, gap_then(head), image.astype(np.float32), 1)
        np.testing.assert_allclose(explained.heatmaps[index], expected, atol=1e-5)
    # An inner layer that is not the last one, addressed by its bare name.
    assert xconv.explain(model, images, layer="conv2").heatmaps.shape == (3, 16, 16)


def test_wrong_layer_and_class_are_clear_errors(tiny):
    images = random_images(1, (32, 32))
    with pytest.raises(xconv.UnknownNameError, match="conv3"):
        xconv.explain(tiny, images, layer="nope")
    with pytest.raises(xconv.UnknownNameError, match="'x', 'y', 'z'|x, y, z"):
        xconv.explain(tiny, images, target="unicorn")
    with pytest.raises(xconv.XconvError, match="out of range"):
        xconv.explain(tiny, images, target=7)
    with pytest.raises(xconv.XconvError, match=r"\(32, 32\)"):
        xconv.explain(tiny, random_images(1, (16, 16)))


def test_classes_named_with_digits_resolve_by_name_first():
    """Folders "1" and "2" train classes "1" and "2": "1" must mean that class, not index 1."""
    model = TinyModel(tiny_keras_convnet((32, 32), classes=3, seed=1), ["1", "2", "10"])
    assert [model.class_index(name) for name in ("1", "2", "10")] == [0, 1, 2]
    assert model.class_index(1) == 1 and model.class_index("0") == 0  # not a name: an index


def test_a_class_is_found_by_its_leading_words_never_by_a_cut_word():
    """"cat" on ImageNet once explained catamaran (a prefix of letters); it must be unknown, listing the
    names that hold it first."""
    names = ["tench", "goldfish", "catamaran", "tiger_cat", "Persian cat", "golden_retriever", "Shih-Tzu"]
    model = TinyModel(tiny_keras_convnet((32, 32), classes=len(names), seed=1), names)
    assert [model.class_index(t) for t in ("golden", "Golden Retriever", "persian", "shih", "tiger cat")] == [5, 5, 4, 6, 3]
    with pytest.raises(xconv.UnknownNameError) as raised:
        model.class_index("cat")
    assert str(raised.value).startswith("unknown class 'cat'; choose from: catamaran, tiger_cat, Persian cat, tench")
    with pytest.raises(xconv.UnknownNameError):
        model.class_index("gold")  # neither goldfish nor golden_retriever starts with the word "gold"


def test_inceptionv3_random_weights_matches_independent_implementation():
    model = xconv.load_model("inceptionv3", weights=None)
    assert model.default_layer == "mixed10" and len(model.class_names) == 1000
    keras_model = model.keras_model
    images = random_images(2, model.input_size, seed=2)
    feature_fn = keras.Model(keras_model.inputs, keras_model.get_layer("mixed10").output)
    for target in (None, "tiger_cat"):
        explained = xconv.explain(model, images, target=target)
        assert explained.heatmaps.shape == (2, 8, 8)
        for index, image in enumerate(images):
            expected, expected_target = reference_gradcam(
                feature_fn, gap_then(keras_model.get_layer("predictions")), model.preprocess(image[None])[0],
                None if target is None else model.class_names.index(target))
            assert explained.targets[index] == expected_target
            np.testing.assert_allclose(explained.heatmaps[index], expected, atol=2e-4)


def test_a_layer_of_one_cell_is_said_not_drawn_as_everywhere():
    """A model trained on 32 px photos has a 1x1 last layer: its map tinted the whole photo without a word."""
    inputs = keras.Input((8, 8, 3))
    features = keras.layers.Conv2D(4, 8, activation="relu", name="whole")(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(features))
    model = TinyModel(keras.Model(inputs, outputs), ["a", "b"])
    with pytest.warns(xconv.XconvWarning, match="layer whole is 1x1 at this input size: gradcam's map is one value"):
        xconv.explain(model, random_images(2, (8, 8)), "gradcam")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", xconv.XconvWarning)
        xconv.explain(TinyModel(tiny_keras_convnet((32, 32), classes=2), ["a", "b"]), random_images(1), "gradcam")
