"""Grad-CAM (Selvaraju et al. 2017): where in the image the evidence for a class sits.

For a target class c with pre-softmax score y_c and feature maps A^k of the explained layer:
    alpha_k = mean over (i, j) of d y_c / d A^k_ij        (per image: spatial axes only, never the batch)
    L_c     = ReLU(sum_k alpha_k A^k), then scaled to [0, 1] per image (all zeros if it is all zero).
One compiled forward and backward pass per batch. Subclasses change only :meth:`channel_weights`
(Grad-CAM++, LayerCAM, ...).
"""

from __future__ import annotations

import numpy as np

import xconv


class GradCAM(xconv.Explainer):
    name = "gradcam"
    description = "Grad-CAM class-activation heatmap (Selvaraju et al. 2017)"
    kind = "heatmap"

    def __init__(self, model, layer=None, batch_size: int = 16, **options):
        super().__init__(model, layer=layer, **options)
        self.batch_size = batch_size
        self.layer = model.layer_path(layer)
        self._step = None

    @staticmethod
    def channel_weights(features, gradients):
        """alpha (N, c) from features and gradients (N, h, w, c): Grad-CAM's spatial mean of the gradients."""
        import tensorflow as tf

        return tf.reduce_mean(gradients, axis=(1, 2))

    def cam(self, features, gradients):
        """ReLU of the weighted channel sum, each map divided by its maximum (guarded against all-zero maps)."""
        import tensorflow as tf

        weights = self.channel_weights(features, gradients)
        maps = tf.nn.relu(tf.einsum("nhwc,nc->nhw", features, weights))
        peak = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
        return tf.math.divide_no_nan(maps, peak)

    def compiled_step(self):
        """tf.function: (inputs, targets with -1 for 'predicted') -> (maps, chosen targets, probabilities)."""
        if self._step is not None:
            return self._step
        import tensorflow as tf

        feature_model = self.model.feature_model([self.layer])
        height, width = self.model.input_size

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32),
                                      tf.TensorSpec([None], tf.int32)], reduce_retracing=True)
        def step(inputs, targets):
            with tf.GradientTape() as tape:
                features, logits, probabilities = feature_model(inputs, training=False)
                chosen = tf.where(targets < 0, tf.argmax(probabilities, axis=-1, output_type=tf.int32), targets)
                # Each image's score depends only on its own features, so the gradient of the sum is
                # the per-image gradient, computed in one backward pass.
                scores = tf.gather(logits, chosen, axis=1, batch_dims=1)
            gradients = tape.gradient(scores, features)
            return self.cam(features, gradients), chosen, probabilities

        self._step = step
        return step

    def explain(self, images, targets=None):
        step = self.compiled_step()
        requested = np.full(len(images), -1, np.int32) if targets is None else np.asarray(targets, np.int32)
        maps, chosen, probabilities = [], [], []
        for start in range(0, len(images), self.batch_size):
            inputs = self.model.preprocess(images[start:start + self.batch_size])
            batch_maps, batch_chosen, batch_probabilities = step(inputs, requested[start:start + self.batch_size])
            maps.append(batch_maps.numpy())
            chosen.append(batch_chosen.numpy())
            probabilities.append(batch_probabilities.numpy())
        heatmaps = np.concatenate(maps).astype(np.float32)
        target_indices = np.concatenate(chosen).tolist()
        probabilities = np.concatenate(probabilities)
        predictions = [prediction[0] for prediction in self.model.decode(probabilities, top=1)]
        return xconv.Explanation(
            method=self.name,
            kind=self.kind,
            model_name=self.model.display_name,
            arrays={"heatmaps": heatmaps},
            layer=self.layer,
            images=images,
            targets=target_indices,
            target_names=[self.model.class_names[i] for i in target_indices],
            predictions=predictions,
            metadata={"target_scores": probabilities[np.arange(len(images)), target_indices].tolist()},
        )


@xconv.hookimpl
def xconv_register_explainers(register):
    register(GradCAM)
