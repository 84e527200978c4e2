"""The class-activation-map family (Grad-CAM, Grad-CAM++, LayerCAM, ...): one shared compiled pass.

For a target class c with pre-softmax score y_c (see ``SCORES``) and feature maps A of the explained
layer, a CAM is
    L_c = ReLU(sum_k alpha_k A^k)    (or, per position, ReLU(sum_k alpha_kij A^k_ij)),
scaled to [0, 1] per image (all zeros when it is all zero, never NaN). Subclasses override only
:meth:`CAMExplainer.channel_weights`, which receives the features and the gradients d y_c / d A.
Everything runs as one compiled forward and backward pass per batch; gradients are per image.
"""

from __future__ import annotations

import numpy as np

from xconv.errors import XconvError
from xconv.interfaces import Explainer, Explanation
from xconv.options import Option
from xconv.scores import SCORE_OPTION, SCORES, class_scores, resolve_score

__all__ = ["CAMExplainer", "SCORES", "heatmap_explanation"]


class CAMExplainer(Explainer):
    """Base class for class activation maps; set ``name`` and ``channel_weights`` (or override ``cam``).

    ``needs_gradients = False`` skips the backward pass for methods that use the features alone (Eigen-CAM).
    """

    kind = "heatmap"
    needs_gradients = True
    options = (SCORE_OPTION, Option("batch_size", int, 16, "images per compiled forward and backward pass", minimum=1))

    def __init__(self, model, layer=None, **options):
        from xconv.layers import spatial_layer

        super().__init__(model, layer=model.layer_path(layer), **options)
        self.score = resolve_score(self.__dict__.get("score", "auto"), len(model.class_names))  # may be dropped
        spatial_layer(model.keras_model, self.layer, self.name)

    def channel_weights(self, features, gradients):
        """Weights from features and gradients (N, h, w, c): shape (N, c), or (N, h, w, c) per position."""
        raise NotImplementedError

    def cam(self, features, gradients):
        """ReLU of the weighted channel sum, each map divided by its maximum (guarded against all-zero maps)."""
        import tensorflow as tf

        weights = self.channel_weights(features, gradients)
        if weights.shape.rank == 2:
            weights = weights[:, None, None, :]
        maps = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))
        peak = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
        return tf.math.divide_no_nan(maps, peak)

    def compiled_step(self):
        """tf.function: (inputs, targets with -1 for 'predicted') -> (maps, chosen targets, probabilities).

        Cached on the model per method, layer and option values, so a new explainer for the same job does not
        retrace, and one with other options (a subclass's own, which ``channel_weights`` may read) never gets
        a step that captured another explainer's. The batch size does not shape the graph: left out.
        """
        settings = repr(sorted((name, value) for name, value in self.options.items() if name != "batch_size"))
        return self.model.cached((type(self), "cam_step", self.layer, self.score, settings), self._build_step)

    def _build_step(self):
        import tensorflow as tf

        # Batch norms folded into the convolutions: the same maps and probabilities up to float rounding,
        # about 10 % less time per pass on a CPU (the bundled model at 160 px).
        feature_model = self.model.feature_model([self.layer], fold_batch_norms=True)
        height, width = self.model.input_size

        def network(batch):
            return feature_model(batch, training=False)[-1]

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32),
                                      tf.TensorSpec([None], tf.int32)], reduce_retracing=True)
        def step(inputs, targets):
            with tf.GradientTape() as tape:
                features, logits, probabilities = feature_model(inputs, training=False)
                # The model's own test-time augmentation, so the predicted class and its probability are
                # exactly what ``xconv predict`` reports.
                with tape.stop_recording():
                    probabilities = self.model.probabilities(inputs, computed=probabilities, network=network)
                chosen = tf.where(targets < 0, tf.argmax(probabilities, axis=-1, output_type=tf.int32), targets)
                # Each image's score depends only on its own features, so the gradient of the sum is
                # the per-image gradient, computed in one backward pass.
                scores = class_scores(logits, chosen, self.score)
            gradients = tape.gradient(scores, features) if self.needs_gradients else None
            return self.cam(features, gradients), chosen, probabilities

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
        return heatmap_explanation(self, np.concatenate(maps), np.concatenate(chosen), np.concatenate(probabilities),
                                   images)


def is_default_layer(model, layer) -> bool:
    """Whether ``layer`` (a path, a bare name or None) is the model's default; True when that cannot be told
    (no layer, several, or a model without a spatial layer), so file names stay the plain ones."""
    if not isinstance(layer, str):
        return True
    try:
        return model.layer_path(layer) == model.default_layer
    except XconvError:
        return True


def heatmap_explanation(explainer: Explainer, heatmaps, targets, probabilities, images) -> Explanation:
    """The Explanation every heatmap method returns: maps (N, h, w) in [0, 1], targets, predictions and
    target scores. ``probabilities`` should be ``model.probabilities(...)`` of the inputs (the model's
    test-time augmentation included), so the explanation reports what ``xconv predict`` does."""
    model = explainer.model
    targets = np.asarray(targets).tolist()
    return Explanation(
        method=explainer.name,
        kind="heatmap",
        model_name=model.display_name,
        arrays={"heatmaps": np.asarray(heatmaps, np.float32), "probabilities": np.asarray(probabilities, np.float32)},
        layer=explainer.layer,
        images=images,
        targets=targets,
        target_names=[model.class_names[i] for i in targets],
        predictions=[top[0] for top in model.decode(probabilities, top=1)],
        metadata={"target_scores": probabilities[np.arange(len(targets)), targets].tolist(),
                  # Renderers name files after a layer the user chose, so it does not overwrite the default's.
                  "layer_is_default": is_default_layer(model, explainer.layer)},
    )
