"""Class activation maps weighted by perturbation instead of gradients: Score-CAM and Ablation-CAM.

A is the layer's feature maps (h, w, K); L = ReLU(sum_k w_k A_k), scaled to [0, 1], like every CAM.

* ``scorecam`` (Wang et al. 2020, as the authors' code does it): channel k, upsampled bilinearly to the
  input size and min-max scaled to [0, 1], masks the *preprocessed* input; w_k is the target's softmax
  probability on that masked input (a constant channel is skipped, as the authors' code does: w_k = 0, and
  no forward pass is spent on it). ``top`` keeps only the N channels of largest spatial variance, per
  image (Faster Score-CAM); the others get w_k = 0.
* ``ablationcam`` (Desai & Ramaswamy 2020): w_k = (y - y_k) / y, where y is the class score (``-O score=``:
  the logit, or the log-odds for two classes) and y_k the score with channel k set to zero. Only the part
  of the network above the layer runs for the K ablated copies (:func:`xconv.layers.build_head_model`).

Both are batched over channels, ``chunk`` copies per compiled pass.
"""

from __future__ import annotations

import numpy as np

import xconv
from xconv.perturbation import chunked, masked_probabilities
from xconv.scores import class_scores


class PerturbationCAM(xconv.CAMExplainer):
    """Shared: the features and predictions in compiled batches, then per-image channel weights."""

    needs_gradients = False
    options = (xconv.Option("chunk", int, 64, "perturbed copies per compiled pass", minimum=1),)

    def features(self, inputs):
        feature_model = self.model.feature_model([self.layer])
        return np.concatenate([np.asarray(feature_model(inputs[start:start + self.batch_size], training=False)[0])
                               for start in range(0, len(inputs), self.batch_size)])

    def weights(self, inputs, features, chosen) -> np.ndarray:
        """(N, K) channel weights."""
        raise NotImplementedError

    def explain(self, images, targets=None):
        inputs = self.model.preprocess(images)
        chosen, probabilities = self.targets_and_probabilities(inputs, targets, self.batch_size)
        features = self.features(inputs)
        weights = self.weights(inputs, features, chosen)
        maps = np.maximum(np.einsum("nhwk,nk->nhw", features.astype(np.float64), weights), 0.0)
        explanation = xconv.heatmap_explanation(self, xconv.unit_maps(maps), chosen, probabilities, images)
        explanation.arrays["weights"] = weights.astype(np.float32)
        return explanation


class ScoreCAM(PerturbationCAM):
    name = "scorecam"
    dropped_options = ("score",)  # weighted by probabilities; no class score, no gradient
    description = "Score-CAM (Wang et al. 2020): each channel's weight is the class probability it alone reveals"
    options = (xconv.Option("top", int, None, "keep only the N channels of largest activation variance "
                                              "(Faster Score-CAM); default: all", minimum=1),)

    def weights(self, inputs, features, chosen):
        channels = features.shape[-1]
        flat = features.reshape(len(features), -1, channels)
        variance, spans = flat.var(axis=1), np.ptp(flat, axis=1)
        count = channels if not self.top else min(int(self.top), channels)
        weights = np.zeros((len(features), channels), np.float64)
        for index, (image, target) in enumerate(zip(inputs, chosen)):
            kept = np.argsort(-variance[index], kind="stable")[:count]
            kept = kept[spans[index, kept] > 0]  # a constant channel would mask nothing: no pass for it
            maps = np.moveaxis(features[index][..., kept], -1, 0)
            seen, usable = masked_probabilities(self.model, image, np.zeros_like(image), chunked(maps, self.chunk),
                                                target, normalize=True)
            weights[index, kept] = np.where(usable, seen, 0.0)
        return weights


class AblationCAM(PerturbationCAM):
    name = "ablationcam"
    description = "Ablation-CAM (Desai & Ramaswamy 2020): each channel's weight is the score lost without it"

    def ablation_step(self):
        return self.model.cached(("ablation_step", self.layer, self.score), self._build_ablation_step)

    def _build_ablation_step(self):
        import tensorflow as tf

        head = xconv.layers.build_head_model(self.model.keras_model, self.layer)
        shape = tuple(head.inputs[0].shape[1:])

        @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32), tf.TensorSpec([None], tf.int32),
                                      tf.TensorSpec([], tf.int32)])
        def step(features, channels, target):
            """Scores of copies of ``features`` with one channel each set to zero; channel -1 zeroes none."""
            keep = 1.0 - tf.one_hot(channels, shape[-1], dtype=features.dtype)
            logits, _ = head(features[None] * keep[:, None, None, :], training=False)
            return class_scores(logits, tf.fill(tf.shape(channels), target), self.score)

        return step

    def weights(self, inputs, features, chosen):
        import tensorflow as tf

        step = self.ablation_step()
        channels = np.arange(features.shape[-1], dtype=np.int32)
        weights = np.zeros((len(features), features.shape[-1]), np.float64)
        for index, target in enumerate(chosen):
            image_features, target = tf.constant(features[index]), tf.constant(int(target))
            whole = float(step(image_features, tf.constant([-1]), target)[0])
            ablated = []
            for part in chunked(channels, self.chunk):
                xconv.stop_if_cancelled()
                ablated.append(step(image_features, tf.constant(part), target).numpy())
            ablated = np.concatenate(ablated)
            # The paper divides by y, taking it positive; dividing by |y| keeps that for y > 0 and, for a class
            # the model rejects (y < 0; always, on the log-odds of two classes), counts a channel for the
            # class when removing it lowers the class's score, rather than flipping every weight's sign.
            weights[index] = (whole - ablated) / abs(whole) if whole else 0.0
        return weights


@xconv.hookimpl
def xconv_register_explainers(register):
    register(ScoreCAM)
    register(AblationCAM)
