"""Helpers for testing xconv and its plugins: tiny random convnets that build in milliseconds."""

from __future__ import annotations

import numpy as np

from typing import TYPE_CHECKING

from xconv.interfaces import Model
from xconv.layers import output_classes

if TYPE_CHECKING:
    from xconv.interfaces import Explanation


class TinyModel(Model):
    name = "tiny"
    description = "a tiny random convnet for tests"


def tiny_keras_convnet(input_size=(32, 32), classes: int = 3, seed: int = 0, name: str = "tiny"):
    """Conv-pool-conv-pool, global pooling, dense softmax; random but deterministic weights."""
    from xconv.quiet import quiet_tensorflow

    quiet_tensorflow()
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((*input_size, 3), name="image")
    x = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def tiny_convnet(input_size=(32, 32), classes: int = 3, seed: int = 0) -> Model:
    """A ready :class:`xconv.Model` around :func:`tiny_keras_convnet` with classes 'class_0', ..."""
    return TinyModel(tiny_keras_convnet(input_size, classes, seed), [f"class_{i}" for i in range(classes)])


def random_images(count: int, size=(32, 32), seed: int = 0) -> np.ndarray:
    """uint8 (count, H, W, 3) smooth random images (blurred noise, so conv features vary spatially)."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (count, *size, 3)).astype(np.float32)
    smooth = np.stack([cv2.GaussianBlur(image, (0, 0), 1.5) for image in noise])
    span = smooth.max() - smooth.min()
    return np.uint8((smooth - smooth.min()) / (span if span else 1.0) * 255)


def check_explainer(explainer_cls, model: Model | None = None, images: np.ndarray | None = None,
                    out_dir=None, **options):
    """Contract check for plugin authors: run ``explainer_cls`` on a tiny model and check what it returns.

    Checks the class attributes and option declaration (an unknown option must be refused), that the
    Explanation carries the method and kind, a layer the CLI can print (None, a path or a list of paths),
    JSON-serializable metadata, arrays free of NaN with one entry per image, predictions equal to
    ``xconv.predict``'s (on a model with test-time flipping, so both paths must use ``model.probabilities``),
    requested targets honoured, a one-line repr, and that every built-in renderer accepting its kind passes
    :func:`check_renderer` on it. Returns the Explanation for further, method-specific assertions.
    """
    from xconv.api import predict
    from xconv.interfaces import Explainer, Explanation

    assert isinstance(explainer_cls, type) and issubclass(explainer_cls, Explainer), \
        f"{explainer_cls} is not an xconv.Explainer subclass"
    _check_declaration(explainer_cls, ("name", "description", "kind"))
    if model is None:
        model = tiny_convnet()
        model.flip_average = True
    images = (images if images is not None else random_images(3, model.input_size, seed=1)) \
        if explainer_cls.needs_images else None
    _check_refuses_unknown_option(lambda: explainer_cls(model, no_such_option=1), explainer_cls)
    explanation = explainer_cls(model, **options).explain(images, None)
    assert isinstance(explanation, Explanation), f"explain() returned {type(explanation).__name__}"
    assert explanation.method == explainer_cls.name and explanation.kind == explainer_cls.kind
    layer = explanation.layer
    assert layer is None or isinstance(layer, str) or (isinstance(layer, list) and all(isinstance(x, str) for x in layer)), \
        f"explanation.layer must be None, a layer path or a list of them, got {layer!r}"
    _check_json(explanation.metadata, "metadata")
    _check_json([explanation.predictions, explanation.target_names, explanation.targets], "predictions and targets")
    assert "\n" not in repr(explanation) and len(repr(explanation)) < 300, "repr(Explanation) must be one short line"
    _check_arrays(explanation, images)
    if images is not None and explanation.predictions is not None:
        expected = predict(model, images)
        for (label, score), [(want_label, want_score)] in zip(explanation.predictions, expected):
            assert label == want_label and abs(score - want_score) < 1e-4, \
                f"explanation says {label} {score:.5f}, xconv.predict says {want_label} {want_score:.5f}: report " \
                f"model.probabilities(...) so both give one confidence"
    if explanation.kind == "heatmap":
        heatmaps = explanation.heatmaps
        assert heatmaps.ndim == 3 and heatmaps.min() >= 0 and heatmaps.max() <= 1, "heatmaps must be in [0, 1]"
        assert explanation.targets is not None and len(explanation.targets) == len(images)
        wanted = [index % len(model.class_names) for index in range(len(images))]
        again = explainer_cls(model, **options).explain(images, wanted)
        assert list(again.targets) == wanted, f"asked for targets {wanted}, the explanation has {again.targets}"
        assert again.target_names == [model.class_names[t] for t in wanted]
    _render_with_every_renderer(explanation, out_dir)
    return explanation


def check_renderer(renderer_cls, explanation=None, out_dir=None, **options):
    """Contract check for a renderer: attributes, option declaration, and that it writes files it reports as
    :class:`xconv.Output` records naming the input each file shows. Without ``explanation``, one of the first
    accepted built-in kind (heatmap, activations or patterns) is made up. Returns the outputs."""
    import tempfile
    from pathlib import Path

    from xconv.interfaces import Output, Renderer

    assert isinstance(renderer_cls, type) and issubclass(renderer_cls, Renderer), \
        f"{renderer_cls} is not an xconv.Renderer subclass"
    _check_declaration(renderer_cls, ("name", "description", "accepts"))
    _check_refuses_unknown_option(lambda: renderer_cls(no_such_option=1), renderer_cls)
    explanation = explanation if explanation is not None else sample_explanation(renderer_cls.accepts)
    assert renderer_cls.can_render(explanation), f"{renderer_cls.name} does not accept {explanation.kind}"
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(out_dir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        written = renderer_cls(**options).render(explanation, folder)
        assert written, f"renderer {renderer_cls.name} wrote nothing"
        for item in written:
            assert isinstance(item, Output), f"render() must return xconv.Output records (explanation.output(path, i))" \
                                             f", got {type(item).__name__}"
            assert Path(item).is_file() and Path(item).parent == folder, f"{item} was not written into {folder}"
            assert item.index is None or 0 <= item.index < max(1, len(explanation)), f"{item}: index {item.index}"
        if explanation.images is not None and len(explanation):
            shown = {item.index for item in written}
            assert shown >= set(range(len(explanation))), f"no output names inputs {set(range(len(explanation))) - shown}"
    return written


def check_model(model_cls, weights=None, **options):
    """Contract check for a model plugin: ``load`` is a classmethod returning an :class:`xconv.Model` whose
    class names match the network's outputs, whose preprocessing and predictions have the right shapes, and
    whose default layer resolves to a spatial feature map. Returns the loaded model."""
    import inspect

    from xconv.layers import find_layer
    from xconv.options import already_resolved, resolve_options

    assert isinstance(model_cls, type) and issubclass(model_cls, Model), f"{model_cls} is not an xconv.Model subclass"
    _check_declaration(model_cls, ("name", "description"))
    assert inspect.ismethod(model_cls.load) and model_cls.load.__self__ is model_cls, "Model.load must be a classmethod"
    _check_refuses_unknown_option(lambda: resolve_options(model_cls, {"no_such_option": 1}), model_cls)
    resolved = resolve_options(model_cls, options)  # exactly as xconv.load_model calls it
    with already_resolved():
        model = model_cls.load(weights, **resolved) if resolved else model_cls.load(weights)
    assert isinstance(model, Model), f"load() returned {type(model).__name__}, not an xconv.Model"
    outputs = output_classes(model.keras_model)
    assert len(model.class_names) == outputs, f"{len(model.class_names)} class names for {outputs} outputs"
    size = tuple(side or 32 for side in model.input_size)
    batch = random_images(2, size, seed=2)
    inputs = np.asarray(model.preprocess(batch))
    assert inputs.shape == batch.shape and inputs.dtype == np.float32, "preprocess must keep the shape, give float32"
    probabilities = model.predict(batch)
    assert probabilities.shape == (2, outputs) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-3), \
        "predict must return class probabilities"
    assert len(find_layer(model.keras_model, model.default_layer).output_shape) == 4, "default layer is not spatial"
    return model


def check_metric(metric_cls, model: Model | None = None, **options):
    """Contract check for a metric: attributes and option declaration, one finite-or-NaN value per image for
    a made-up heatmap explanation, curves (if any) of one row per image matching ``curve_x``, and values
    that do not depend on which other images share the batch. Returns the MetricResult."""
    from xconv.interfaces import Metric, MetricResult

    assert isinstance(metric_cls, type) and issubclass(metric_cls, Metric), f"{metric_cls} is not an xconv.Metric subclass"
    _check_declaration(metric_cls, ("name", "description"))
    assert metric_cls.averaged_over in ("images", "classes"), \
        f"averaged_over must be 'images' or 'classes', not {metric_cls.averaged_over!r}"
    model = model or tiny_convnet()
    _check_refuses_unknown_option(lambda: metric_cls(model, no_such_option=1), metric_cls)
    annotated = metric_cls(model, **options).annotated_targets("a.png")
    assert all(isinstance(c, (int, np.integer)) and 0 <= c < len(model.class_names) for c in annotated), \
        f"annotated_targets must give class indices of the model, gave {annotated!r}"
    images = random_images(3, model.input_size, seed=6)
    explanation = sample_explanation(("heatmap",))
    # Named as a real method (Grad-CAM on the model's default layer): a metric that explains again, as
    # randomization does, then runs in full instead of skipping a method it cannot find.
    explanation.method, explanation.layer = "gradcam", model.default_layer
    explanation.images, explanation.targets = images, [0, 1, 0]
    explanation.originals, explanation.sources = list(images), ["a.png", "b.png", "c.png"]
    explanation.arrays["heatmaps"] = np.random.default_rng(1).random((3, 4, 4)).astype(np.float32)
    targets = np.array([0, 1, 0])
    result = metric_cls(model, **options).score(images, targets, explanation)
    assert isinstance(result, MetricResult), f"score() returned {type(result).__name__}, not xconv.MetricResult"
    values = np.asarray(result.values, np.float64)
    assert values.shape == (3,) and not np.isinf(values).any(), f"values must be one number per image: {values}"
    if result.curves is not None:
        assert np.shape(result.curves)[0] == 3 and np.shape(result.curves)[1] == len(result.curve_x)
    for name, extra in {**result.extra, **result.extra_curves}.items():
        assert np.shape(extra)[0] == 3, f"extra {name!r} must have one row per image, has {np.shape(extra)}"
    alone = metric_cls(model, **options).score(images[1:2], targets[1:2], _first_of(explanation, 1))
    np.testing.assert_allclose(np.asarray(alone.values, np.float64), values[1:2], atol=1e-5, equal_nan=True,
                               err_msg="a metric's value for an image must not depend on the rest of the batch")
    return result


def _first_of(explanation, index):
    import copy

    one = copy.copy(explanation)
    one.arrays = {"heatmaps": explanation.heatmaps[index:index + 1]}
    one.images, one.targets = explanation.images[index:index + 1], explanation.targets[index:index + 1]
    one.originals, one.sources = explanation.originals[index:index + 1], explanation.sources[index:index + 1]
    one.target_names = explanation.target_names[index:index + 1] if explanation.target_names else None
    return one


def sample_explanation(kinds) -> "Explanation":
    """A small made-up explanation of the first built-in kind in ``kinds``, for renderer checks."""
    from xconv.interfaces import Explanation

    rng = np.random.default_rng(0)
    images = random_images(2, (32, 32), seed=4)
    common = dict(model_name="tiny", images=images, originals=list(images), sources=["a.png", "b.png"],
                  targets=[0, 1], target_names=["class_0", "class_1"],
                  predictions=[("class_0", 0.6), ("class_1", 0.7)])
    if "heatmap" in kinds:
        return Explanation("sample", "heatmap", arrays={"heatmaps": rng.random((2, 4, 4), dtype=np.float32)},
                           layer="conv3", metadata={"target_scores": [0.6, 0.7]}, **common)
    if "comparison" in kinds:
        maps = {"gradcam": rng.random((2, 4, 4), dtype=np.float32), "saliency": rng.random((2, 32, 32), dtype=np.float32)}
        return Explanation("compare", "comparison", arrays={"heatmaps": maps}, metadata={"target_scores": [0.6, 0.7]},
                           **common)
    if "activations" in kinds:
        return Explanation("sample", "activations", layer=["conv1"],
                           arrays={"activations": {"conv1": rng.random((2, 8, 8, 4), dtype=np.float32)}}, **common)
    if "patterns" in kinds:
        return Explanation("sample", "patterns", "tiny", layer="conv2", metadata={"filters": [0, 1, 2]},
                           arrays={"patterns": random_images(3, (24, 24)), "scores": np.ones(3, np.float32)})
    raise AssertionError(f"no sample explanation for kinds {kinds}: pass explanation= to check_renderer")


def _check_declaration(cls, attributes) -> None:
    from xconv.options import Option, declared_options, reserved_names

    for attribute in attributes:
        assert getattr(cls, attribute, ""), f"{cls.__name__}.{attribute} is empty"
    assert not reserved_names(cls), f"option names {reserved_names(cls)} are reserved for the base class"
    for name, option in declared_options(cls).items():
        assert isinstance(option, Option), f"{cls.__name__}.options must hold xconv.Option, got {option!r}"
        assert name.isidentifier(), f"option name {name!r} must be a Python identifier"
        assert not callable(getattr(cls, name, None)), f"option {name!r} would hide the method {cls.__name__}.{name}"
        assert option.help, f"option {name!r} of {cls.__name__} has no help text"


def _check_refuses_unknown_option(make, cls) -> None:
    from xconv.errors import XconvError

    try:
        make()
    except XconvError as error:
        assert "no_such_option" in str(error), f"the error for an unknown option does not name it: {error}"
        return
    except TypeError as error:
        raise AssertionError(f"{cls.__name__} raised TypeError for an unknown option; declare options and pass "
                             f"**options to the base __init__ ({error})") from None
    raise AssertionError(f"{cls.__name__} accepted an unknown option silently")


def _check_json(value, what: str) -> None:
    import json

    try:
        json.dumps(value)
    except (TypeError, ValueError) as error:
        raise AssertionError(f"explanation.{what} must be JSON-serializable for --json: {error}") from None


def _check_arrays(explanation, images) -> None:
    assert explanation.arrays, "the explanation holds no arrays"
    for name, value in _flatten(explanation.arrays):
        array = np.asarray(value)
        assert array.size and not (np.issubdtype(array.dtype, np.floating) and np.isnan(array).any()), \
            f"array {name} is empty or has NaN"
        if images is not None and array.ndim >= 1 and name != "scores":
            assert len(array) == len(images), f"array {name} has {len(array)} entries for {len(images)} images"


def _render_with_every_renderer(explanation, out_dir) -> None:
    from xconv.registry import get_registry

    registry = get_registry()
    for name in registry.names("renderer"):
        entry = registry.entry("renderer", name)
        renderer_cls = entry.cls
        if entry.builtin and renderer_cls.can_render(explanation):
            folder = None if out_dir is None else f"{out_dir}/{name}"
            check_renderer(renderer_cls, explanation, folder)


def _flatten(arrays: dict, prefix: str = ""):
    for name, value in arrays.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{name}.")
        else:
            yield prefix + name, value
