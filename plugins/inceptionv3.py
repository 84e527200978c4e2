"""InceptionV3 (Szegedy et al. 2016), the ImageNet classifier from keras.applications.

``weights``: ``"imagenet"`` (the default: downloaded once, then cached by Keras in ``~/.keras/models``),
a path to a weights file, or ``None`` for random initialization. The 1,000 ImageNet class names ship
with xconv, so labels work offline.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import xconv
from xconv import XconvError

IMAGENET_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k labels in Keras order ('tiger_cat', 'bull_mastiff', ...)."""
    text = resources.files("xconv_plugins").joinpath("data/imagenet_classes.txt").read_text()
    return text.split()


def fetch_imagenet(build, model_name: str):
    """Build with ImageNet weights; offline without a cached copy, say so and name the fix."""
    try:
        return build("imagenet")
    except Exception as error:  # noqa: BLE001 - urllib, socket and Keras' own fetch errors
        text = str(error)
        if "fetch" in text.lower() or "url" in text.lower() or isinstance(error, OSError):
            cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
            raise XconvError(
                f"cannot download the ImageNet weights for {model_name} (offline?) and none are cached in {cache}; "
                f"pass --weights PATH to a weights file, or --weights none for random weights"
            ) from None
        raise


def build_with_weights(build, weights, model_name: str):
    """``build(keras_weights)`` for xconv's ``weights``: "default"/"imagenet" (downloaded, cached),
    ``None`` (random) or a weights file path."""
    if weights in ("default", "imagenet"):
        return fetch_imagenet(build, model_name)
    keras_model = build(None)
    if weights is not None:
        xconv.load_weights_file(keras_model, weights, model_name, "a path, 'imagenet' or 'none'")
    return keras_model


class InceptionV3(xconv.Model):
    name = "inceptionv3"
    description = "InceptionV3 ImageNet classifier (1,000 classes, 299x299), keras.applications"

    @classmethod
    def load(cls, weights="default"):
        import keras

        keras_model = build_with_weights(lambda w: keras.applications.InceptionV3(weights=w), weights, cls.name)
        return cls(keras_model, imagenet_class_names(), default_layer="mixed10")

    def preprocess(self, batch):
        # keras.applications.inception_v3.preprocess_input, without the import: scale to [-1, 1].
        return xconv.preprocessing.preprocess(batch, "tf")


class InceptionV3Transfer(xconv.Model):
    """Frozen InceptionV3 base (nested, so Grad-CAM reaches ``inception_v3/mixed10``) plus a new head."""

    name = "inceptionv3-transfer"
    description = "InceptionV3 base, frozen, with a new pooling + dropout + dense head (xconv train)"
    trainable = True
    default_image_size = (224, 224)

    @classmethod
    def load(cls, weights="default"):
        if weights in ("default", None, "imagenet"):
            raise XconvError("inceptionv3-transfer is trained, not loaded: run `xconv train --model "
                             "inceptionv3-transfer --data DIR --out model.keras`, then use --model model.keras")
        return xconv.load_model(weights)

    @classmethod
    def build_for_training(cls, class_names, image_size=(224, 224), weights="default"):
        import keras
        from keras import layers

        base = build_with_weights(
            lambda w: keras.applications.InceptionV3(include_top=False, weights=w, input_shape=(*image_size, 3)),
            weights, cls.name)
        base.trainable = False
        inputs = keras.Input((*image_size, 3), name="image")
        x = layers.Rescaling(1 / 127.5, offset=-1, name="inception_preprocess")(inputs)
        # The frozen base's batch norms run in inference mode; unfreeze_top keeps them frozen when
        # fine-tuning (Keras's own training flag would override this training=False).
        x = base(x, training=False)
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(0.5, name="dropout")(x)
        logits = layers.Dense(len(class_names), name="logits")(x)
        outputs = layers.Activation("softmax", name="predictions", dtype="float32")(logits)
        return keras.Model(inputs, outputs, name="inceptionv3_transfer")


@xconv.hookimpl
def xconv_register_models(register):
    register(InceptionV3)
    register(InceptionV3Transfer)
