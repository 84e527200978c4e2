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
