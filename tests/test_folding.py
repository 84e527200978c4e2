"""Batch-norm folding: the folded graph computes the same outputs with the norms merged into the convs."""

import keras
import numpy as np
import pytest
from keras import layers

from xconv.folding import fold_batch_norms
from xconv.layers import iter_layers


def randomize_norms(model, seed=0):
    """Trained-looking batch-norm statistics, so folding has something to get wrong."""
    rng = np.random.default_rng(seed)
    for info in iter_layers(model):
        if isinstance(info.layer, layers.BatchNormalization):
            info.layer.set_weights([
                rng.uniform(0.5, 2.0, w.shape).astype("float32") if "variance" in v.path or "gamma" in v.path
                else rng.normal(0, 0.5, w.shape).astype("float32")
                for v, w in zip(info.layer.weights, info.layer.get_weights())
            ])


def layer_types(model):
    return [info.type for info in iter_layers(model)]


def mixed_model():
    """Conv2D, DepthwiseConv2D (multiplier 2) and SeparableConv2D before norms with and without scale or
    center, a conv whose raw output is also a model output, a conv with an activation, a nested Sequential."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((20, 20, 3))
    raw = layers.Conv2D(8, 3, name="raw")(inputs)
    x = layers.BatchNormalization(name="raw_bn")(raw)
    x = layers.ReLU()(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=True, name="depthwise")(x)
    x = layers.BatchNormalization(scale=False, name="depthwise_bn")(x)
    x = layers.Conv2D(6, 1, activation="relu", name="activated")(x)
    x = layers.BatchNormalization(name="after_relu_bn")(x)
    nested = keras.Sequential([
        keras.Input((16, 16, 6)),
        layers.SeparableConv2D(5, 3, name="separable"),
        layers.BatchNormalization(center=False, name="separable_bn"),
        layers.Conv2D(4, 3, use_bias=False, name="plain"),
        layers.BatchNormalization(name="plain_bn"),
    ], name="nested")
    outputs = nested(x)
    model = keras.Model(inputs, [raw, outputs])
    randomize_norms(model)
    return model


def test_folded_model_computes_the_same_outputs():
    model = mixed_model()
    folded = fold_batch_norms(model)
    images = np.random.default_rng(2).normal(0, 1, (3, 20, 20, 3)).astype("float32")
    assert len(folded.outputs) == len(model.outputs) == 2
    for expected, got in zip(model(images, training=False), folded(images)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-4)


def test_only_norms_after_linear_single_use_convs_are_folded():
    folded = fold_batch_norms(mixed_model())
    norms = [info.path.rsplit("/", 1)[-1] for info in iter_layers(folded) if info.type == "BatchNormalization"]
    # raw's output is a model output, so it stays and so does its norm; "activated" has a ReLU inside.
    assert sorted(norms) == ["after_relu_bn", "raw_bn"]
    assert layer_types(folded).count("DepthwiseConv2D") == 1 and layer_types(folded).count("SeparableConv2D") == 1


def test_model_without_norms_is_returned_as_is():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, layers.Conv2D(2, 3)(inputs))
    assert fold_batch_norms(model) is model


def test_inceptionv3_features_fold_every_norm():
    base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(96, 96, 3))
    randomize_norms(base)
    features = keras.Model(base.inputs, base.get_layer("mixed2").output)
    folded = fold_batch_norms(features)
    assert "BatchNormalization" not in layer_types(folded)
    images = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    expected = np.asarray(features(images, training=False))
    np.testing.assert_allclose(np.asarray(folded(images)), expected, rtol=1e-3, atol=1e-3 * expected.max())


class SubclassedBlock(keras.Model):
    """A nested model without a graph: folding must call it as it is."""

    def __init__(self):
        super().__init__()
        self.conv, self.norm = layers.Conv2D(3, 1), layers.BatchNormalization()

    def call(self, x, training=None):
        return self.norm(self.conv(x), training=training)


def unusual_model():
    """A conv + norm pair called twice, a conv feeding two norms, a subclassed and a two-input nested model."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((10, 10, 3))
    shared_conv, shared_norm = layers.Conv2D(3, 3, padding="same", name="shared"), layers.BatchNormalization()
    x = layers.Add()([shared_norm(shared_conv(inputs)), shared_norm(shared_conv(layers.Activation("tanh")(inputs)))])
    forked = layers.Conv2D(3, 1, name="forked")(x)
    x = layers.Add()([layers.BatchNormalization()(forked), layers.BatchNormalization()(forked)])
    x = SubclassedBlock()(x)
    left, right = keras.Input((10, 10, 3)), keras.Input((10, 10, 3))
    pair = keras.Model([left, right], layers.Add()([left, right]), name="pair")
    x = pair([x, layers.BatchNormalization()(layers.Conv2D(3, 1, name="plain")(x))])
    model = keras.Model(inputs, x)
    randomize_norms(model)
    return model


def test_shared_forked_subclassed_and_multi_input_graphs_fold_what_they_can():
    model = unusual_model()
    folded = fold_batch_norms(model)
    assert folded is not model
    images = np.random.default_rng(4).normal(0, 1, (2, 10, 10, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(folded(images)), np.asarray(model(images, training=False)), rtol=1e-4,
                               atol=1e-4)
    top = [type(layer).__name__ for layer in folded.layers]
    # The shared pair (two calls) and "plain" folded; "forked" feeds two norms, so it and they stay.
    assert top.count("BatchNormalization") == 2 and top.count("Conv2D") == 4
    assert any(isinstance(layer, SubclassedBlock) for layer in folded.layers)


def test_gradcam_runs_folded_and_matches_the_unfolded_model():
    """Grad-CAM explains through the folded copy: the same maps and probabilities as the Keras model itself."""
    import tensorflow as tf

    import xconv
    from xconv.testing import TinyModel, random_images

    keras.utils.set_random_seed(3)
    inputs = keras.Input((24, 24, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(6, 3, name="conv1")(x)))
    x = layers.BatchNormalization()(layers.SeparableConv2D(8, 3, name="conv2")(x))
    features = layers.ReLU(name="features")(x)
    logits = layers.Dense(3, name="logits")(layers.GlobalAveragePooling2D()(features))
    keras_model = keras.Model(inputs, layers.Activation("softmax")(logits))
    randomize_norms(keras_model)
    model = TinyModel(keras_model, ["a", "b", "c"])
    images = random_images(4, (24, 24), seed=5)

    explained = xconv.explain(model, images, method="gradcam", layer="features")
    assert "BatchNormalization" not in layer_types(model.feature_model(["features"], fold_batch_norms=True))

    direct = keras.Model(keras_model.inputs, [features, logits, keras_model.output])
    with tf.GradientTape() as tape:
        maps, scores, probabilities = direct(images.astype("float32"), training=False)
        chosen = tf.argmax(probabilities, axis=1)
        score = tf.reduce_sum(tf.gather(scores, chosen, batch_dims=1))  # three classes: the score is the logit
    weights = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2), keepdims=True)
    cam = np.maximum(np.asarray(tf.reduce_sum(weights * maps, axis=-1)), 0)
    cam /= cam.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(explained.heatmaps, cam, atol=1e-4)
    np.testing.assert_allclose(explained.arrays["probabilities"], np.asarray(probabilities), rtol=1e-4, atol=1e-6)
    assert explained.targets == np.asarray(chosen).tolist()


def test_set_layer_weights_refolds_the_compiled_copies_in_place(monkeypatch):
    """The randomization metric changes one copy's weights step by step: the folded graphs and compiled
    steps built before must compute with the new weights, as a model built afresh with them does."""
    import xconv
    import xconv.folding
    from xconv.testing import TinyModel, random_images
    from xconv_plugins.catsdogs import build_catsdogs

    keras_model = build_catsdogs(2, (64, 64))
    randomize_norms(keras_model)
    model = TinyModel(keras_model, ["cat", "dog"])
    images = random_images(2, (64, 64), seed=5)
    xconv.explain(model, images, "gradcam")  # builds and compiles the folded copy
    built = dict(model.__dict__["_cache"])
    folded = model.feature_model(["block4_out"], fold_batch_norms=True)  # the copy the compiled step calls
    before = [np.asarray(output) for output in folded(images.astype("float32"))]
    model.memo("probe")["batch"] = "computed with the old weights"

    rng = np.random.default_rng(7)
    refolded = []
    real_assign = xconv.folding._assign_folded
    monkeypatch.setattr(xconv.folding, "_assign_folded", lambda layer: refolded.append(layer.name) or real_assign(layer))
    model.set_layer_weights({path: [w * rng.uniform(0.5, 1.5, w.shape).astype("float32")
                                    for w in keras_model.get_layer(path).get_weights()]
                             for path in ("block3_sepconv2", "block3_bn2", "block4_shortcut_bn")})
    # Only the two folded convolutions that merge a changed layer are recomputed, in each folded copy.
    assert set(refolded) == {"block3_sepconv2_block3_bn2_folded", "block4_shortcut_block4_shortcut_bn_folded"}
    after = [np.asarray(output) for output in folded(images.astype("float32"))]
    fresh = keras.models.clone_model(keras_model)
    fresh.set_weights(keras_model.get_weights())
    expected = TinyModel(fresh, ["cat", "dog"]).feature_model(["block4_out"])(images.astype("float32"))
    for old, new, wanted in zip(before, after, expected):
        assert not np.allclose(old, new, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(new, np.asarray(wanted), rtol=1e-4, atol=1e-4)
    assert all(model.__dict__["_cache"][key] is value for key, value in built.items())  # nothing rebuilt
    assert "probe" not in model.__dict__.get("_memos", {})
    after_step = xconv.explain(model, images, "gradcam")  # the compiled step, on the new weights
    np.testing.assert_allclose(after_step.arrays["probabilities"], np.asarray(expected[-1]), atol=1e-5)


def test_set_layer_weights_on_a_nested_model_refolds_the_layers_inside_it():
    from xconv.testing import TinyModel

    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    block = keras.Sequential([keras.Input((14, 14, 4)), layers.SeparableConv2D(5, 3, name="separable"),
                              layers.BatchNormalization(name="separable_bn")], name="block")
    x = block(layers.Conv2D(4, 3, name="stem")(inputs))
    keras_model = keras.Model(inputs, layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling2D()(x)))
    randomize_norms(keras_model)
    model = TinyModel(keras_model, ["a", "b"])
    network = model.probability_network()  # compiled, through the folded copy
    images = np.random.default_rng(4).uniform(0, 1, (2, 16, 16, 3)).astype("float32")
    before = np.asarray(network(images))
    rng = np.random.default_rng(5)
    model.set_layer_weights({"block": [w * rng.uniform(0.2, 3.0, w.shape).astype("float32") for w in block.get_weights()]})
    expected = np.asarray(keras_model(images, training=False))
    assert not np.allclose(before, expected, atol=1e-3)
    np.testing.assert_allclose(np.asarray(network(images)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore:layer block4_out is 1x1")  # the catsdogs net at 32 px, small on purpose
def test_training_the_keras_model_is_noticed_by_the_next_explanation():
    """A user fine-tunes ``model.keras_model`` with ``fit`` after explaining: the next prediction and map
    come from the new weights, not from the folded copies of the old ones."""
    import xconv
    from xconv.testing import TinyModel, random_images
    from xconv_plugins.catsdogs import build_catsdogs

    keras_model = build_catsdogs(2, (32, 32))
    keras_model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    model = TinyModel(keras_model, ["cat", "dog"])
    images = random_images(4, (32, 32), seed=2)
    before = xconv.explain(model, images, "gradcam", target="dog")
    keras_model.fit(images.astype("float32"), np.array([0, 1, 0, 1]), epochs=2, verbose=0)
    after = xconv.explain(model, images, "gradcam", target="dog")
    fresh = keras.models.clone_model(keras_model)
    fresh.set_weights(keras_model.get_weights())
    expected = xconv.explain(TinyModel(fresh, ["cat", "dog"]), images, "gradcam", target="dog")
    assert not np.allclose(before.arrays["probabilities"], expected.arrays["probabilities"], atol=1e-3)
    np.testing.assert_allclose(after.arrays["probabilities"], expected.arrays["probabilities"], atol=1e-5)
    np.testing.assert_allclose(after.heatmaps, expected.heatmaps, atol=1e-4)
    np.testing.assert_allclose(model.predict(images), fresh(images.astype("float32"), training=False), atol=1e-5)
