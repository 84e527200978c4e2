"""The pixel-level gradient family's shared machinery: d score / d input over many copies of each image.

Saliency, SmoothGrad, integrated gradients and guided backpropagation differ only in which copies of an
image they differentiate (the image itself, noisy copies, points on a path from a baseline) and how they
weight the gradients. :meth:`InputGradientExplainer.accumulate` runs all (image, copy) pairs of a batch
through one compiled forward and backward pass per ``batch_size`` pairs, whatever the number of images,
so memory stays bounded and the passes are the floor each method needs. Gradients are taken of the
class score (``xconv.scores``: the logit, or the log-odds for two classes) with respect to the
*preprocessed* input, and maps are at the input's resolution, scaled to [0, 1] per image (never NaN).
"""

from __future__ import annotations

import numpy as np

from xconv.cam import heatmap_explanation
from xconv.cancel import stop_if_cancelled
from xconv.interfaces import Explainer
from xconv.options import Option
from xconv.scores import SCORE_OPTION, class_scores, resolve_score


class InputGradientExplainer(Explainer):
    """Base class: set ``name`` and ``description``; the default ``explain`` maps the gradient itself (with
    ``guided = True``, the guided gradient); methods over many copies override it with :meth:`accumulate`."""

    kind = "heatmap"
    takes_layer = False
    #: Whether the gradients pass through guided-backpropagation gates (:mod:`xconv.guided`).
    guided = False
    options = (SCORE_OPTION,
               Option("batch_size", int, 16, "image copies per compiled forward and backward pass", minimum=1))

    def __init__(self, model, layer=None, **options):
        super().__init__(model, layer=layer, **options)
        self.score = resolve_score(self.score, len(model.class_names))

    def gradient_step(self):
        """tf.function (copies (B, H, W, 3), targets (B,)) -> (gradients of each copy's score, scores)."""
        return self.model.cached(("input_gradients", self.score, self.guided), self._build_gradient_step)

    def _build_gradient_step(self):
        import tensorflow as tf

        scores_model = self.model.feature_model([], guided=self.guided)
        height, width = self.model.input_size

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32),
                                      tf.TensorSpec([None], tf.int32)], reduce_retracing=True)
        def step(copies, targets):
            with tf.GradientTape() as tape:
                tape.watch(copies)
                logits, _ = scores_model(copies, training=False)
                # Each copy's score depends only on itself, so one backward pass of the sum gives them all.
                scores = class_scores(logits, targets, self.score)
            return tape.gradient(scores, copies), scores

        return step

    def explain(self, images, targets=None):
        inputs = self.model.preprocess(images)
        chosen, probabilities = self.targets_and_probabilities(inputs, targets)
        signed, saliency = self.accumulate(inputs, chosen, copies=1)
        return attribution_explanation(self, signed, saliency, chosen, probabilities, images)

    def summed_gradient_step(self):
        """tf.function (copies, targets, weights, owners, owner count) -> per owner: (sum of w * gradient,
        sum of w * max over colors of |gradient|); the reduction happens in the graph, so only one map per
        image of the chunk comes back to the host."""
        return self.model.cached(("input_gradient_sums", self.score, self.guided), self._build_summed_step)

    def _build_summed_step(self):
        import tensorflow as tf

        step = self.gradient_step()
        height, width = self.model.input_size

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32),
                                      tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.float32),
                                      tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32)])
        def summed(copies, targets, weights, owners, count):
            gradients, _ = step(copies, targets)
            weighted = gradients * weights[:, None, None, None]
            return (tf.math.unsorted_segment_sum(weighted, owners, count),
                    tf.math.unsorted_segment_sum(tf.reduce_max(tf.abs(weighted), axis=-1), owners, count))

        return summed

    def accumulate(self, inputs: np.ndarray, chosen: np.ndarray, copies: int, make_copies=None, weights=None):
        """For each image i: (sum_m w_m * g_im, sum_m w_m * max_c |g_im|) over its ``copies`` copies, where
        g_im is the gradient at copy m of image i. ``make_copies(owners, m)`` builds a chunk of copies (a
        tensor op; ``owners`` are image indices, ``m`` copy indices); None: the images themselves.
        Returns (signed (N, H, W, 3), saliency (N, H, W)) as float64.
        """
        import tensorflow as tf

        summed = self.summed_gradient_step()
        weights = np.ones(copies) if weights is None else np.asarray(weights, np.float64)
        images = tf.constant(inputs, tf.float32)
        make_copies = make_copies or (lambda owners, m: tf.gather(images, owners))
        signed = np.zeros(inputs.shape, np.float64)
        saliency = np.zeros(inputs.shape[:3], np.float64)
        total = len(inputs) * copies
        for start in range(0, total, self.batch_size):
            stop_if_cancelled()
            pairs = np.arange(start, min(start + self.batch_size, total))
            owners, indices = pairs // copies, pairs % copies
            first = owners[0]  # a chunk's pairs are consecutive, so its owners are first .. first + count - 1
            count = owners[-1] - first + 1
            batch = make_copies(tf.constant(owners, tf.int32), tf.constant(indices, tf.int32))
            chunk_signed, chunk_saliency = summed(batch, tf.constant(chosen[owners], tf.int32),
                                                  tf.constant(weights[indices], tf.float32),
                                                  tf.constant(owners - first, tf.int32), tf.constant(count, tf.int32))
            signed[first:first + count] += chunk_signed.numpy()
            saliency[first:first + count] += chunk_saliency.numpy()
        return signed, saliency

    def scores_of(self, inputs: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        """Each input's class score for its chosen class (forward passes only)."""
        import tensorflow as tf

        scores_model = self.model.feature_model([], guided=self.guided)
        out = []
        for start in range(0, len(inputs), self.batch_size):
            logits, _ = scores_model(tf.constant(inputs[start:start + self.batch_size]), training=False)
            out.append(class_scores(logits, tf.constant(chosen[start:start + self.batch_size]), self.score).numpy())
        return np.concatenate(out)


def unit_maps(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum, as float32 in [0, 1]; an all-zero map stays zero (never NaN)."""
    maps = np.maximum(np.asarray(maps, np.float64), 0.0)
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape((-1,) + (1,) * (maps.ndim - 1))
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0).astype(np.float32)


def attribution_explanation(explainer, attributions, maps, chosen, probabilities, images, **metadata):
    """A heatmap explanation for a pixel-level method: ``maps`` (N, H, W) scaled to [0, 1] as the heatmaps,
    the signed ``attributions`` (N, H, W, 3) kept beside them, ``metadata`` added."""
    explanation = heatmap_explanation(explainer, unit_maps(maps), chosen, probabilities, images)
    explanation.arrays["attributions"] = np.asarray(attributions, np.float32)
    explanation.metadata.update(metadata)
    return explanation
