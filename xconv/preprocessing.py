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


def preprocess_affine(preprocess_fn, name: str = "the model") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, scale, offset) with preprocess_fn(x)[..., c] == scale[c] * x[..., order[c]] + offset[c]: an
    affine map per channel after a channel permutation (caffe's RGB -> BGR), for optimizing in pixel space.

    Probed on a few pixels rather than read from a mode, so any plugin's ``preprocess`` works if it is affine.
    """
    probe = np.array([[[[0, 0, 0]], [[255, 255, 255]], [[128, 64, 32]], [[16, 200, 96]]]], np.uint8)
    out = np.asarray(preprocess_fn(probe), np.float64)[0, :, 0]
    scale, offset = (out[1] - out[0]) / 255.0, out[0]
    if np.any(scale == 0):
        raise XconvError(f"{name}: preprocess ignores a channel; gradient ascent in pixel space needs every one")
    # Which input channel each output channel reads: the one whose probe values it reproduces.
    seen = (out[2:] - offset) / scale  # (2 probes, 3 output channels) in input pixel units
    order = np.array([int(np.argmin(np.abs(probe[0, 2:, 0, :] - seen[:, [c]]).sum(axis=0))) for c in range(3)])
    if sorted(order) != [0, 1, 2] or not np.allclose(scale * probe[0, 2:, 0][:, order] + offset, out[2:], atol=1e-3):
        raise XconvError(f"{name}: preprocess is not affine per channel; gradient ascent in pixel space needs it")
    return order.astype(np.int32), scale.astype(np.float32), offset.astype(np.float32)
