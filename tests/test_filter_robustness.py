"""Filter patterns that show features: transforms, robustness, objectives, diversity and how they are drawn."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import xconv
from xconv.testing import TinyModel, tiny_keras_convnet
from xconv_plugins.grid import mark_robustness
from xconv_plugins.pattern_transforms import affine_matrices, warp


@pytest.fixture(scope="module")
def tiny():
    return TinyModel(tiny_keras_convnet((32, 32), classes=3, seed=2), ["x", "y", "z"])


@pytest.fixture(scope="module")
def catsdogs():
    return xconv.load_model("catsdogs")


def warped(image, shift=(0.0, 0.0), scale=1.0, degrees=0.0):
    matrix = affine_matrices(tf.constant([shift], tf.float32), tf.constant([scale]), tf.constant([np.radians(degrees)], tf.float32),
                             image.shape[0])
    return warp(tf.constant(image[None], tf.float32), matrix).numpy()[0]


def test_transforms_shift_rotate_and_reflect_exactly():
    image = np.zeros((9, 9, 1), np.float32)
    image[4, 2] = 1.0  # two pixels left of the centre
    np.testing.assert_allclose(warped(image), image, atol=1e-6)
    centred = np.zeros((9, 9, 1), np.float32)
    centred[4, 4] = 1.0
    moved = warped(centred, shift=(3.0, 1.0))  # content moves right 3, down 1
    assert moved[5, 7, 0] == pytest.approx(1.0) and moved.sum() == pytest.approx(1.0)
    turned = warped(image, degrees=90.0)  # about the centre: (row 4, col 2) -> (row 2, col 4) or (6, 4)
    assert np.unravel_index(turned[..., 0].argmax(), (9, 9)) in {(2, 4), (6, 4)}
    assert turned.max() == pytest.approx(1.0, abs=1e-5)
    ramp = np.tile(np.arange(1, 10, dtype=np.float32)[None, :, None], (9, 1, 1))
    np.testing.assert_allclose(warped(ramp, shift=(4.0, 0.0))[0, :5, 0], [4, 3, 2, 1, 1], atol=1e-5)  # reflected


def test_robust_defaults_keep_activation_when_moved_and_plain_ascent_does_not(catsdogs):
    robust = xconv.explain(catsdogs, None, method="filters", layer="block3_sepconv2", filters="0-3", steps=20)
    plain = xconv.explain(catsdogs, None, method="filters", layer="block3_sepconv2", filters="0-3", steps=20, robust=False)
    assert robust.arrays["robustness"].shape == (4,)
    assert np.nanmedian(robust.arrays["robustness"]) >= 0.75
    assert np.nanmedian(plain.arrays["robustness"]) < 0.5
    assert robust.metadata["transforms"]["shift"] > 0 and plain.metadata["transforms"]["shift"] == 0
    assert robust.metadata["robustness"] == pytest.approx(robust.arrays["robustness"].tolist(), abs=1e-4)


def probe(model, layer):
    return keras.Model(model.keras_model.inputs, model.keras_model.get_layer(layer).output)


def test_neuron_objective_scores_the_centre_activation(tiny):
    explained = xconv.explain(tiny, None, method="filters", layer="conv2", filters="0-3", steps=15, objective="neuron")
    maps = np.asarray(probe(tiny, "conv2")(explained.patterns.astype(np.float32)))
    height, width = maps.shape[1:3]  # the middle cells: one on an odd side, two on an even one
    centre = maps[:, (height - 1) // 2:height // 2 + 1, (width - 1) // 2:width // 2 + 1, :4].mean(axis=(1, 2))
    np.testing.assert_allclose(explained.scores, np.diagonal(centre), rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore:sign=negative on conv2")  # a ReLU layer: down to 0 is as low as it goes
def test_negative_sign_drives_the_filter_below_gray(tiny):
    explained = xconv.explain(tiny, None, method="filters", layer="conv2", filters="0-7", steps=20, sign="negative",
                              robust=False)
    maps = np.asarray(probe(tiny, "conv2")(explained.patterns.astype(np.float32)))[:, 2:-2, 2:-2, :8]
    means = np.diagonal(maps.mean(axis=(1, 2)))
    np.testing.assert_allclose(explained.scores, -means, rtol=1e-4, atol=1e-5)  # the score is the objective
    gray = np.asarray(explained.metadata["gray_scores"])  # objective on gray, also negated
    assert (explained.scores >= gray - 1e-6).all() and (explained.scores > gray + 1e-3).sum() >= 4


def gram_similarity(model, layer, patterns, copies):
    maps = np.asarray(probe(model, layer)(model.preprocess(patterns)))
    flat = maps.reshape(len(maps), -1, maps.shape[-1])
    flat = flat - flat.mean(axis=1, keepdims=True)
    grams = np.einsum("nxc,nxd->ncd", flat, flat).reshape(-1, copies, maps.shape[-1] ** 2)
    grams /= np.linalg.norm(grams, axis=-1, keepdims=True)
    similarity = np.einsum("fnd,fmd->fnm", grams, grams)
    return (similarity.sum(axis=(1, 2)) - copies) / (copies * (copies - 1))


def test_diversity_term_makes_the_copies_of_a_filter_differ(catsdogs):
    options = dict(layer="block3_sepconv2", filters=[1, 2], steps=20, diversity=3)
    diverse = xconv.explain(catsdogs, None, method="filters", **options)
    alike = xconv.explain(catsdogs, None, method="filters", **options, diversity_weight=0.0)
    assert diverse.patterns.shape == (6, 160, 160, 3) and diverse.metadata["filters"] == [1, 1, 1, 2, 2, 2]
    assert diverse.arrays["robustness"].shape == (6,)
    apart = gram_similarity(catsdogs, "block3_sepconv2", diverse.patterns, 3)
    together = gram_similarity(catsdogs, "block3_sepconv2", alike.patterns, 3)
    assert (apart < together - 0.1).all(), (apart, together)


def test_grid_fades_fragile_patterns_and_labels_rows_by_filter(tmp_path):
    patterns = np.full((4, 64, 64, 3), 40, np.uint8)
    marked = mark_robustness(patterns, np.array([0.9, 0.2, np.nan, 0.6], np.float32))
    body = marked[:, :40]  # above the corner label
    assert (body[0] == 40).all() and (body[3] == 40).all()
    assert (body[1] > 150).all() and (body[2] > 150).all()
    explanation = xconv.Explanation(method="filters", kind="patterns", model_name="m", layer="conv",
                                    arrays={"patterns": patterns, "robustness": np.array([0.9, 0.2, 0.8, 0.7])},
                                    metadata={"filters": [3, 3, 5, 5], "diversity": 2})
    [path] = xconv.render(explanation, "grid", tmp_path)
    picture = np.asarray(Image.open(path))
    assert picture.shape[1] >= 2 * 64 and picture.shape[0] > 2 * 64  # two rows (filters 3, 5), two copies each
    # Other filters of the same layer go to another file (they overwrote the first before).
    others = xconv.Explanation(method="filters", kind="patterns", model_name="m", layer="conv",
                               arrays={"patterns": patterns[:2]}, metadata={"filters": [6, 7]})
    [other] = xconv.render(others, "grid", tmp_path)
    assert (path.name, other.name) == ("m_conv_filters_3,5.png", "m_conv_filters_6-7.png") and path.exists()
    many = xconv.Explanation(method="filters", kind="patterns", model_name="m", layer="conv",
                             arrays={"patterns": np.repeat(patterns, 10, axis=0)},
                             metadata={"filters": list(range(0, 80, 2))})
    [long_list] = xconv.render(many, "grid", tmp_path)
    assert long_list.name.startswith("m_conv_filters_40-filters-") and len(long_list.name) < 60


def test_cli_reports_robustness_in_json(tmp_path):
    import json

    from typer.testing import CliRunner

    from xconv.cli import build_app

    result = CliRunner().invoke(build_app(), ["explain", "--method", "filters", "--layer", "block1_sepconv1",
                                              "--filters", "0-1", "-O", "steps=3", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["filters"] == [0, 1] and len(report["robustness"]) == 2
    assert all(value is None or isinstance(value, float) for value in report["robustness"])
