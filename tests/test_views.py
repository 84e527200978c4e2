"""Activations and filter patterns: equal to direct Keras computations, ordered, batched, nested-model safe."""

import keras
import numpy as np
import pytest
from PIL import Image

import xconv
from xconv.testing import TinyModel, random_images, tiny_keras_convnet
from xconv_plugins.filters import parse_filters
from xconv_plugins.grid import channel_images, layer_grid, tile


@pytest.fixture(scope="module")
def tiny():
    return TinyModel(tiny_keras_convnet((32, 32), classes=3, seed=2), ["x", "y", "z"])


def test_activations_equal_direct_keras_for_every_layer_in_order(tiny):
    images = random_images(3, (32, 32), seed=4)
    explained = xconv.explain(tiny, images, method="activations")
    assert list(explained.activations) == ["conv1", "pool1", "conv2", "pool2", "conv3"]
    keras_model = tiny.keras_model
    for name, maps in explained.activations.items():
        direct = keras.Model(keras_model.inputs, keras_model.get_layer(name).output)(images.astype(np.float32))
        assert maps.dtype == np.float32 and maps.shape == tuple(direct.shape)
        np.testing.assert_allclose(maps, np.asarray(direct), atol=1e-5)


def test_named_layers_come_back_in_network_order(tiny):
    explained = xconv.explain(tiny, random_images(1, (32, 32)), method="activations", layers=["conv3", "pool1"])
    assert list(explained.activations) == ["pool1", "conv3"]
    assert explained.activations["pool1"].shape == (1, 16, 16, 8)


def nested_sequential():
    base = tiny_keras_convnet((32, 32), classes=3, seed=5)
    backbone = keras.Model(base.inputs, base.get_layer("conv3").output, name="backbone")
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1.0, name="pre"), backbone,
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])
    return TinyModel(model, ["cat", "dog"]), backbone


def test_activations_reach_into_nested_models():
    model, backbone = nested_sequential()
    images = random_images(2, (32, 32), seed=6)
    explained = xconv.explain(model, images, method="activations", layers=["backbone/conv2", "pool1"])
    assert list(explained.activations) == ["backbone/pool1", "backbone/conv2"]
    direct = keras.Model(backbone.inputs, backbone.get_layer("conv2").output)(images.astype(np.float32))
    np.testing.assert_allclose(explained.activations["backbone/conv2"], np.asarray(direct), atol=1e-5)


def test_grid_size_follows_channel_count_and_map_size():
    maps = np.random.default_rng(0).normal(size=(8, 8, 40)).astype(np.float32)
    picture = layer_grid(maps, "layer")
    tile_side = 32  # 8x8 maps are enlarged 4x to stay readable
    rows, columns, margin = 3, 16, 2
    label_width = 8 * len(str(rows * columns)) + 8
    assert picture.shape == (40 + rows * (tile_side + margin) - margin, label_width + columns * (tile_side + margin) - margin, 3)


def test_dead_channel_is_blank_not_nan():
    maps = np.zeros((4, 4, 2), np.float32)
    maps[..., 1] = np.arange(16).reshape(4, 4)
    gray, dead = channel_images(maps)
    assert dead.tolist() == [True, False]
    assert (gray[0] == 255).all() and gray[1].min() < gray[1].max()


def test_constant_channel_is_blank_whatever_its_value_and_1x1_maps_compare_channels():
    """float32 leaves a constant 1.7's std at 1e-7: an absolute threshold painted it as a solid tile."""
    maps = np.stack([np.full((7, 7), value, np.float32) for value in (1.7, 123.4, 0.0)], axis=-1)
    gray, dead = channel_images(maps)
    assert dead.tolist() == [True, True, True] and (gray == 255).all()
    gray, dead = channel_images(np.array([[[0.0, 2.0, 4.0]]], np.float32))  # (1, 1, 3): one value per channel
    assert dead.tolist() == [False, False, False]
    assert gray[0, 0, 0] < gray[1, 0, 0] < gray[2, 0, 0]


def test_tiling_places_each_channel_in_rows():
    tiles = np.arange(6, dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(2, 2)
    grid = tile(tiles, columns=4, margin=1, fill=99)
    assert grid.shape == (2 * 3 - 1, 4 * 3 - 1)
    assert grid[0, 0] == 0 and grid[0, 3] == 1 and grid[3, 0] == 4 and grid[3, 3] == 5 and grid[3, 6] == 99 and grid[2, 0] == 99


def test_grid_renderer_writes_one_png_per_image_and_layer(tiny, tmp_path):
    explained = xconv.explain(tiny, random_images(2, (32, 32)), method="activations", layers=["conv1", "conv3"])
    written = xconv.render(explained, "grid", tmp_path)
    assert len(written) == 4 and len({p.name for p in written}) == 4
    single = xconv.render(explained, "grid", tmp_path / "one", channel=3)
    assert all("channel3" in p.name for p in single)
    with pytest.raises(xconv.XconvError, match="out of range"):
        xconv.render(explained, "grid", tmp_path / "bad", channel=99)


def test_parse_filters_specs():
    assert parse_filters("0-3,7", 10) == [0, 1, 2, 3, 7]
    assert parse_filters("all", 3) == [0, 1, 2]
    assert parse_filters(None, 40) == list(range(16))
    assert parse_filters(range(2), 5) == [0, 1]
    with pytest.raises(xconv.XconvError, match="out of range"):
        parse_filters("5-12", 8)
    with pytest.raises(xconv.XconvError, match="0-15"):
        parse_filters("a-b", 8)


def responsive_filters(model, layer, count):
    """Filters that some random photo-like input switches on (a random net has a few that nothing does)."""
    probe = keras.Model(model.keras_model.inputs, model.keras_model.get_layer(layer).output)
    maps = np.asarray(probe(random_images(16, (32, 32), seed=1).astype(np.float32)))
    return maps[:, 2:-2, 2:-2, :count].max(axis=(0, 1, 2)) > 0  # the score ignores a 2-pixel border


@pytest.mark.parametrize("parameterization", ["fourier", "pixels"])
def test_ascent_raises_each_filters_activation_above_gray(tiny, parameterization):
    explained = xconv.explain(tiny, None, method="filters", layer="conv2", filters="0-7", steps=25,
                              parameterization=parameterization)
    assert explained.patterns.shape == (8, 32, 32, 3) and explained.patterns.dtype == np.uint8
    gray = np.array(explained.metadata["gray_scores"])
    responsive = responsive_filters(tiny, "conv2", 8)
    assert responsive.sum() >= 6
    assert (explained.scores[responsive] > gray[responsive]).all(), (explained.scores, gray)
    assert (explained.scores >= gray).all()
    if parameterization == "pixels":  # a restart's strong noise past 0-255 left pixels with no gradient for good
        from xconv.registry import get_registry

        ascent = get_registry().get("explainer", "filters")(tiny, layer="conv2", parameterization="pixels")
        restart = ascent.starting_values([0, 1], ascent.noise * 300, attempt=2)
        assert restart.min() == 0 and restart.max() == 255


def test_more_steps_reach_higher_activation(tiny):
    few = xconv.explain(tiny, None, method="filters", layer="conv2", filters="0-7", steps=3)
    many = xconv.explain(tiny, None, method="filters", layer="conv2", filters="0-7", steps=40)
    climbing = few.scores > 0  # a filter the ascent has switched on keeps rising with more steps
    assert climbing.sum() >= 2
    assert (many.scores[climbing] > few.scores[climbing]).all() and (many.scores >= few.scores).all()


def test_batched_and_one_at_a_time_ascent_agree(tiny):
    together = xconv.explain(tiny, None, method="filters", layer="conv2", filters=[1, 4, 6], steps=15, seed=3)
    for position, index in enumerate([1, 4, 6]):
        alone = xconv.explain(tiny, None, method="filters", layer="conv2", filters=[index], steps=15, seed=3)
        a = together.patterns[position].astype(float).ravel() - 128
        b = alone.patterns[0].astype(float).ravel() - 128
        assert np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.95


def test_filters_work_in_nested_models_and_render_as_grid(tmp_path):
    model, _ = nested_sequential()
    explained = xconv.explain(model, None, method="filters", layer="backbone/conv2", filters="0-3", steps=10, size=48)
    assert explained.patterns.shape == (4, 48, 48, 3) and explained.layer == "backbone/conv2"
    [path] = xconv.render(explained, "grid", tmp_path)
    picture = np.asarray(Image.open(path))
    assert picture.shape[0] > 48 and picture.shape[1] > 4 * 48


def test_overlay_grid_draws_the_layer_cells(tiny, tmp_path):
    image = random_images(1, (32, 32), seed=8)
    explained = xconv.explain(tiny, image)
    [plain] = xconv.render(explained, "overlay", tmp_path / "plain")
    [gridded] = xconv.render(explained, "overlay", tmp_path / "grid", grid=True)
    a, b = np.asarray(Image.open(plain)), np.asarray(Image.open(gridded))
    changed_rows = np.flatnonzero((a != b).any(axis=(1, 2)))
    assert changed_rows.size > 0
    # The 8x8 layer splits a 32-pixel image every 4 pixels: the interior lines are at rows 4, 8, ..., 28.
    horizontal = [row for row in range(32) if (b[row] == 255).all()]
    assert horizontal == [4, 8, 12, 16, 20, 24, 28]


def test_overlay_grid_leaves_pixel_level_maps_alone(tiny, tmp_path):
    """A map with a value per input pixel has no cells: a grid would draw a white line on every row."""
    image = random_images(1, (32, 32), seed=8)
    explained = xconv.explain(tiny, image, "saliency")
    [plain] = xconv.render(explained, "overlay", tmp_path / "plain")
    with pytest.warns(xconv.XconvWarning, match="value per input pixel"):
        [gridded] = xconv.render(explained, "overlay", tmp_path / "grid", grid=True)
    np.testing.assert_array_equal(np.asarray(Image.open(gridded)), np.asarray(Image.open(plain)))


def gated_model():
    """Filter 0 is a ReLU that is off on gray and faint noise (no gradient there); filter 1 is on; filter 2
    is off on every input (its bias is below anything a pixel can add)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    gate = keras.layers.Conv2D(3, 1, activation="relu", name="gate")
    x = gate(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    red = np.array([1.0, 0.0, 0.0], np.float32)
    gate.set_weights([np.stack([red, red, red], axis=1)[None, None], np.array([-0.5, 0.1, -5.0], np.float32)])
    return TinyModel(keras.Model(inputs, outputs), ["a", "b"])


def test_filter_without_gradient_restarts_and_switches_on():
    model = gated_model()
    explained = xconv.explain(model, None, method="filters", layer="gate", filters=[0, 1], steps=10)
    assert explained.metadata["gray_scores"][0] == 0
    assert explained.scores[0] > 0.1 and explained.scores[1] > explained.metadata["gray_scores"][1]
    alone = xconv.explain(model, None, method="filters", layer="gate", filters=[0], steps=10)
    np.testing.assert_allclose(alone.scores[0], explained.scores[0], rtol=1e-3)  # the restart is per filter
    never = xconv.explain(model, None, method="filters", layer="gate", filters=[2], steps=10)
    pattern = never.patterns[0].astype(int)  # it showed the 300-times noise of its last restart
    assert never.scores[0] == 0 and pattern.min() >= 127 and pattern.max() <= 128
    # A ReLU's output is never below 0: sign=negative can only switch it off, and every tile came out faded.
    with pytest.warns(xconv.XconvWarning, match="sign=negative on gate: no pattern drives a filter below 0"):
        xconv.explain(model, None, method="filters", layer="gate", filters=[0, 1], steps=3, sign="negative")


def test_overlay_blends_rgb_colors_with_the_rounded_weighted_mean():
    # A gray photo under a map that is 1 on the left half and 0 on the right: jet colors the hot half red
    # and the cold half blue, in RGB order (cv2.applyColorMap returns BGR), blended 40 % over the photo.
    photo = np.full((4, 8, 3), 100, np.uint8)
    heatmap = np.array([[1.0, 0.0]], np.float32)
    blended = xconv.overlay_heatmap(photo, np.repeat(np.repeat(heatmap, 4, axis=0), 4, axis=1), "jet", 0.4)
    red, blue = np.array([128, 0, 0]), np.array([0, 0, 128])  # jet at 1 is dark red, at 0 dark blue
    np.testing.assert_array_equal(blended[:, 0], np.round(0.6 * 100 + 0.4 * red).astype(np.uint8)[None].repeat(4, 0))
    np.testing.assert_array_equal(blended[:, -1], np.round(0.6 * 100 + 0.4 * blue).astype(np.uint8)[None].repeat(4, 0))
    assert blended.dtype == np.uint8 and blended.shape == photo.shape


def test_overlay_levels_are_the_rounded_bilinear_map_at_the_photo_size():
    """The map is cleaned at its own size and quantized in one OpenCV pass: the same levels as clipping
    and rounding the resized map in numpy, including values outside [0, 1] and NaN."""
    import cv2

    rng = np.random.default_rng(5)
    heatmap = rng.uniform(-0.2, 1.2, (7, 9)).astype(np.float32)
    heatmap[3, 4] = np.nan
    photo = rng.integers(0, 256, (123, 171, 3), dtype=np.uint8)
    clean = np.clip(np.nan_to_num(heatmap), 0, 1)
    levels = np.uint8(np.round(cv2.resize(clean, (171, 123), interpolation=cv2.INTER_LINEAR) * 255))
    expected = cv2.addWeighted(photo, 0.6, xconv.apply_colormap(levels, "jet"), 0.4, 0.0)  # blend: test above
    np.testing.assert_array_equal(xconv.overlay_heatmap(photo, heatmap, "jet", 0.4), expected)


def test_pattern_rows_are_labelled_with_their_own_first_filter(tiny, tmp_path, monkeypatch):
    """Filters 0,5,10,...: the second row of 8 starts at filter 40, not at "8"."""
    import xconv_plugins.grid as grid

    labels = []
    real = grid.add_labels
    monkeypatch.setattr(grid, "add_labels", lambda *args, **kwargs: labels.append(kwargs["row_labels"]) or
                        real(*args, **kwargs))
    explained = xconv.explain(tiny, None, method="filters", layer="conv2", filters="0,1,2,3,4,5,6,7,9,11",
                              steps=2, size=32)
    xconv.render(explained, "grid", tmp_path, columns=4)
    assert labels == [["0", "4", "9"]]


def test_blend_weights_outside_0_1_are_refused(tiny):
    explained = xconv.explain(tiny, random_images(1, (32, 32)))
    for renderer in ("overlay", "compare"):
        with pytest.raises(xconv.XconvError, match="alpha .* must be at most 1.0"):
            xconv.render(explained if renderer == "overlay" else xconv.compare(tiny, random_images(1, (32, 32)),
                                                                                ["gradcam", "layercam"]),
                         renderer, "unused", alpha=1.5)


@pytest.mark.parametrize("mode", ["none", "unit", "tf", "torch", "caffe"])
def test_preprocessing_is_read_as_a_channel_order_and_an_affine_map(mode):
    """Gradient ascent optimizes pixels: every keras.applications mode, caffe's BGR swap included, must be
    reproduced exactly by the order, scale and offset it is probed as."""
    from xconv.preprocessing import preprocess, preprocess_affine

    order, scale, offset = preprocess_affine(lambda x: preprocess(x, mode))
    pixels = random_images(2, (5, 7), seed=3)
    np.testing.assert_allclose(pixels[..., order].astype(np.float32) * scale + offset, preprocess(pixels, mode),
                               rtol=1e-5, atol=1e-4)
    assert (list(order) == [2, 1, 0]) == (mode == "caffe")


def test_filter_patterns_on_a_caffe_model_raise_their_filters(tiny):
    """A VGG-style model fed BGR minus the mean: the ascent must optimize RGB pixels through that swap."""
    from xconv.modelfile import KerasFileModel

    caffe = KerasFileModel(tiny.keras_model, tiny.class_names, preprocess_mode="caffe")
    explained = xconv.explain(caffe, None, method="filters", layer="conv2", filters="0-3", steps=20, size=32,
                              robust=False)
    start = xconv.explain(caffe, None, method="filters", layer="conv2", filters="0-3", steps=1, size=32,
                          robust=False)
    assert (explained.scores > start.scores).all()


@pytest.mark.parametrize("text", ["кошка 0.93", "chèvre", "γάτα"])
def test_labels_draw_letters_beyond_ascii(text):
    """OpenCV's Hershey fonts drew each byte of a non-ASCII class name as '?': 'кошка' came out as ten of them."""
    from xconv.callbacks import captioned
    from xconv_plugins.compare import labelled
    from xconv_plugins.grid import add_labels

    as_question_marks = "".join(c if c.isascii() else "?" * len(c.encode()) for c in text)
    tile = np.zeros((40, 200, 3), np.uint8)
    for draw in (labelled, captioned, lambda picture, label: add_labels(picture, label, (40, 200), 1, 2, 1)):
        drawn, hershey_like = draw(tile, text), draw(tile, as_question_marks)
        assert (drawn < 128).any() and (drawn > 128).any()  # ink on a white band
        assert drawn.shape == hershey_like.shape and not np.array_equal(drawn, hershey_like)


def test_filter_patterns_of_many_layers_do_not_warn_of_retracing(tiny):
    """Each layer and option set gets its own compiled functions by design; TensorFlow's notice that one
    closure keeps retracing would only alarm a Python user. The user's own functions still get it."""
    import logging

    import tensorflow as tf

    records, logger = [], logging.getLogger("tensorflow")
    handler = logging.Handler()
    handler.emit = records.append
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)  # a CLI test in this process may have raised it to ERROR
    try:
        for layer in ("conv1", "conv2", "conv3"):
            for robust in (False, True):
                xconv.explain(tiny, None, "filters", layer=layer, filters="0", steps=1, robust=robust)
        assert not [record for record in records if "retracing" in record.getMessage()]
        for size in range(1, 8):  # a new function per call from one closure, as xconv builds them
            tf.function(lambda x: x * 2, autograph=False)(tf.zeros(size))
        assert [record for record in records if "retracing" in record.getMessage()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
