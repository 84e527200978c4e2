"""xconv-saliency: two explainers that are not built into xconv, written against its public API only.

* ``smoothgrad`` (Smilkov et al. 2017): the gradient of the class score with respect to the input
  pixels, averaged over noisy copies of the image, which removes the speckle of a plain gradient.
* ``gradcam++`` (Chattopadhay et al. 2018): Grad-CAM with positive-gradient weights that credit every
  instance of a class, not only the strongest one; it overrides one method of ``xconv.CAMExplainer``.
"""

from __future__ import annotations

import numpy as np

import xconv

xconv_api_version = "1.1"


class GradCAMPlusPlus(xconv.CAMExplainer):
    name = "gradcam++"
    description = "Grad-CAM++ (Chattopadhay et al. 2018), from the xconv-saliency example plugin"

    def channel_weights(self, features, gradients):
        import tensorflow as tf

        # The closed form for an exponential score: alpha = g^2 / (2 g^2 + sum(A) g^3).
        squared, cubed = tf.square(gradients), tf.pow(gradients, 3)
        total = tf.reduce_sum(features, axis=(1, 2), keepdims=True)
        denominator = 2.0 * squared + total * cubed
        alpha = tf.math.divide_no_nan(squared, tf.where(denominator != 0, denominator, tf.ones_like(denominator)))
        return tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=(1, 2))


class SmoothGrad(xconv.Explainer):
    name = "smoothgrad"
    description = "SmoothGrad input saliency (Smilkov et al. 2017), from the xconv-saliency example plugin"
    kind = "heatmap"
    # Declared once: `xconv list smoothgrad` shows them, `-O samples=32` sets them, typos are refused.
    # The base class checks them and sets self.samples, self.noise, self.seed. The map is at input
    # resolution, so the explainer has no layer (self.layer stays None).
    options = (
        xconv.Option("samples", int, 16, "noisy copies averaged per image"),
        xconv.Option("noise", float, 0.15, "noise spread as a fraction of the input range"),
        xconv.Option("seed", int, 0, "random seed of the noise"),
    )

    def compiled_step(self):
        # Cached on the model, so a new explainer for the same setting does not retrace.
        return self.model.cached((type(self), "smoothgrad", self.samples), self._build_step)

    def _build_step(self):
        import tensorflow as tf

        scores_model = self.model.feature_model([])  # no layer: just [logits, probabilities]
        samples = self.samples

        @tf.function(reduce_retracing=True)
        def step(inputs, targets, noise):
            count = tf.shape(inputs)[0]
            # model.probabilities adds the model's test-time augmentation: the same confidence as `xconv predict`.
            probabilities = self.model.probabilities(inputs)
            chosen = tf.where(targets < 0, tf.argmax(probabilities, axis=-1, output_type=tf.int32), targets)
            # All noisy copies of all images go through in one batch: (samples * N, H, W, 3).
            noisy = tf.repeat(inputs, samples, axis=0) + noise
            with tf.GradientTape() as tape:
                tape.watch(noisy)
                logits, _ = scores_model(noisy, training=False)
                score = tf.reduce_sum(tf.gather(logits, tf.repeat(chosen, samples), axis=1, batch_dims=1))
            gradients = tf.reshape(tape.gradient(score, noisy), (count, samples, *noisy.shape[1:]))
            saliency = tf.reduce_max(tf.abs(tf.reduce_mean(gradients, axis=1)), axis=-1)
            peak = tf.reduce_max(saliency, axis=(1, 2), keepdims=True)
            return tf.math.divide_no_nan(saliency, peak), chosen, probabilities

        return step

    def explain(self, images, targets=None):
        inputs = self.model.preprocess(images)
        spread = self.noise * float(inputs.max() - inputs.min() or 1.0)
        rng = np.random.default_rng(self.seed)
        noise = rng.normal(0.0, spread, (len(inputs) * self.samples, *inputs.shape[1:])).astype(np.float32)
        requested = np.full(len(images), -1, np.int32) if targets is None else np.asarray(targets, np.int32)
        heatmaps, chosen, probabilities = self.compiled_step()(inputs, requested, noise)
        return xconv.heatmap_explanation(self, heatmaps.numpy(), chosen.numpy(), probabilities.numpy(), images)


@xconv.hookimpl
def xconv_register_explainers(register):
    register(SmoothGrad)
    register(GradCAMPlusPlus)
