"""Guided backpropagation's gradient rule (Springenberg et al. 2015), applied in a re-traced copy of a model.

Through a ReLU y = max(z, 0) the plain gradient is (z > 0) * g; guided backpropagation also drops the
negative gradients coming from above: (z > 0) * (g > 0) * g. Placing an identity after each ReLU whose
gradient is g * (g > 0) gives exactly that, since the ReLU's own backward pass then adds the (z > 0)
gate. The gates live only in the feature model xconv builds (``Model.feature_model(..., guided=True)``):
the user's model and its gradients are untouched. This module imports TensorFlow; xconv imports it only
when a guided model is built.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@tf.custom_gradient
def _gate(x):
    def backward(upstream):
        return upstream * tf.cast(upstream > 0, upstream.dtype)

    return tf.identity(x), backward


class GuidedGate(keras.layers.Layer):
    """Identity forward; backward lets only positive gradients through."""

    def call(self, inputs):
        return _gate(inputs)


def is_relu_output(layer) -> bool:
    """A rectifier's output: ReLU, also capped (ReLU6) or thresholded, as a layer, an Activation or a layer's
    ``activation``. A leaky one is not: its negative side passes gradient, so the guided rule does not apply.
    The gate after a capped ReLU gives (0 < z < cap) * (g > 0) * g, the rule with the cap's own gate."""
    if isinstance(layer, keras.layers.ReLU):
        return not float(layer.negative_slope)
    return getattr(getattr(layer, "activation", None), "__name__", "") in ("relu", "relu6")


class GuidedGates:
    """The ``transform`` for :func:`xconv.layers.build_feature_model`: a gate on the gradient after each
    ReLU; counts them, since a model without ReLUs would quietly give the plain gradient."""

    def __init__(self):
        self.gates = 0

    def __call__(self, layer, output):
        if not is_relu_output(layer):
            return output
        self.gates += 1
        return GuidedGate(name=f"{layer.name}_guided")(output)
