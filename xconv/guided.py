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
    """An Activation('relu'), a plain ReLU layer, or a layer with ``activation='relu'`` (Conv2D, Dense, ...)."""
    if isinstance(layer, keras.layers.ReLU):
        return layer.max_value is None and not float(layer.negative_slope) and not float(layer.threshold)
    return getattr(getattr(layer, "activation", None), "__name__", "") == "relu"


def guide_relu_gradients(layer, output):
    """The ``transform`` for :func:`xconv.layers.build_feature_model`: gate the gradient after each ReLU."""
    return GuidedGate(name=f"{layer.name}_guided")(output) if is_relu_output(layer) else output
