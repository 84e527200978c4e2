"""An independent, straightforward Grad-CAM: the keras-io recipe, one image at a time, eager, plain numpy.

Used only to check xconv's compiled, batched implementation. The feature/score split is done by hand
from the Keras graph, not through xconv.layers.
"""

import numpy as np
import tensorflow as tf


def reference_gradcam(feature_fn, score_fn, inputs: np.ndarray, target: int | None) -> tuple[np.ndarray, int]:
    """feature_fn: input (1, H, W, 3) -> A (1, h, w, c); score_fn: A -> pre-softmax scores (1, classes)."""
    features = tf.convert_to_tensor(feature_fn(inputs[None]))
    with tf.GradientTape() as tape:
        tape.watch(features)
        scores = score_fn(features)
        index = int(np.argmax(scores[0])) if target is None else target
        score = scores[0, index]
    gradients = tape.gradient(score, features).numpy()[0]
    weights = gradients.mean(axis=(0, 1))
    cam = np.maximum((features.numpy()[0] * weights).sum(-1), 0)
    return (cam / cam.max() if cam.max() > 0 else cam), index
