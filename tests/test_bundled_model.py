"""The bundled catsdogs model: loads offline, classifies real photos, and Grad-CAM finds the asked-for animal."""

import numpy as np
import pytest

import xconv
from conftest import shared_path


@pytest.fixture(scope="module")
def catsdogs():
    return xconv.load_model("catsdogs")


def test_bundled_model_loads_offline_and_is_small(catsdogs):
    assert catsdogs.class_names == ["cat", "dog"]
    assert catsdogs.input_size == (160, 160)  # trained at 128, evaluated at 160 (FixRes)
    assert catsdogs.keras_model.count_params() <= 2_000_000
    assert catsdogs.default_layer == "block4_out"


def test_bundled_model_classifies_real_photos(catsdogs):
    folder = shared_path("cats-vs-dogs", "validation")
    photos = sorted((folder / "cats").iterdir())[:25] + sorted((folder / "dogs").iterdir())[:25]
    truth = np.array([0] * 25 + [1] * 25)
    predicted = np.array([catsdogs.class_index(top[0][0]) for top in xconv.predict(catsdogs, photos)])
    assert (predicted == truth).mean() >= 0.8


def heat_share(heatmap: np.ndarray, axis: int) -> float:
    """Fraction of the heatmap's mass in the first half along ``axis`` (0: top half, 1: left half)."""
    half = heatmap.shape[axis] // 2
    first = heatmap.take(range(half), axis=axis).sum()
    return float(first / max(heatmap.sum(), 1e-9))


@pytest.mark.parametrize("photo,axis,dog_first", [
    ("dog-and-cat.png", 0, True),      # the bulldog sits above the tabby
    ("puppy-and-kitten.jpg", 1, True),  # the puppy is left of the kitten
])
def test_gradcam_points_at_the_requested_animal(catsdogs, photo, axis, dog_first):
    path = shared_path("samples", photo)
    dog = xconv.explain(catsdogs, [path], target="dog").heatmaps[0]
    cat = xconv.explain(catsdogs, [path], target="cat").heatmaps[0]
    dog_share, cat_share = heat_share(dog, axis), heat_share(cat, axis)
    assert dog_share > cat_share
    assert (dog_share > 0.5) == dog_first and (cat_share < 0.5) == dog_first


def test_predict_averages_each_photo_with_its_mirror(catsdogs):
    from xconv.testing import random_images

    batch = random_images(3, catsdogs.input_size, seed=5)
    single = lambda x: np.asarray(catsdogs.keras_model(catsdogs.preprocess(x), training=False))  # noqa: E731
    expected = (single(batch) + single(batch[:, :, ::-1])) / 2
    np.testing.assert_allclose(catsdogs.predict(batch), expected, atol=1e-6)
