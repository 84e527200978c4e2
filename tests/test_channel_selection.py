"""Feature models that compute only the branches of a concatenation holding the channels asked for."""

import keras
import numpy as np
import pytest
from keras import layers

import xconv
from xconv.layers import iter_layers, kept_branches
from xconv.testing import TinyModel


def inception_like(nested: bool):
    """A block concatenating three branches (4 + 3 + 5 channels), then a head; the block nested or not."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((16, 16, 3))
    block_input = keras.Input((16, 16, 3)) if nested else inputs
    branches = [layers.Conv2D(4, 1, activation="relu", name="left")(block_input),
                layers.BatchNormalization(name="middle_bn")(layers.Conv2D(3, 3, padding="same", name="middle")(block_input)),
                layers.Conv2D(5, 3, padding="same", activation="relu", name="right")(block_input)]
    mixed = layers.Concatenate(name="mixed")(branches)
    features = keras.Model(block_input, mixed, name="block")(inputs) if nested else mixed
    return keras.Model(inputs, layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling2D()(features)))


@pytest.fixture(scope="module")
def model():
    return TinyModel(inception_like(nested=False), ["a", "b"])


@pytest.fixture(scope="module")
def nested():
    return TinyModel(inception_like(nested=True), ["a", "b"])


def test_kept_branches_and_positions():
    assert kept_branches([4, 3, 5], [0, 3]) == ([0], [0, 3])
    assert kept_branches([4, 3, 5], [8, 5]) == ([1, 2], [4, 1])
    assert kept_branches([4, 3, 5], [11]) == ([2], [4])


CHANNELS = [([7, 9, 11], {"right"}), ([6, 0], {"left", "middle"}), ([1, 5, 10], {"left", "middle", "right"})]


def images():
    return np.random.default_rng(0).uniform(0, 1, (2, 16, 16, 3)).astype("float32")


@pytest.mark.parametrize("channels, kept", CHANNELS)
def test_only_the_branches_holding_the_channels_are_computed(model, channels, kept):
    whole = np.asarray(model.feature_model(["mixed"], head=False)(images()))
    for fold in (False, True):
        network, positions = model.channel_feature_model("mixed", channels, fold_batch_norms=fold)
        convs = {info.path.split("_")[0] for info in iter_layers(network) if info.type == "Conv2D"}
        assert convs == kept
        np.testing.assert_allclose(np.asarray(network(images()))[..., positions], whole[..., channels], rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.parametrize("channels, kept", CHANNELS)
def test_a_block_inside_a_nested_model_gives_the_same_channels(nested, channels, kept):
    whole = np.asarray(nested.feature_model(["block/mixed"], head=False)(images()))
    network, positions = nested.channel_feature_model("block/mixed", channels, fold_batch_norms=True)
    np.testing.assert_allclose(np.asarray(network(images()))[..., positions], whole[..., channels], rtol=1e-5,
                               atol=1e-5)


def test_filter_patterns_score_the_filters_asked_for_on_a_pruned_layer(model):
    explainer = xconv.registry.get_registry().get("explainer", "filters")(model, layer="mixed", filters="8-10",
                                                                          steps=3)
    assert explainer.feature_model.outputs[0].shape[-1] == 5  # the right branch alone
    explanation = explainer.explain()
    whole = model.feature_model(["mixed"], head=False)
    patterns = explanation.arrays["patterns"].astype("float32")
    means = np.asarray(whole(model.preprocess(patterns))).mean(axis=(1, 2))
    np.testing.assert_allclose(explanation.arrays["scores"], means[np.arange(3), [8, 9, 10]], rtol=1e-4, atol=1e-6)
    gray = np.asarray(whole(model.preprocess(np.full((1, 16, 16, 3), 128.0, "float32")))).mean(axis=(1, 2))[0]
    np.testing.assert_allclose(explanation.metadata["gray_scores"], gray[[8, 9, 10]], rtol=1e-4, atol=1e-6)
