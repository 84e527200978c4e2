"""Guided backpropagation (Springenberg et al. 2015) and Guided Grad-CAM (Selvaraju et al. 2017).

* ``guided-backprop``: the gradient of the class score with respect to the input, with every ReLU's
  backward pass letting only positive gradients through. The gates are placed in a re-traced copy of the
  network (:mod:`xconv.guided`); the user's model is never changed.
* ``guided-gradcam``: the guided gradient multiplied, pixel by pixel, by the Grad-CAM map of the same
  target upsampled (bilinear) to the input size: fine detail, but only where the class evidence is.

Maps: the largest absolute value over the color channels, scaled to [0, 1]; the signed values are in
``arrays["attributions"]``.
"""

from __future__ import annotations

import numpy as np

import xconv
from xconv import InputGradientExplainer, attribution_explanation


class GuidedBackprop(InputGradientExplainer):
    name = "guided-backprop"
    description = "guided backpropagation (Springenberg et al. 2015): only positive gradients pass each ReLU"
    guided = True


class GuidedGradCAM(InputGradientExplainer):
    name = "guided-gradcam"
    description = "Guided Grad-CAM (Selvaraju et al. 2017): guided backpropagation times the upsampled Grad-CAM"
    guided = True
    takes_layer = True

    def __init__(self, model, layer=None, **options):
        super().__init__(model, layer=model.layer_path(layer), **options)

    def explain(self, images, targets=None):
        import tensorflow as tf

        inputs = self.model.preprocess(images)
        chosen, probabilities = self.targets_and_probabilities(inputs, targets)
        guided, _ = self.accumulate(inputs, chosen, copies=1)
        cam = xconv.explain(self.model, images, "gradcam", target=chosen.tolist(), layer=self.layer, score=self.score,
                            batch_size=self.batch_size).heatmaps
        upsampled = tf.image.resize(cam[..., None], self.model.input_size, method="bilinear").numpy()
        attributions = guided * upsampled
        explanation = attribution_explanation(self, attributions, np.abs(attributions).max(axis=-1), chosen,
                                              probabilities, images)
        explanation.arrays["gradcam"] = cam
        return explanation


@xconv.hookimpl
def xconv_register_explainers(register):
    register(GuidedBackprop)
    register(GuidedGradCAM)
