"""Gradient CAMs that differ from Grad-CAM only in their weights, each exact to its paper.

A is the layer's feature maps (h, w, K) and G = d score / d A, per image; every map is then
L = ReLU(sum_k w_k A_k) (or per position), scaled to [0, 1] by :class:`xconv.CAMExplainer`.

* ``gradcam++`` (Chattopadhay et al. 2018): alpha = G^2 / (2 G^2 + sum_ij A G^3), 0 where G = 0 (the
  closed form for an exponential score), w_k = sum_ij alpha ReLU(G).
* ``layercam`` (Jiang et al. 2021): per position, w = ReLU(G).
* ``hirescam`` (Draelos & Carin 2020): per position, w = G (no spatial averaging, so the map is faithful).
* ``xgradcam`` (Fu et al. 2020): w_k = sum_ij (A_k / sum_ij A_k) G_k (0 for a channel that is all zero).
"""

from __future__ import annotations

import xconv


class GradCAMPlusPlus(xconv.CAMExplainer):
    name = "gradcam++"
    description = "Grad-CAM++ (Chattopadhay et al. 2018): positive gradients weighted to credit every instance"

    def channel_weights(self, features, gradients):
        import tensorflow as tf

        squared = tf.square(gradients)
        denominator = 2.0 * squared + tf.reduce_sum(features, axis=(1, 2), keepdims=True) * squared * gradients
        alpha = tf.math.divide_no_nan(squared, denominator)
        return tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=(1, 2))


class LayerCAM(xconv.CAMExplainer):
    name = "layercam"
    description = "LayerCAM (Jiang et al. 2021): each position weighted by its own positive gradient"

    def channel_weights(self, features, gradients):
        import tensorflow as tf

        return tf.nn.relu(gradients)


class HiResCAM(xconv.CAMExplainer):
    name = "hirescam"
    description = "HiResCAM (Draelos & Carin 2020): gradient times activation per position, no averaging"

    def channel_weights(self, features, gradients):
        return gradients


class XGradCAM(xconv.CAMExplainer):
    name = "xgradcam"
    description = "XGrad-CAM (Fu et al. 2020): gradients averaged with the channel's own activation as weights"

    def channel_weights(self, features, gradients):
        import tensorflow as tf

        share = tf.math.divide_no_nan(features, tf.reduce_sum(features, axis=(1, 2), keepdims=True))
        return tf.reduce_sum(share * gradients, axis=(1, 2))


@xconv.hookimpl
def xconv_register_explainers(register):
    for explainer in (GradCAMPlusPlus, LayerCAM, HiResCAM, XGradCAM):
        register(explainer)
