"""Grad-CAM (Selvaraju et al. 2017): where in the image the evidence for a class sits.

    alpha_k = mean over (i, j) of d y_c / d A^k_ij    (per image: spatial axes only, never the batch)

The compiled pass, ReLU and per-image scaling come from :class:`xconv.CAMExplainer`; Grad-CAM++ or
LayerCAM differ only in these channel weights.
"""

from __future__ import annotations

import xconv


class GradCAM(xconv.CAMExplainer):
    name = "gradcam"
    description = "Grad-CAM class-activation heatmap (Selvaraju et al. 2017)"

    def channel_weights(self, features, gradients):
        import tensorflow as tf

        return tf.reduce_mean(gradients, axis=(1, 2))


@xconv.hookimpl
def xconv_register_explainers(register):
    register(GradCAM)
