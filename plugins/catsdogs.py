"""catsdogs: a compact residual separable-conv net trained from scratch on cats vs. dogs; xconv's default.

Chollet's mini-Xception, made cheaper for CPUs: a stride-2 stem halves the resolution before the first
residual block (4x fewer multiply-adds there), and every residual add is followed by batch norm and ReLU.
"""

from __future__ import annotations

import json
import zipfile
from importlib import resources

import xconv
from xconv import XconvError

WIDTHS = (64, 128, 256, 512)
IMAGE_SIZE = (128, 128)
#: Moving statistics follow the last ~10 batches: with the default 0.99 they lag far behind the fast-moving
#: weights early in training and inference-mode accuracy sits at chance for many epochs.
BN_MOMENTUM = 0.9


def build_catsdogs(num_classes: int = 2, image_size: tuple[int, int] = IMAGE_SIZE, dropout: float = 0.5):
    """Returns an uncompiled keras.Model mapping uint8-range RGB floats to class probabilities."""
    import keras
    from keras import layers

    inputs = keras.Input((*image_size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for block, width in enumerate(WIDTHS, start=1):
        residual = x
        x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False, name=f"block{block}_sepconv1")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn1")(x)
        x = layers.Activation("relu", name=f"block{block}_relu1")(x)
        x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False, name=f"block{block}_sepconv2")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn2")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{block}_pool")(x)
        residual = layers.Conv2D(width, 1, strides=2, padding="same", use_bias=False,
                                 name=f"block{block}_shortcut")(residual)
        residual = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_shortcut_bn")(residual)
        x = layers.add([x, residual], name=f"block{block}_add")
        x = layers.Activation("relu", name=f"block{block}_out")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    outputs = layers.Activation("softmax", name="predictions", dtype="float32")(logits)
    return keras.Model(inputs, outputs, name="catsdogs")


def bundled_model_path():
    return resources.files("xconv_plugins").joinpath("data/catsdogs.keras")


def bundled_image_size() -> tuple[int, int]:
    """The bundled model's input size (160 px; new models train at ``IMAGE_SIZE``), read from its config:
    a weights file saved from it is loaded into the architecture built at that size."""
    try:
        with zipfile.ZipFile(bundled_model_path()) as archive:
            shape = json.loads(archive.read("config.json"))["config"]["layers"][0]["config"]["batch_shape"]
        return int(shape[1]), int(shape[2])
    except (OSError, KeyError, IndexError, TypeError, ValueError, zipfile.BadZipFile):
        return IMAGE_SIZE


class CatsDogs(xconv.Model):
    name = "catsdogs"
    description = "small convnet trained from scratch on cats vs. dogs (bundled, works offline); xconv's default"
    trainable = True
    default_image_size = IMAGE_SIZE
    options = (
        # +0.7 % validation accuracy for the bundled model (0.900 -> 0.907, docs/benchmarks.md).
        xconv.Option("flip", bool, True, "average each photo's prediction with its mirror image's"),
    )

    @classmethod
    def load(cls, weights="default", flip: bool = True):
        accepted = "'default' (the bundled model), a .keras file, a .weights.h5 file or 'none'"
        if weights is None:
            model = cls(build_catsdogs(2), ["cat", "dog"])
        elif str(weights).endswith(".h5"):  # saved with keras_model.save_weights, from the bundled model or one like it
            model = cls(build_catsdogs(2, bundled_image_size()), ["cat", "dog"])
            xconv.load_weights_file(model.keras_model, weights, cls.name, accepted)
        elif weights == "default" or str(weights).endswith(".keras"):
            path = bundled_model_path() if weights == "default" else weights
            if weights == "default" and not path.is_file():
                raise XconvError(f"the bundled catsdogs model is missing from {path}; reinstall xconv")
            keras_model = xconv.load_keras_file(path, safe_mode=True)
            class_names = xconv.read_metadata(path).get("class_names") or ["cat", "dog"]
            outputs = xconv.layers.output_classes(keras_model)
            if outputs != len(class_names):
                raise XconvError(f"--weights {path} is not a catsdogs model: it has {outputs} outputs, not "
                                 f"{len(class_names)} ({', '.join(class_names)}); to use that model itself, give "
                                 f"--model {path}")
            model = cls(keras_model, class_names)
        else:
            raise XconvError(f"model {cls.name!r} has no weights named {str(weights)!r}; --weights takes {accepted}")
        model.flip_average = flip
        return model

    @classmethod
    def build_for_training(cls, class_names, image_size=IMAGE_SIZE, weights=None):
        return build_catsdogs(len(class_names), tuple(image_size))


@xconv.hookimpl
def xconv_register_models(register):
    register(CatsDogs)
