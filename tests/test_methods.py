"""Every attribution method against an independent, plain implementation of its paper's formula.

The references here are eager, one image (or one channel, one patch) at a time, written from the formulas
in the docs with the features and gradients taken straight from the Keras graph, not through xconv.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import xconv
from test_gradcam import nested_models
from xconv.registry import get_registry
from xconv.testing import TinyModel, random_images, tiny_keras_convnet

#: Settings that keep the slow methods quick on a 32 px model, for the tests that sweep every method.
QUICK = {"rise": {"masks": 64}, "smoothgrad": {"samples": 4}, "integrated-gradients": {"steps": 8},
         "scorecam": {"chunk": 16}}
IMAGE_METHODS = [name for name in get_registry().names("explainer") if name not in ("activations", "filters")]


@pytest.fixture(scope="module")
def tiny():
    return TinyModel(tiny_keras_convnet((32, 32), classes=3, seed=1), ["x", "y", "z"])


@pytest.fixture(scope="module")
def images():
    return random_images(3, (32, 32), seed=7)


def conv3_and_scores(tiny, images):
    """A (N, 8, 8, 16) at conv3 and G = d logit_target / d A, by hand: conv3 -> global average -> dense."""
    keras_model = tiny.keras_model
    features = keras.Model(keras_model.inputs, keras_model.get_layer("conv3").output)(tiny.preprocess(images))
    kernel, bias = (np.asarray(w) for w in keras_model.get_layer("predictions").get_weights())

    def logits(a):
        return tf.matmul(tf.reduce_mean(a, axis=(1, 2)), kernel) + bias

    with tf.GradientTape() as tape:
        tape.watch(features)
        scores = logits(features)
        targets = np.argmax(scores.numpy(), axis=1)
        chosen = tf.gather(scores, targets, axis=1, batch_dims=1)
    return features.numpy().astype(np.float64), tape.gradient(chosen, features).numpy().astype(np.float64), \
        targets, logits


def unit(maps):
    maps = np.maximum(maps, 0)
    peak = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def gradcam_plus_plus(a, g):
    denominator = 2 * g ** 2 + a.sum(axis=(1, 2), keepdims=True) * g ** 3
    alpha = np.divide(g ** 2, denominator, out=np.zeros_like(g), where=denominator != 0)
    return ((alpha * np.maximum(g, 0)).sum(axis=(1, 2))[:, None, None] * a).sum(-1)


def xgradcam(a, g):
    total = a.sum(axis=(1, 2), keepdims=True)
    share = np.divide(a, total, out=np.zeros_like(a), where=total != 0)
    return ((share * g).sum(axis=(1, 2))[:, None, None] * a).sum(-1)


FORMULAS = {
    "gradcam": lambda a, g: (g.mean(axis=(1, 2))[:, None, None] * a).sum(-1),
    "gradcam++": gradcam_plus_plus,
    "layercam": lambda a, g: (np.maximum(g, 0) * a).sum(-1),
    "hirescam": lambda a, g: (g * a).sum(-1),
    "xgradcam": xgradcam,
}


@pytest.mark.parametrize("method", sorted(FORMULAS))
def test_gradient_cams_match_their_formulas(tiny, images, method):
    a, g, targets, _ = conv3_and_scores(tiny, images)
    explained = xconv.explain(tiny, images, method, layer="conv3", score="logit")
    assert explained.targets == targets.tolist()
    np.testing.assert_allclose(explained.heatmaps, unit(FORMULAS[method](a, g)), atol=1e-5)


def test_gradient_cams_on_hand_computed_values():
    """The 2x2 model of test_gradcam: A = (R, G), G_k = W[k, c] / 4 everywhere, so each formula is plain arithmetic."""
    from test_gradcam import hand_model

    model, image = hand_model()
    # Class 'a': W[:, a] = (1, 0.5), so G = (0.25, 0.125) at every position; R = [[1, 2], [3, 4]], G = [[4, 3], [2, 1]].
    expected = {
        "hirescam": np.array([[0.25 + 0.5, 0.5 + 0.375], [0.75 + 0.25, 1 + 0.125]]),
        "layercam": np.array([[0.25 + 0.5, 0.5 + 0.375], [0.75 + 0.25, 1 + 0.125]]),
        # XGrad-CAM: w_k = sum_ij (A_k / sum_ij A_k) G_k = G_k, since G_k is constant and the shares sum to 1.
        "xgradcam": np.array([[0.25 + 0.5, 0.5 + 0.375], [0.75 + 0.25, 1 + 0.125]]),
    }
    for method, values in expected.items():
        explained = xconv.explain(model, image, method, target="a", score="logit")
        np.testing.assert_allclose(explained.heatmaps[0], values / values.max(), atol=1e-6, err_msg=method)
    # Grad-CAM++: alpha = g^2 / (2 g^2 + sum(A) g^3): sum(R) = sum(G) = 10.
    alpha = [0.25 ** 2 / (2 * 0.25 ** 2 + 10 * 0.25 ** 3), 0.125 ** 2 / (2 * 0.125 ** 2 + 10 * 0.125 ** 3)]
    weights = [4 * alpha[0] * 0.25, 4 * alpha[1] * 0.125]
    values = weights[0] * np.array([[1, 2], [3, 4]]) + weights[1] * np.array([[4, 3], [2, 1]])
    explained = xconv.explain(model, image, "gradcam++", target="a", score="logit")
    np.testing.assert_allclose(explained.heatmaps[0], values / values.max(), atol=1e-6)


def test_eigencam_is_the_first_principal_component(tiny, images):
    a, _, _, _ = conv3_and_scores(tiny, images)
    expected = []
    for features in a:
        flat = features.reshape(-1, features.shape[-1])
        centred = flat - flat.mean(axis=0)
        projection = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]
        if np.corrcoef(projection, flat.mean(axis=1))[0, 1] < 0:
            projection = -projection
        expected.append(projection.reshape(features.shape[:2]))
    explained = xconv.explain(tiny, images, "eigencam", layer="conv3")
    np.testing.assert_allclose(explained.heatmaps, unit(np.array(expected)), atol=1e-4)


def test_scorecam_equals_a_plain_per_channel_loop(tiny, images):
    a, _, targets, _ = conv3_and_scores(tiny, images)
    inputs = tiny.preprocess(images)
    expected = []
    for index, features in enumerate(a):
        weights = []
        for k in range(features.shape[-1]):
            mask = tf.image.resize(features[None, :, :, k:k + 1], (32, 32), method="bilinear").numpy()[0, ..., 0]
            if mask.max() == mask.min():
                weights.append(0.0)
                continue
            mask = (mask - mask.min()) / (mask.max() - mask.min())
            probabilities = tiny.keras_model(inputs[index:index + 1] * mask[None, :, :, None], training=False)
            weights.append(float(probabilities[0, targets[index]]))
        expected.append((features * np.array(weights)).sum(-1))
    explained = xconv.explain(tiny, images, "scorecam", layer="conv3", chunk=5)  # chunks that split the channels
    np.testing.assert_allclose(explained.heatmaps, unit(np.array(expected)), atol=1e-5)
    top = xconv.explain(tiny, images, "scorecam", layer="conv3", top=4)
    variance = a.reshape(len(a), -1, a.shape[-1]).var(axis=1)
    for index in range(len(a)):
        kept = np.argsort(-variance[index], kind="stable")[:4]  # Faster Score-CAM: the 4 most varied channels
        np.testing.assert_allclose(top.weights[index, kept], explained.weights[index, kept], atol=1e-6)
        assert (np.delete(top.weights[index], kept) == 0).all() and (top.weights[index, kept] > 0).all()


def test_scorecam_spends_no_pass_on_a_constant_channel(images, monkeypatch):
    """A dead channel (all zero after ReLU) masks nothing, as the authors' code skips it: weight 0, no copy."""
    import xconv_plugins.perturbation_cams as perturbation_cams

    keras_model = tiny_keras_convnet((32, 32), classes=3, seed=1)
    kernel, bias = keras_model.get_layer("conv3").get_weights()
    dead = [2, 5, 11]
    bias[dead] = -1e6
    keras_model.get_layer("conv3").set_weights([kernel, bias])
    model = TinyModel(keras_model, ["x", "y", "z"])
    masks_seen = []
    real = perturbation_cams.masked_probabilities

    def counting(model, image, baseline, chunks, target, normalize=False):
        chunks = list(chunks)
        masks_seen.append(sum(len(chunk) for chunk in chunks))
        return real(model, image, baseline, chunks, target, normalize=normalize)

    monkeypatch.setattr(perturbation_cams, "masked_probabilities", counting)
    explained = xconv.explain(model, images, "scorecam", layer="conv3")
    features = keras.Model(keras_model.inputs, keras_model.get_layer("conv3").output)(model.preprocess(images)).numpy()
    varying = features.max(axis=(1, 2)) > features.min(axis=(1, 2))  # (N, 16)
    assert not varying[:, dead].any() and varying.sum() > 2 * len(images)
    assert masks_seen == list(varying.sum(axis=1))
    assert (explained.weights[~varying] == 0).all() and (explained.weights[varying] > 0).all()


def test_ablationcam_equals_a_plain_per_channel_loop(tiny, images):
    a, _, targets, logits = conv3_and_scores(tiny, images)
    expected = []
    for index, features in enumerate(a):
        y = float(logits(features[None])[0, targets[index]])
        weights = []
        for k in range(features.shape[-1]):
            ablated = features.copy()
            ablated[..., k] = 0
            weights.append((y - float(logits(ablated[None])[0, targets[index]])) / abs(y))
        expected.append((features * np.array(weights)).sum(-1))
    explained = xconv.explain(tiny, images, "ablationcam", layer="conv3", score="logit", chunk=5)
    np.testing.assert_allclose(explained.heatmaps, unit(np.array(expected)), atol=1e-5)


def test_ablationcam_gives_each_of_two_classes_its_own_evidence(images):
    """On the log-odds of two classes y(b) = -y(a): dividing by y itself, as the paper writes it for a
    positive y, gave both classes the same weights, so the page's and the report's map for the rejected
    class was the predicted class's. With |y| each class's weights are the other's, negated."""
    model = TinyModel(tiny_keras_convnet((32, 32), classes=2, seed=3), ["a", "b"])
    first = xconv.explain(model, images, "ablationcam", target=0, layer="conv3")
    second = xconv.explain(model, images, "ablationcam", target=1, layer="conv3")
    np.testing.assert_allclose(second.weights, -first.weights, rtol=1e-4, atol=1e-6)
    assert np.abs(first.weights).max() > 0 and not np.allclose(first.heatmaps, second.heatmaps, atol=0.05)


def test_ablationcam_needs_a_layer_that_decides_alone(tiny, images):
    residual_in = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="inner")(residual_in)
    x = keras.layers.Add(name="skip")([x, residual_in])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = TinyModel(keras.Model(residual_in, keras.layers.Dense(2, activation="softmax")(x)), ["a", "b"])
    with pytest.raises(xconv.XconvError, match="'inner' does not decide the prediction alone"):
        xconv.explain(model, images, "ablationcam", layer="inner")


@pytest.mark.parametrize("flip_average", [False, True])
def test_occlusion_equals_a_plain_per_patch_loop(tiny, images, flip_average):
    """Drops on the plain network, also for a model whose predictions average the mirrored image."""
    tiny = TinyModel(tiny.keras_model, tiny.class_names)
    tiny.flip_average = flip_average
    patch, stride = 12, 10  # positions 0, 10, 20 (flush with the edge): overlaps of different depth
    probabilities = tiny.keras_model(tiny.preprocess(images), training=False).numpy()
    targets = probabilities.argmax(axis=1)
    sums, counts = np.zeros(images.shape[:3]), np.zeros((32, 32))
    for y in (0, 10, 20):
        for x in (0, 10, 20):
            occluded = images.copy()
            occluded[:, y:y + patch, x:x + patch] = 128
            seen = tiny.keras_model(tiny.preprocess(occluded), training=False).numpy()
            drop = probabilities[np.arange(3), targets] - seen[np.arange(3), targets]
            sums[:, y:y + patch, x:x + patch] += drop[:, None, None]
            counts[y:y + patch, x:x + patch] += 1
    explained = xconv.explain(tiny, images, "occlusion", target=list(targets), patch=patch, stride=stride, chunk=4)
    np.testing.assert_allclose(explained.drops, sums / counts, atol=1e-6)
    np.testing.assert_allclose(explained.heatmaps, unit(sums / counts), atol=1e-5)
    assert explained.metadata["patches"] == 9


def test_rise_is_the_probability_weighted_mean_of_its_masks(tiny, images):
    explained = xconv.explain(tiny, images[:1], "rise", masks=40, chunk=16)
    explainer = get_registry().get("explainer", "rise")(tiny, masks=40)
    masks = explainer.make_masks(0, 40)
    assert masks.shape == (40, 32, 32) and 0 <= masks.min() and masks.max() <= 1
    assert 0.3 < masks.mean() < 0.7  # cells kept with probability 0.5, smoothed
    seen = tiny.keras_model(tiny.preprocess(images[:1]) * masks[..., None], training=False).numpy()
    weights = seen[:, explained.targets[0]]
    expected = np.tensordot(weights, masks, axes=1) / (40 * 0.5)
    np.testing.assert_allclose(explained.saliency[0], expected, rtol=1e-5)


@pytest.fixture(scope="module")
def catsdogs():
    return xconv.load_model("catsdogs")


def test_integrated_gradients_are_complete(catsdogs):
    """Attributions sum to score(x) - score(baseline): within 2 % at the default 64 steps on photos (bundled
    model, two photos, three baselines), or 0.02 where the difference is below 1: the quadrature error
    follows the path's curvature, not the endpoints' difference (Chelsea against her blurred copy: -0.33,
    missed by 0.017). On a noise image the path is rougher (gray baseline: 25 % off at 64 steps) and the sum
    converges with more steps (1 % at 512): checked on that hardest baseline only (512 steps cost 60 % of
    this test when run on all three)."""
    from skimage import data

    from xconv.demo import chelsea
    from xconv.images import resize

    photos = np.stack([resize(chelsea(), catsdogs.input_size), resize(data.coffee(), catsdogs.input_size)])
    noise = random_images(1, catsdogs.input_size, seed=3)
    cases = [("black", photos, 64), ("gray", photos, 64), ("blurred", photos, 64), ("gray", noise, 512)]
    for baseline, images, steps in cases:
        explained = xconv.explain(catsdogs, images, "integrated-gradients", baseline=baseline, target="cat",
                                  steps=steps)
        totals = explained.attributions.sum(axis=(1, 2, 3))
        delta = np.array(explained.metadata["score_delta"])
        assert np.all(np.abs(totals - delta) <= 0.02 * np.maximum(np.abs(delta), 1)), (baseline, steps, totals, delta)


def test_saliency_is_the_largest_absolute_gradient(tiny, images):
    inputs = tf.constant(tiny.preprocess(images))
    _, _, targets, _ = conv3_and_scores(tiny, images)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        logits = tiny.feature_model([])(inputs)[0]
        score = tf.reduce_sum(tf.gather(logits, targets, axis=1, batch_dims=1))
    gradients = tape.gradient(score, inputs).numpy()
    explained = xconv.explain(tiny, images, "saliency", score="logit")
    np.testing.assert_allclose(explained.attributions, gradients, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(explained.heatmaps, unit(np.abs(gradients).max(-1)), atol=1e-5)
    smooth = xconv.explain(tiny, images, "smoothgrad", score="logit", samples=1, noise=0.0)
    np.testing.assert_allclose(smooth.heatmaps, explained.heatmaps, atol=1e-5)


def guided_gradient_by_hand(keras_model, inputs, target, cap=None):
    """The tiny convnet's forward pass written out with tf.nn, each ReLU with the guided rule as its own
    gradient, (0 < z [< cap]) * (g > 0) * g: no gate layers, no xconv."""
    @tf.custom_gradient
    def guided_relu(z):
        y = tf.nn.relu(z) if cap is None else tf.clip_by_value(z, 0.0, cap)
        open_ = (z > 0) if cap is None else tf.logical_and(z > 0, z < cap)

        def backward(g):
            return g * tf.cast(tf.logical_and(open_, g > 0), g.dtype)

        return y, backward

    def conv(x, name):
        kernel, bias = keras_model.get_layer(name).get_weights()
        return guided_relu(tf.nn.conv2d(x, kernel, 1, "SAME") + bias)

    with tf.GradientTape() as tape:
        tape.watch(inputs)
        x = inputs / 255.0
        x = tf.nn.max_pool2d(conv(x, "conv1"), 2, 2, "VALID")
        x = tf.nn.max_pool2d(conv(x, "conv2"), 2, 2, "VALID")
        pooled = tf.reduce_mean(conv(x, "conv3"), axis=(1, 2))
        kernel, bias = keras_model.get_layer("predictions").get_weights()
        score = tf.reduce_sum((tf.matmul(pooled, kernel) + bias)[:, target])
    return tape.gradient(score, inputs).numpy()


def test_guided_backprop_gates_capped_relus(images):
    """ReLU6 (MobileNet's) is gated too, with its cap's own gate, instead of quietly giving the plain gradient."""
    keras_model = tiny_keras_convnet((32, 32), classes=3, seed=1)
    def relu6(layer):
        config = layer.get_config()
        return layer.__class__.from_config({**config, "activation": "relu6"} if "activation" in config and
                                           isinstance(layer, keras.layers.Conv2D) else config)

    capped = keras.models.clone_model(keras_model, clone_function=relu6)
    weights = keras_model.get_weights()
    weights[0] = weights[0] * 30  # conv1's kernel: strong enough that some units pass the cap
    capped.set_weights(weights)
    model = TinyModel(capped, ["x", "y", "z"])
    inputs = tf.constant(model.preprocess(images))
    conv1 = keras.Model(capped.inputs, capped.get_layer("conv1").output)(inputs).numpy()
    assert (conv1 >= 6).mean() > 0.05 and ((conv1 > 0) & (conv1 < 6)).mean() > 0.05
    explained = xconv.explain(model, images, "guided-backprop", target=0, score="logit")
    np.testing.assert_allclose(explained.attributions, guided_gradient_by_hand(capped, inputs, 0, cap=6.0),
                               rtol=1e-4, atol=1e-9)


def test_guided_backprop_gates_negative_gradients_in_a_copy_only(tiny, images):
    inputs = tf.constant(tiny.preprocess(images))

    def plain_gradient():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            score = tf.reduce_sum(tiny.keras_model(inputs, training=False)[:, 0])
        return tape.gradient(score, inputs).numpy()

    before = plain_gradient()
    guided = xconv.explain(tiny, images, "guided-backprop", target=0, score="logit")
    np.testing.assert_array_equal(plain_gradient(), before)  # the user's model is untouched
    plain = xconv.explain(tiny, images, "saliency", target=0, score="logit")
    assert not np.allclose(guided.attributions, plain.attributions)
    np.testing.assert_allclose(guided.attributions, guided_gradient_by_hand(tiny.keras_model, inputs, 0),
                               rtol=1e-4, atol=1e-9)
    # On a network without ReLUs the guided gradient is the plain one: a warning says so.
    from test_gradcam import hand_model

    linear, image = hand_model()
    with pytest.warns(xconv.XconvWarning, match="has none"):
        guided_linear = xconv.explain(linear, image, "guided-backprop", target="a")
    np.testing.assert_allclose(guided_linear.attributions,
                               xconv.explain(linear, image, "saliency", target="a").attributions, atol=1e-7)
    combined = xconv.explain(tiny, images, "guided-gradcam", target=0, score="logit", layer="conv3")
    cam = tf.image.resize(combined.gradcam[..., None], (32, 32), method="bilinear").numpy()
    np.testing.assert_allclose(combined.attributions, guided.attributions * cam, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_batch_equals_one_by_one(tiny, images, method):
    options = QUICK.get(method, {})
    together = xconv.explain(tiny, images, method, target=["y", "z", 0], **options)
    for index in range(len(images)):
        alone = xconv.explain(tiny, images[index:index + 1], method, target=together.targets[index], **options)
        tolerance = 2e-5
        if method == "occlusion":
            # The map is each drop over the largest: float32 round-off in the probabilities (which differs
            # with the batch's size under oneDNN) grows by 1 / the largest drop, 3,000x on this random net.
            drops = together.arrays["drops"][index]
            np.testing.assert_allclose(drops, alone.arrays["drops"][0], atol=1e-6)
            tolerance = max(tolerance, 1e-6 / max(drops.max(), 1e-12))  # the map divides by the largest gain
        np.testing.assert_allclose(together.heatmaps[index], alone.heatmaps[0], atol=tolerance, err_msg=method)


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_never_nan_on_a_constant_image_and_a_dead_model(method):
    keras_model = tiny_keras_convnet((32, 32), classes=2, seed=3)
    keras_model.get_layer("predictions").set_weights([np.zeros((16, 2), np.float32), np.zeros(2, np.float32)])
    model = TinyModel(keras_model, ["a", "b"])
    for image in (np.full((1, 32, 32, 3), 128, np.uint8), random_images(1, (32, 32), seed=2)):
        heatmaps = xconv.explain(model, image, method, **QUICK.get(method, {})).heatmaps
        assert heatmaps.dtype == np.float32 and np.isfinite(heatmaps).all()
        assert heatmaps.min() >= 0 and heatmaps.max() <= 1


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_every_method_works_on_nested_transfer_models(method):
    _, _, sequential, functional = nested_models()
    for keras_model in (sequential, functional):
        model = TinyModel(keras_model, ["cat", "dog"])
        explained = xconv.explain(model, random_images(2, (32, 32), seed=5), method, target="dog",
                                  **QUICK.get(method, {}))
        assert explained.targets == [1, 1] and np.isfinite(explained.heatmaps).all()
        if explained.layer is not None:
            assert explained.layer == "backbone/conv3"


@pytest.fixture(scope="module")
def pooled_base_and_flat():
    """keras.applications' pooling="avg" shape: the base pools its own output, so the CAM layer lies inside
    it and is not its output; and the same network with the same weights, flat."""
    base = tiny_keras_convnet((32, 32), classes=3, seed=4)
    pooled = keras.Model(base.inputs, keras.layers.GlobalAveragePooling2D(name="pool")(base.get_layer("conv3").output),
                         name="backbone")
    head = keras.layers.Dense(2, activation="softmax", name="head")
    inputs = keras.Input((32, 32, 3))
    nested = TinyModel(keras.Model(inputs, head(pooled(inputs))), ["cat", "dog"])
    flat = TinyModel(keras.Model(base.inputs, head(pooled.get_layer("pool").output)), ["cat", "dog"])
    return nested, flat


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_a_base_that_pools_its_output_gives_the_flat_models_maps(pooled_base_and_flat, method):
    nested, flat = pooled_base_and_flat
    images = random_images(2, (32, 32), seed=5)
    inside = xconv.explain(nested, images, method, target="dog", **QUICK.get(method, {}))
    alone = xconv.explain(flat, images, method, target="dog", **QUICK.get(method, {}))
    assert inside.layer in (None, "backbone/conv3")
    np.testing.assert_allclose(inside.heatmaps, alone.heatmaps, atol=1e-5)


def test_cli_compares_methods_side_by_side(model_file, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from xconv.cli import build_app

    photo = tmp_path / "photo.png"
    Image.fromarray(random_images(1, (40, 48), seed=8)[0]).save(photo)
    app, runner = build_app(), CliRunner()

    def run(*args):
        return runner.invoke(app, [str(a) for a in args])

    result = run("explain", photo, "--model", model_file, "--method", "gradcam,saliency,occlusion", "--target", "dog",
                 "-O", "method.score=logit", "-O", "occlusion.patch=8", "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    [figure] = (tmp_path / "a").glob("*.png")
    assert figure.name == "photo_compare_dog.png"
    picture = xconv.load_image(figure)
    assert picture.shape[0] == 224 + 26 and picture.shape[1] > 4 * 224  # the photo and three maps in a row
    result = run("explain", photo, "--model", model_file, "--method", "gradcam,layercam", "--target", "dog",
                 "--layer", "conv2", "--out", tmp_path / "a")  # another layer: it replaced the default's figure
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "a").glob("*.png")) == ["photo_compare_conv2_dog.png",
                                                                      "photo_compare_dog.png"]
    strip = tmp_path / "strip.png"  # 1 x 4000: at the tile height, 896,000 px wide, more than a PNG holds
    Image.fromarray(np.full((1, 4000, 3), 90, np.uint8)).save(strip)
    result = run("explain", strip, photo, "--model", model_file, "--method", "gradcam,saliency", "--out", tmp_path / "c")
    assert result.exit_code == 0 and len(list((tmp_path / "c").glob("*_compare_*.png"))) == 2, result.output
    assert xconv.load_image(next((tmp_path / "c").glob("000_strip_*.png"))).shape[1] <= 3 * 4 * 224 + 2 * 6
    result = run("explain", photo, "--model", model_file, "--method", "gradcam,saliency", "--renderer", "overlay",
                 "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "b").glob("*.png"))
    assert len(written) == 2 and written[0].startswith("photo_gradcam_") and written[1].startswith("photo_saliency_")
    for args, needle in [
        (["--method", "gradcam,filters"], "only heatmap methods can be compared"),
        (["--method", "saliency", "--layer", "conv3"], "takes no layer"),
        (["--method", "gradcam,saliency", "-O", "occlusion.patch=8"], "the scope must be one of"),
        (["--method", "gradcam,saliency", "-O", "method.patch=8"], "no option 'patch'"),
        (["-O", "score=logit", "-O", "score=contrast"], "-O score given twice, as 'logit' and 'contrast'; give it once"),
    ]:
        result = run("explain", photo, "--model", model_file, "--out", tmp_path / "c", *args)
        assert result.exit_code == 1 and needle in result.output, (args, result.output)


def test_activations_and_filters_refuse_a_layer_without_spatial_output(tiny, images):
    """Before, a dense layer got through and failed in the grid renderer or the traced ascent step."""
    for layer in ("gap", "predictions"):
        with pytest.raises(xconv.XconvError, match=f"activations needs .*{layer!r} has none"):
            xconv.explain(tiny, images, "activations", layer=layer)
        with pytest.raises(xconv.XconvError, match=f"filters needs .*{layer!r} has none"):
            xconv.explain(tiny, None, "filters", layer=layer)
    with pytest.raises(xconv.XconvError, match="filters needs .*'rescale' \\(Rescaling\\) is the input itself"):
        xconv.explain(tiny, None, "filters", layer="rescale")


@pytest.mark.parametrize("method", [name for name in IMAGE_METHODS
                                    if issubclass(get_registry().get("explainer", name), xconv.CAMExplainer)])
def test_cam_methods_refuse_a_layer_without_spatial_output(tiny, images, method):
    """A dense or pooled layer is one line naming the problem, not a TensorFlow shape error from the graph;
    so is the input's own rescaling (Grad-CAM's gradient there was None: a line of TensorFlow internals)."""
    for layer in ("gap", "predictions"):
        with pytest.raises(xconv.XconvError, match=f"{layer!r} has none"):
            xconv.explain(tiny, images, method, layer=layer)
    with pytest.raises(xconv.XconvError, match="'rescale' \\(Rescaling\\) is the input itself"):
        xconv.explain(tiny, images, method, layer="rescale")


@pytest.mark.parametrize("activation", ["sigmoid", None])
def test_a_sequential_file_ending_in_one_unit_is_a_two_class_model(tmp_path, activation):
    """Keras's cats-vs-dogs layouts (a Sequential ending in Dense(1, sigmoid), or in Dense(1) trained on
    logits), saved and loaded as a user's file: two classes (1 - p, p), scores on the log-odds, every
    method family runs (Ablation-CAM once failed on any loaded Sequential: its layers' first call node is
    not the model's graph)."""
    from keras import layers

    keras.utils.set_random_seed(4)
    network = keras.Sequential([keras.Input((32, 32, 3)), layers.Rescaling(1 / 255.0),
                                layers.Conv2D(8, 3, activation="relu", name="conv1"), layers.MaxPooling2D(),
                                layers.Conv2D(8, 3, activation="relu", name="conv2"),
                                layers.GlobalAveragePooling2D(), layers.Dense(1, activation=activation, name="out")])
    network.save(tmp_path / "binary.keras")
    model = xconv.load_model(tmp_path / "binary.keras")

    def probability(batch):
        output = np.asarray(network(batch.astype("float32")))[:, 0]
        return output if activation else 1 / (1 + np.exp(-output))

    images = random_images(2, (32, 32), seed=8)
    p = probability(images)
    assert model.class_names == ["class_0", "class_1"]
    np.testing.assert_allclose(model.predict(images), np.stack([1 - p, p], axis=1), atol=1e-6)
    explained = xconv.explain(model, images, "integrated-gradients", target=[1, 0], steps=8)
    q = float(probability(np.zeros((1, 32, 32, 3)))[0])  # the black baseline
    log_odds = np.log(p / (1 - p)) - np.log(q / (1 - q))  # class 1's score; class 0's is its negative
    np.testing.assert_allclose(explained.metadata["score_delta"], log_odds * np.array([1, -1]), rtol=1e-4, atol=1e-5)
    for method in ("gradcam", "ablationcam", "scorecam", "occlusion", "guided-backprop"):
        for target in (0, 1):
            heatmaps = xconv.explain(model, images, method, target=target, **QUICK.get(method, {})).heatmaps
            assert heatmaps.shape[0] == 2 and np.isfinite(heatmaps).all(), (method, target)
    with pytest.raises(xconv.XconvError, match="out of range"):
        xconv.explain(model, images, target=2)
    with pytest.raises(xconv.XconvError, match="1 class names for a model with 2 classes .its one output unit"):
        xconv.Model(network, ["dog"])  # was an IndexError at the first explanation
    inputs = keras.Input((32, 32, 3))
    pooled = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3)(inputs))
    keras.Model(inputs, [layers.Dense(2, activation="softmax")(pooled), layers.Dense(3)(pooled)]).save(tmp_path / "two.keras")
    with pytest.raises(xconv.XconvError, match="one input and one output; this model has 1 inputs and 2 outputs"):
        xconv.load_model(tmp_path / "two.keras")  # was an internal error at the first prediction


def test_filter_ascent_stops_between_steps_once_its_caller_abandons_it(tiny):
    from xconv.cancel import Cancelled, cancellable

    with cancellable(lambda: True), pytest.raises(Cancelled):
        xconv.explain(tiny, None, "filters", layer="conv1", filters="0-1", steps=3)
    assert xconv.explain(tiny, None, "filters", layer="conv1", filters="0-1", steps=3).arrays["patterns"].shape[0] == 2


def test_a_model_ending_in_a_softmax_layer_is_explained_on_its_logits(images):
    """TensorFlow's tutorials end a classifier in ``layers.Softmax()``, which has no ``activation``
    attribute: such a model was explained on its probabilities, a saturating score. Its logits and maps now
    equal those of the same network with the softmax inside its last Dense."""
    from keras import layers

    def network(*last):
        keras.utils.set_random_seed(5)
        return keras.Sequential([keras.Input((32, 32, 3)), layers.Rescaling(1 / 255.0),
                                 layers.Conv2D(8, 3, activation="relu", name="conv1"),
                                 layers.GlobalAveragePooling2D(), *last])

    separate = network(layers.Dense(3, name="out"), layers.Softmax())
    inside = network(layers.Dense(3, activation="softmax", name="out"))
    inside.set_weights(separate.get_weights())
    models = [TinyModel(keras_model, ["x", "y", "z"]) for keras_model in (separate, inside)]
    logits = [np.asarray(model.feature_model([])(images.astype("float32"))[0]) for model in models]
    np.testing.assert_allclose(logits[0], logits[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits[0].sum(axis=1), 1.0)  # not the probabilities
    maps = [xconv.explain(model, images, "gradcam", target=2, layer="conv1").heatmaps for model in models]
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-5)


def test_a_cam_subclass_with_other_options_gets_its_own_compiled_step(tiny, images):
    """The compiled step was cached per method and layer only, and captured the explainer that built it:
    a second explainer of the same class with another option value silently got the first one's maps."""
    import tensorflow as tf

    class PowerCAM(xconv.CAMExplainer):
        name = "power-cam-test"
        options = (xconv.Option("power", float, 1.0, "exponent of the positive gradients"),)

        def channel_weights(self, features, gradients):
            return tf.reduce_mean(tf.nn.relu(gradients) ** self.power, axis=(1, 2))

    linear = PowerCAM(tiny, "conv3", power=1.0).explain(images)
    cubed = PowerCAM(tiny, "conv3", power=3.0).explain(images)
    again = PowerCAM(tiny, "conv3", power=1.0, batch_size=2).explain(images)
    assert not np.allclose(linear.heatmaps, cubed.heatmaps, atol=1e-3)
    np.testing.assert_allclose(again.heatmaps, linear.heatmaps, atol=1e-6)


@pytest.mark.parametrize("method, options", [("rise", {"masks": 64}), ("occlusion", {}), ("scorecam", {}),
                                             ("ablationcam", {}), ("smoothgrad", {}),
                                             ("integrated-gradients", {})])
def test_long_methods_stop_between_chunks_once_their_caller_abandons_them(tiny, images, method, options):
    """The web page aborts a request when the user picks another method: a RISE call nobody waits for
    kept the model thread busy for half a minute before the method picked next could start."""
    from xconv.cancel import Cancelled, cancellable

    calls = []

    def abandoned():
        calls.append(1)
        return True

    with cancellable(abandoned), pytest.raises(Cancelled):
        xconv.explain(tiny, images[:1], method, **options)
    assert len(calls) == 1  # stopped at the first check, before any chunk ran
    assert xconv.explain(tiny, images[:1], method, **options).heatmaps.shape[0] == 1  # nothing left set
