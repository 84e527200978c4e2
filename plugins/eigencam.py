"""Eigen-CAM (Muhammad & Yeasin 2020): the layer's features projected on their first principal component.

Class-agnostic and gradient-free: for each image the (h*w, K) feature matrix is centred per channel, as in
the reference implementation, and projected on its first right-singular vector. A singular vector's sign
is arbitrary, so it is fixed to make the map correlate positively with the channel mean (where the layer
is active). Then, like every CAM, ReLU and scaling to [0, 1]. The target and prediction are still
reported (the predicted class unless one is asked for), but they do not change the map.
"""

from __future__ import annotations

import xconv


class EigenCAM(xconv.CAMExplainer):
    name = "eigencam"
    description = "Eigen-CAM (Muhammad & Yeasin 2020): first principal component of the features, class-agnostic"
    needs_gradients = False
    dropped_options = ("score",)  # class-agnostic: no class score

    def cam(self, features, gradients):
        import tensorflow as tf

        count, height, width = tf.shape(features)[0], tf.shape(features)[1], tf.shape(features)[2]
        flat = tf.reshape(features, (count, height * width, features.shape[-1]))
        centred = flat - tf.reduce_mean(flat, axis=1, keepdims=True)
        _, _, right = tf.linalg.svd(centred, full_matrices=False)
        projection = tf.linalg.matvec(centred, right[..., 0])                       # (N, h*w)
        mean_map = tf.reduce_mean(flat, axis=2)
        agreement = tf.reduce_sum((projection - tf.reduce_mean(projection, 1, keepdims=True))
                                  * (mean_map - tf.reduce_mean(mean_map, 1, keepdims=True)), axis=1, keepdims=True)
        projection = tf.where(agreement < 0, -projection, projection)
        maps = tf.nn.relu(tf.reshape(projection, (count, height, width)))
        return tf.math.divide_no_nan(maps, tf.reduce_max(maps, axis=(1, 2), keepdims=True))


@xconv.hookimpl
def xconv_register_explainers(register):
    register(EigenCAM)
