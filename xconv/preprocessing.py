"""Input preprocessing modes: what a network expects its uint8 RGB pixels turned into.

The modes are those of ``keras.applications`` (``imagenet_utils.preprocess_input``), written in numpy so
that choosing one imports nothing:

* ``none``: float pixels 0-255 (the model rescales itself, e.g. a ``Rescaling`` layer at its input);
* ``unit``: pixels / 255, in [0, 1];
* ``tf``: pixels / 127.5 - 1, in [-1, 1] (InceptionV3, Xception, MobileNet);
* ``torch``: pixels / 255, then ImageNet mean and standard deviation per channel (DenseNet);
* ``caffe``: RGB -> BGR, then the ImageNet mean subtracted, no scaling (VGG16, ResNet50).
"""

from __future__ import annotations

import numpy as np

from xconv.errors import UnknownNameError, XconvError

IMAGENET_MEAN_RGB = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD_RGB = np.array([0.229, 0.224, 0.225], np.float32)
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)

#: mode -> (scale, offset) per RGB channel: preprocess(x) = x * scale + offset (then a channel swap for caffe).
AFFINE = {
    "none": (np.ones(3, np.float32), np.zeros(3, np.float32)),
    "unit": (np.full(3, 1 / 255, np.float32), np.zeros(3, np.float32)),
    "tf": (np.full(3, 1 / 127.5, np.float32), np.full(3, -1.0, np.float32)),
    "torch": (1 / (255 * IMAGENET_STD_RGB), -IMAGENET_MEAN_RGB / IMAGENET_STD_RGB),
    "caffe": (np.ones(3, np.float32), -CAFFE_MEAN_BGR[::-1].copy()),
}
MODES = tuple(AFFINE)


def check_mode(mode: str) -> str:
    if mode not in AFFINE:
        raise UnknownNameError("preprocessing mode", mode, MODES)
    return mode


def preprocess(batch: np.ndarray, mode: str) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB -> float32 network input for ``mode``."""
    scale, offset = AFFINE[check_mode(mode)]
    out = np.asarray(batch, np.float32) * scale + offset
    return out[..., ::-1] if mode == "caffe" else out


def preprocess_affine(preprocess_fn, name: str = "the model") -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) per channel with preprocess_fn(x) == scale * x + offset, for optimizing in pixel space.

    Probed on three pixels rather than read from a mode, so any plugin's ``preprocess`` works if it is affine.
    """
    probe = np.array([[[[0, 0, 0]], [[255, 255, 255]], [[128, 64, 32]]]], np.uint8)
    out = np.asarray(preprocess_fn(probe), np.float64)[0, :, 0]
    scale, offset = (out[1] - out[0]) / 255.0, out[0]
    if not np.allclose(scale * np.array([128, 64, 32]) + offset, out[2], atol=1e-4):
        raise XconvError(f"{name}: preprocess is not affine per channel; gradient ascent in pixel space needs it")
    return scale.astype(np.float32), offset.astype(np.float32)
