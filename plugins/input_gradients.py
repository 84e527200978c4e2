"""Pixel-level gradient attributions: saliency, SmoothGrad and integrated gradients.

Maps are at the input's resolution: each pixel's largest absolute attribution over the color channels,
scaled to [0, 1]. The signed attributions (N, H, W, 3), with respect to the preprocessed input (its channel
order and scale: BGR for caffe-preprocessed models), are kept in ``arrays["attributions"]``. The gradient is of the class score (``-O score=``: the logit, or the log-odds
for two classes), as for Grad-CAM.

* ``saliency`` (Simonyan et al. 2014): |d score / d x|, the largest over the color channels.
* ``smoothgrad`` (Smilkov et al. 2017): the saliency map averaged over ``samples`` noisy copies
  x + N(0, sigma^2), sigma = ``noise`` times the image's input range (max - min); the attributions are the
  averaged signed gradients. Copy m's noise depends only on (seed, m) (drawn once per call), so a batch gives
  what one-by-one does.
* ``integrated-gradients`` (Sundararajan et al. 2017): (x - x0) times the gradient averaged along the
  straight path from a baseline x0 to x, integrated with ``steps`` Gauss-Legendre nodes (as Captum does:
  more accurate than the trapezoid or Riemann sums for the same passes). The attributions sum to
  score(x) - score(x0) (completeness), reported per image as ``metadata["score_delta"]``.
"""

from __future__ import annotations

import numpy as np

import xconv
from xconv import InputGradientExplainer, attribution_explanation

BASELINES = ("black", "gray", "blurred")


class Saliency(InputGradientExplainer):
    name = "saliency"
    description = "saliency map (Simonyan et al. 2014): largest |gradient| of the class score over the colors"


class SmoothGrad(InputGradientExplainer):
    name = "smoothgrad"
    description = "SmoothGrad (Smilkov et al. 2017): saliency averaged over noisy copies of the image"
    options = (
        xconv.Option("samples", int, 25, "noisy copies per image", minimum=1),
        xconv.Option("noise", float, 0.15, "noise standard deviation, as a fraction of the image's input range",
                     minimum=0.0),
        xconv.Option("seed", int, 0, "random seed of the noise"),
    )

    def explain(self, images, targets=None):
        import tensorflow as tf

        inputs = self.model.preprocess(images)
        chosen, probabilities = self.targets_and_probabilities(inputs, targets)
        tensor = tf.constant(inputs)
        spread = self.noise * (tf.reduce_max(tensor, axis=(1, 2, 3)) - tf.reduce_min(tensor, axis=(1, 2, 3)))
        unit_noise = tf.constant(np.stack([np.random.default_rng([self.seed, m]).standard_normal(inputs.shape[1:])
                                           for m in range(self.samples)]).astype(np.float32))

        def noisy(owners, indices):
            noise = tf.gather(unit_noise, indices)
            return tf.gather(tensor, owners) + tf.gather(spread, owners)[:, None, None, None] * noise

        weights = np.full(self.samples, 1.0 / self.samples)
        signed, saliency = self.accumulate(inputs, chosen, self.samples, noisy, weights)
        return attribution_explanation(self, signed, saliency, chosen, probabilities, images,
                                       samples=self.samples, noise=self.noise)


class IntegratedGradients(InputGradientExplainer):
    name = "integrated-gradients"
    description = "integrated gradients (Sundararajan et al. 2017) from a black, gray or blurred baseline"
    options = (
        xconv.Option("steps", int, 64, "points on the path from the baseline (Gauss-Legendre nodes)", minimum=1),
        xconv.Option("baseline", str, "black", "the image the path starts from", choices=BASELINES),
    )

    def baselines(self, images: np.ndarray) -> np.ndarray:
        """Preprocessed baselines: a black or mid-gray image, or the photo blurred (sigma: 1/20 of its size)."""
        pixels = xconv.images.baseline_pixels(images, self.baseline, blur_sigma=max(images.shape[1:3]) / 20)
        return self.model.preprocess(pixels)

    def explain(self, images, targets=None):
        import tensorflow as tf

        inputs = self.model.preprocess(images)
        chosen, probabilities = self.targets_and_probabilities(inputs, targets)
        starts = self.baselines(images)
        tensor, start_tensor = tf.constant(inputs), tf.constant(starts)
        nodes, weights = path_quadrature(self.steps)
        alphas = tf.constant(nodes, tf.float32)

        def on_path(owners, indices):
            origin = tf.gather(start_tensor, owners)
            return origin + tf.gather(alphas, indices)[:, None, None, None] * (tf.gather(tensor, owners) - origin)

        mean_gradients, _ = self.accumulate(inputs, chosen, self.steps, on_path, weights)
        attributions = (inputs - starts) * mean_gradients
        score_delta = self.scores_of(inputs, chosen) - self.scores_of(starts, chosen)
        return attribution_explanation(self, attributions, np.abs(attributions).max(axis=-1), chosen, probabilities,
                                       images, score_delta=score_delta.tolist(), steps=self.steps,
                                       baseline=self.baseline)


def path_quadrature(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes in (0, 1) and weights summing to 1, for the path integral."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return (nodes + 1) / 2, weights / 2


@xconv.hookimpl
def xconv_register_explainers(register):
    for explainer in (Saliency, SmoothGrad, IntegratedGradients):
        register(explainer)
