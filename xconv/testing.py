"""Helpers for testing xconv and its plugins: tiny random convnets that build in milliseconds."""

from __future__ import annotations

import numpy as np

from xconv.types import Model


class TinyModel(Model):
    name = "tiny"
    description = "a tiny random convnet for tests"


def tiny_keras_convnet(input_size=(32, 32), classes: int = 3, seed: int = 0, name: str = "tiny"):
    """Conv-pool-conv-pool, global pooling, dense softmax; random but deterministic weights."""
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

    Checks the class attributes, that the Explanation carries the method and kind, holds arrays free of
    NaN, has one entry per image (for image methods), and that every installed renderer accepting its
    kind writes files for it. Returns the Explanation for further, method-specific assertions.
    """
    import tempfile
    from pathlib import Path

    from xconv.registry import get_registry
    from xconv.types import Explainer, Explanation

    assert issubclass(explainer_cls, Explainer), f"{explainer_cls} is not an xconv.Explainer subclass"
    for attribute in ("name", "description", "kind"):
        assert getattr(explainer_cls, attribute, ""), f"{explainer_cls.__name__}.{attribute} is empty"
    model = model or tiny_convnet()
    if explainer_cls.needs_images:
        images = images if images is not None else random_images(3, model.input_size, seed=1)
    else:
        images = None
    explainer = explainer_cls(model, **options)
    explanation = explainer.explain(images, None)
    assert isinstance(explanation, Explanation), f"explain() returned {type(explanation).__name__}"
    assert explanation.method == explainer_cls.name and explanation.kind == explainer_cls.kind
    assert explanation.arrays, "the explanation holds no arrays"
    for name, value in _flatten(explanation.arrays):
        array = np.asarray(value)
        assert array.size and not (np.issubdtype(array.dtype, np.floating) and np.isnan(array).any()), \
            f"array {name} is empty or has NaN"
        if images is not None and array.ndim >= 1 and name != "scores":
            assert len(array) == len(images), f"array {name} has {len(array)} entries for {len(images)} images"
    if explanation.kind == "heatmap":
        heatmaps = explanation.heatmaps
        assert heatmaps.ndim == 3 and heatmaps.min() >= 0 and heatmaps.max() <= 1, "heatmaps must be in [0, 1]"
        assert explanation.targets is not None and len(explanation.targets) == len(images)
    registry = get_registry()
    renderers = [n for n in registry.names("renderer") if registry.get("renderer", n).can_render(explanation)]
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(out_dir or scratch)
        for renderer in renderers:
            folder = target / renderer
            folder.mkdir(parents=True, exist_ok=True)
            written = registry.get("renderer", renderer)().render(explanation, folder)
            assert written and all(Path(p).is_file() for p in written), f"renderer {renderer} wrote nothing"
    return explanation


def _flatten(arrays: dict, prefix: str = ""):
    for name, value in arrays.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{name}.")
        else:
            yield prefix + name, value
