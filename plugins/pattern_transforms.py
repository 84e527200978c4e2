"""Random small affine transforms (shift, scale, rotation) of a batch of images, inside the TF graph.

Filter patterns use them twice: during the ascent, so a pattern cannot rely on one exact pixel
alignment (Lucid's transformation robustness, Olah et al. 2017), and afterwards, to measure how much
of its activation a finished pattern keeps when it is moved a little. One projective-transform op
warps the whole batch, each image with its own matrix, with reflected borders (no frame for the
pattern to exploit) and bilinear sampling. TensorFlow's gradient of it warps the upstream gradient back
by the inverse matrix: close to the sampling's adjoint for these small moves, not equal to it (no scale
Jacobian, reflected borders not folded back), which Adam's normalized steps tolerate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class TransformRange:
    """Largest shift (pixels), relative scale change (0.08: 0.92-1.08) and rotation (degrees) drawn."""

    shift: float = 0.0
    scale: float = 0.0
    degrees: float = 0.0

    @property
    def identity(self) -> bool:
        return self.shift == 0 and self.scale == 0 and self.degrees == 0


#: The transforms under which robustness is reported: small moves a viewer would not notice.
ROBUSTNESS_CHECK = TransformRange(shift=6.0, scale=0.08, degrees=8.0)


def affine_matrices(shifts, scales, angles, size: int):
    """(N, 8) matrices mapping output to input pixel coordinates: rotate by ``angles`` (radians) and scale
    by ``scales`` about the image centre, then shift by ``shifts`` (N, 2: x, y)."""
    import tensorflow as tf

    centre = (size - 1) / 2.0
    cos, sin = tf.cos(angles) / scales, tf.sin(angles) / scales
    a2 = centre - cos * centre - sin * centre - shifts[:, 0]
    b2 = centre + sin * centre - cos * centre - shifts[:, 1]
    zeros = tf.zeros_like(cos)
    return tf.stack([cos, sin, a2, -sin, cos, b2, zeros, zeros], axis=1)


def random_matrices(count, seed, transform: TransformRange, size: int):
    """``count`` matrices drawn uniformly within ``transform``, from a stateless (2,) int32 ``seed``."""
    import tensorflow as tf

    draws = tf.random.stateless_uniform(tf.stack([count, 4]), seed, -1.0, 1.0)
    shifts = draws[:, :2] * transform.shift
    scales = 1.0 + draws[:, 2] * transform.scale
    angles = draws[:, 3] * (transform.degrees * math.pi / 180.0)
    return affine_matrices(shifts, scales, angles, size)


def warp(images, matrices):
    """Each image of (N, S, S, C) float images resampled through its matrix, borders reflected."""
    import tensorflow as tf

    static = images.shape[1:3]
    size = tf.constant(static.as_list(), tf.int32) if static.is_fully_defined() else tf.shape(images)[1:3]
    warped = tf.raw_ops.ImageProjectiveTransformV3(images=images, transforms=matrices, output_shape=size,
                                                   fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    return tf.ensure_shape(warped, images.shape)
