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
    # Each class map puts at least 60 % of its mass in its own animal's half (the bundled model: 73-100 %).
    dog_in_dog_half = dog_share if dog_first else 1 - dog_share
    cat_in_cat_half = 1 - cat_share if dog_first else cat_share
    assert dog_in_dog_half >= 0.6 and cat_in_cat_half >= 0.6, (dog_share, cat_share)


def test_predict_averages_each_photo_with_its_mirror(catsdogs):
    from xconv.testing import random_images

    batch = random_images(3, catsdogs.input_size, seed=5)
    single = lambda x: np.asarray(catsdogs.keras_model(catsdogs.preprocess(x), training=False))  # noqa: E731
    expected = (single(batch) + single(batch[:, :, ::-1])) / 2
    # predict runs a compiled pass of the batch-norm-folded network: the Keras model's probabilities.
    np.testing.assert_allclose(catsdogs.predict(batch), expected, atol=1e-5)
    assert ("predict", True) in catsdogs.__dict__["_cache"]


def test_predict_explain_and_evaluate_report_one_confidence(catsdogs, tmp_path):
    """The same photo gets the same probability from every command (flip averaging included everywhere)."""
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from xconv.cli import build_app
    from xconv.demo import chelsea

    photo = tmp_path / "chelsea.jpg"
    Image.fromarray(chelsea()).save(photo)
    app, runner = build_app(), CliRunner()

    def run(*args):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return result.output

    [label, score] = [(p["label"], p["score"]) for p in json.loads(run("predict", photo, "--json"))["predictions"]][0]
    for method in ("gradcam", "activations"):
        lines = run("explain", photo, "--method", method, "--json", "--out", tmp_path / method).splitlines()
        record = [json.loads(line) for line in lines if line.startswith("{")][-1]
        assert record["prediction"] == label and abs(record["probability"] - score) < 1e-5, (method, record, score)
    text = run("explain", photo, "--out", tmp_path / "text", "--verbose")
    assert f"predicted {label} {score:.3f}" in text
    assert f": {label} {score:.3f}" in run("predict", photo)
    unflipped = json.loads(run("predict", photo, "--json", "-O", "flip=false"))["predictions"][0]["score"]
    assert abs(unflipped - score) > 1e-4  # the option reaches the model
    # Filed under the other class, evaluate lists the photo as a confident error, with the same confidence.
    for folder in ("cats", "dogs"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    wrong_folder = "cats" if label == "dog" else "dogs"
    (tmp_path / "data" / wrong_folder / photo.name).write_bytes(photo.read_bytes())
    report = json.loads(run("evaluate", "--data", tmp_path / "data", "--json", "--out", tmp_path / "eval"))
    [error] = report["most_confident_errors"]
    assert error["predicted"] == label and abs(error["confidence"] - score) < 1e-5
