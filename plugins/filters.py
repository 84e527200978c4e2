"""Filter patterns: the input each filter responds to most, by gradient ascent in input space.

All requested filters are optimized together, one batch element per filter (and per diverse copy),
in one compiled step. Images are parameterized as in Lucid (Olah et al. 2017): a Fourier spectrum
scaled by 1/frequency, decorrelated colors and a sigmoid to stay in the valid pixel range. Each step
moves, scales and rotates the image by a small random amount (transformation robustness, on by
default), so the ascent finds patterns the filter responds to wherever they sit, not adversarial noise
that works at one pixel alignment; every finished pattern's robustness (the activation it keeps under
such moves) is measured and returned. Adam ascends the objective: a channel's mean activation
(its 2-cell border excluded in plain ascent) or its centre neuron (the mean of the middle cells on an even side), in the positive or negative direction, with an optional
diversity term that makes several different patterns per filter. A filter with no gradient on its
start restarts in place from stronger noise. The network runs with its batch norms folded into the
convolutions (the same function, one less pass per feature map).
"""

from __future__ import annotations

import re

import numpy as np

import xconv
from xconv_plugins.pattern_transforms import ROBUSTNESS_CHECK, TransformRange, random_matrices, warp

#: Lucid's square root of the ImageNet color correlation matrix (decorrelated color space).
COLOR_CORRELATION_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
COLOR_CORRELATION_SQRT /= np.max(np.linalg.norm(COLOR_CORRELATION_SQRT, axis=0))

#: Step after which a filter with no gradient restarts in place -> its noise, as a multiple of ``noise``.
RESTART_STEPS = {1: 30, 2: 300}

#: Adam's first-moment decay. 0.5 rather than the usual 0.9: over a short ascent of 30 steps, less momentum
#: reached 15 % more activation on InceptionV3 mixed3 (0.117 against 0.101 mean activation, 16 filters).
ADAM_BETA1 = 0.5

#: In the pixel parameterization, Adam's step is step_size * this many pixel levels.
PIXEL_STEP_SCALE = 100.0

#: Random draws of ROBUSTNESS_CHECK each finished pattern is scored under.
ROBUSTNESS_DRAWS = 8


def high_frequency_share(patterns: np.ndarray, cutoff: float = 1 / 8) -> np.ndarray:
    """Each pattern's share of luminance energy (mean removed) above ``cutoff`` cycles per pixel: near 1 for
    pixel noise, low for structure a viewer can see."""
    luminance = np.asarray(patterns, np.float64) @ np.array([0.299, 0.587, 0.114])
    luminance -= luminance.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(luminance)) ** 2
    fy, fx = np.fft.fftfreq(luminance.shape[1])[:, None], np.fft.fftfreq(luminance.shape[2])[None]
    high = np.sqrt(fx * fx + fy * fy) > cutoff
    return power[:, high].sum(axis=1) / np.maximum(power.sum(axis=(1, 2)), 1e-12)


def default_transforms(size: int, map_size: int) -> TransformRange:
    """Lucid-style robustness scaled to the layer: shifts of about one feature-map cell (2 to 8 pixels,
    early layers need less), scale 0.9-1.1 and rotation up to 10 degrees."""
    stride = size / max(1, map_size)
    return TransformRange(shift=float(np.clip(round(stride), 2, 8)), scale=0.1, degrees=10.0)


def parse_filters(spec, channels: int) -> list[int]:
    """'0-15', '3,5,9', '0-3,10', 'all', an int or an iterable of ints -> sorted unique filter indices."""
    if spec is None:
        indices = list(range(min(16, channels)))
    elif isinstance(spec, str):
        if spec.strip().lower() == "all":
            indices = list(range(channels))
        else:
            indices = []
            for part in spec.split(","):
                match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
                if not match:
                    raise xconv.XconvError(f"--filters {spec!r}: use ranges and lists such as 0-15 or 1,4,9, or 'all'")
                low, high = int(match[1]), int(match[2] or match[1])
                if high < low:
                    raise xconv.XconvError(f"--filters {part.strip()!r}: a range goes from low to high, such as {high}-{low}")
                indices.extend(range(low, high + 1))
    else:
        indices = [int(spec)] if isinstance(spec, (int, np.integer)) else [int(i) for i in spec]
    bad = [i for i in indices if not 0 <= i < channels]
    if bad or not indices:
        shown = spec
        if bad:  # at most a few: "0-9999" listed them all, 58 KB on one line
            shown = "[" + ", ".join(map(str, bad[:8])) + (f", ... ({len(bad)} in all)" if len(bad) > 8 else "") + "]"
        raise xconv.XconvError(f"filters {shown} out of range: the layer has {channels} filters (0-{channels - 1})")
    return sorted(dict.fromkeys(indices))


def filter_spec(value):
    """Checks the form of a filter selection early; the indices are checked against the layer later."""
    if isinstance(value, str):
        if value.strip().lower() != "all" and not re.fullmatch(r"\s*\d+\s*(-\s*\d+\s*)?(,\s*\d+\s*(-\s*\d+\s*)?)*",
                                                                value):
            raise ValueError("use ranges and lists such as 0-15 or 1,4,9, or 'all'")
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return [int(index) for index in value]


filter_spec.type_name = "0-15|1,4,9|all"


def spectrum_scale(height: int, width: int, decay: float = 1.0) -> np.ndarray:
    """1/frequency weights of the rFFT grid, so all frequencies start with equal energy in the image."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    frequencies = np.sqrt(fx * fx + fy * fy)
    return (1.0 / np.maximum(frequencies, 1.0 / max(height, width)) ** decay * np.sqrt(height * width)).astype(np.float32)


class FilterPatterns(xconv.Explainer):
    name = "filters"
    description = "filter patterns by batched, transformation-robust gradient ascent (Fourier parameterization)"
    kind = "patterns"
    needs_images = False
    options = (
        xconv.Option("filters", filter_spec, None, "which filters (default: the first 16)"),
        xconv.Option("steps", int, 30, "gradient-ascent steps", minimum=1),
        xconv.Option("step_size", float, 0.25, "Adam step size", minimum=0.0),
        xconv.Option("size", int, None, "pattern size in pixels (default: the model's input size)", minimum=16),
        xconv.Option("robust", bool, True, "random shift, scale and rotation each step (off: plain ascent)"),
        xconv.Option("jitter", int, None, "largest random shift per step in pixels (default: from the layer's stride)"),
        xconv.Option("scale", float, None, "largest random relative scale change per step (default 0.1)"),
        xconv.Option("rotate", float, None, "largest random rotation per step in degrees (default 10)"),
        xconv.Option("objective", str, "channel", "maximize the channel's mean or its centre neuron",
                     choices=("channel", "neuron")),
        xconv.Option("sign", str, "positive", "negative: the input that drives the filter down",
                     choices=("positive", "negative")),
        xconv.Option("diversity", int, 1, "different patterns per filter (Olah et al.'s diversity term)", minimum=1),
        xconv.Option("diversity_weight", float, 2.0, "strength of the diversity term, relative to the activation"),
        xconv.Option("seed", int, 0, "random seed of the starting noise and the transforms"),
        xconv.Option("chunk", int, 64, "patterns optimized together in one batch", minimum=1),
        xconv.Option("jit_compile", bool, False, "compile the step with XLA"),
        xconv.Option("noise", float, 0.01, "spread of the starting noise", minimum=0.0),
        xconv.Option("parameterization", str, "fourier", "image parameterization", choices=("fourier", "pixels")),
    )

    def __init__(self, model, layer=None, **options):
        super().__init__(model, layer=model.layer_path(layer), **options)
        xconv.layers.spatial_layer(model.keras_model, self.layer, "filters")
        filters, size = self.filters, self.size
        self.size = int(size) if size else model.input_size[0]
        if self.size is None:
            raise xconv.XconvError(f"{model.display_name} takes any input size: give the pattern size with -O size=N")
        spatial = None if self.size == model.input_size[0] == model.input_size[1] else (self.size, self.size)
        self.filters = parse_filters(filters, self.layer_channels(spatial))
        if self.diversity == 1:
            # Only the part of the layer holding the filters is computed (one branch of an Inception block).
            self.feature_model, positions = model.channel_feature_model(self.layer, self.filters, spatial,
                                                                        fold_batch_norms=True)
        else:  # the diversity term compares Gram matrices over all of the layer's channels
            self.feature_model = model.feature_model([self.layer], head=False, spatial_size=spatial,
                                                     fold_batch_norms=True)
            positions = self.filters
        self.position = dict(zip(self.filters, positions))
        self.transforms = self.ascent_transforms(int(self.feature_model.outputs[0].shape[1] or 1))
        self.input_order, self.input_scale, self.input_offset = xconv.preprocessing.preprocess_affine(
            model.preprocess, model.display_name)

    def layer_channels(self, spatial) -> int:
        shape = xconv.layers.find_layer(self.model.keras_model, self.layer).output_shape
        if len(shape) == 4 and shape[-1]:
            return int(shape[-1])
        whole = self.model.feature_model([self.layer], head=False, spatial_size=spatial)
        return int(whole.outputs[0].shape[-1])

    def positions(self, filters) -> list[int]:
        """Filter indices -> their channel indices in ``feature_model``'s output (the compiled functions take these)."""
        return [self.position[int(f)] for f in filters]

    def ascent_transforms(self, map_size: int) -> TransformRange:
        if not self.robust:
            return TransformRange()
        default = default_transforms(self.size, map_size)
        return TransformRange(shift=default.shift if self.jitter is None else float(self.jitter),
                              scale=default.scale if self.scale is None else float(self.scale),
                              degrees=default.degrees if self.rotate is None else float(self.rotate))

    def functions(self):
        """(render, ascend, objective_values, all_objectives, moved_objectives), compiled once per model and
        setting (cached)."""
        # The feature model (cached by the model, so its id is stable) differs with the branches the filters need.
        key = ("filters", self.layer, id(self.feature_model), self.size, self.transforms, self.step_size, self.seed,
               self.jit_compile, self.parameterization, self.objective, self.sign, self.diversity, self.diversity_weight)
        return self.model.cached(key, self._build_functions)

    def _build_functions(self):
        import tensorflow as tf

        size, transforms, copies = self.size, self.transforms, self.diversity
        weights = tf.constant(spectrum_scale(size, size)[None, None])
        color = tf.constant(COLOR_CORRELATION_SQRT)
        order, scale, offset = (tf.constant(v) for v in (self.input_order, self.input_scale, self.input_offset))
        swapless = list(self.input_order) == [0, 1, 2]
        feature_model = self.feature_model
        direction = 1.0 if self.sign == "positive" else -1.0
        neuron = self.objective == "neuron"

        def render_pixels(pixels):
            return tf.clip_by_value(pixels, 0.0, 255.0)

        def render_fourier(spectrum):
            """Spectrum (F, 2, 3, H, W//2+1), real and imaginary parts -> pixels in [0, 255], (F, H, W, 3)."""
            complex_spectrum = tf.complex(spectrum[:, 0] * weights, spectrum[:, 1] * weights)
            image = tf.signal.irfft2d(complex_spectrum, fft_length=[size, size]) / 4.0
            image = tf.einsum("fchw,dc->fhwd", image, color)
            return tf.sigmoid(image) * 255.0

        render = render_fourier if self.parameterization == "fourier" else render_pixels
        project = (lambda value: value) if self.parameterization == "fourier" else render_pixels

        def activations_and_objectives(pixels):
            """Feature maps (N, h, w, C) and every channel's objective on each image (N, C)."""
            ordered = pixels if swapless else tf.gather(pixels, order, axis=-1)  # caffe's BGR
            activations = feature_model(ordered * scale + offset, training=False)
            height, width = activations.shape[1], activations.shape[2]
            if neuron:  # on an even side the centre falls between two cells: their mean (a cell off was 8 px off)
                values = tf.reduce_mean(activations[:, (height - 1) // 2:height // 2 + 1,
                                                    (width - 1) // 2:width // 2 + 1], axis=(1, 2))
            else:
                # Plain ascent leaves out a 2-cell border, whose padding effects would win; with random moves
                # and reflected borders the whole map counts, so the pattern's edges are optimized too.
                border = 2 if transforms.identity and min(height, width) > 6 else 0
                values = tf.reduce_mean(activations[:, border:height - border, border:width - border], axis=(1, 2))
            return activations, direction * values

        def activations_and_objective(pixels, filters):
            """Feature maps and each element's objective for its own filter (N,)."""
            activations, values = activations_and_objectives(pixels)
            return activations, tf.gather(values, filters, axis=1, batch_dims=1)

        def objective_values(pixels, filters):
            return activations_and_objective(pixels, filters)[1]

        def all_objectives(pixels):
            return activations_and_objectives(pixels)[1]

        def moved_objectives(pixels, filters, matrices):
            """Each pattern's objective under every move: (P, D) for P patterns and D matrices, in one graph."""
            draws = tf.shape(matrices)[0]
            copies = tf.ensure_shape(tf.repeat(pixels, draws, axis=0), [None, size, size, 3])
            moved = warp(copies, tf.tile(matrices, [tf.shape(pixels)[0], 1]))
            return tf.reshape(objective_values(moved, tf.repeat(filters, draws)), [-1, draws])

        def diversity_penalty(activations, objective):
            """Olah et al.: the mean cosine similarity of the copies' Gram matrices, per filter, weighted by
            that filter's activation so the term keeps its strength as the activation grows. The Gram
            matrices are centred (covariances): uncentred ones are dominated by the channel means the
            copies share, and left two of four filters of the bundled model's block3 without diversity."""
            channels = activations.shape[-1]
            flat = tf.reshape(activations, [tf.shape(activations)[0], -1, channels])
            flat -= tf.reduce_mean(flat, axis=1, keepdims=True)
            grams = tf.math.l2_normalize(tf.reshape(tf.matmul(flat, flat, transpose_a=True), [-1, copies, channels * channels]),
                                         axis=-1, epsilon=1e-10)
            similarity = tf.einsum("fnd,fmd->fnm", grams, grams)
            pairwise = (tf.reduce_sum(similarity, axis=(1, 2)) - tf.linalg.trace(similarity)) / (copies * (copies - 1))
            strength = tf.stop_gradient(tf.reduce_mean(tf.abs(tf.reshape(objective, [-1, copies])), axis=1))
            return tf.reduce_sum(self.diversity_weight * strength * copies * pairwise)

        seed = tf.constant(self.seed, tf.int32)
        step_size = self.step_size * (1.0 if self.parameterization == "fourier" else PIXEL_STEP_SCALE)

        def ascend(spectrum, moments, filters, step):
            with tf.GradientTape() as tape:
                tape.watch(spectrum)
                pixels = render(spectrum)
                if not transforms.identity:
                    # One draw for the whole batch, so a filter's pattern does not depend on its companions.
                    matrix = random_matrices(1, tf.stack([seed, step]), transforms, size)
                    pixels = warp(pixels, tf.tile(matrix, [tf.shape(pixels)[0], 1]))
                activations, objective = activations_and_objective(pixels, filters)
                # Each batch element scores only its own filter, so one gradient serves all filters.
                total = tf.reduce_sum(objective)
                if copies > 1:
                    total -= diversity_penalty(activations, objective)
            gradient = tape.gradient(total, spectrum)
            first, second = moments
            first = ADAM_BETA1 * first + (1 - ADAM_BETA1) * gradient
            second = 0.999 * second + 0.001 * tf.square(gradient)
            count = tf.cast(step, tf.float32)
            update = (first / (1 - ADAM_BETA1 ** count)) / (tf.sqrt(second / (1 - 0.999 ** count)) + 1e-8)
            moving = tf.reduce_any(tf.not_equal(gradient, 0.0), axis=tf.range(1, tf.rank(gradient)))
            # Pixels are kept in range: past it, clipping has no gradient and a pixel would stay there for good.
            return project(spectrum + step_size * update), (first, second), moving

        return (
            tf.function(render, jit_compile=self.jit_compile),
            tf.function(ascend, jit_compile=self.jit_compile),
            tf.function(objective_values, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32),
                                                           tf.TensorSpec([None], tf.int32)]),
            tf.function(all_objectives),
            tf.function(moved_objectives, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32),
                                                           tf.TensorSpec([None], tf.int32),
                                                           tf.TensorSpec([None, 8], tf.float32)]),
        )

    def starting_values(self, filters: list[int], noise: float, attempt: int = 0) -> np.ndarray:
        """Gray plus noise, one draw per filter and copy, so a start does not depend on its batch companions."""
        if self.parameterization == "fourier":
            shape, center, spread = (2, 3, self.size, self.size // 2 + 1), 0.0, noise
        else:  # pixels: gray 128 with noise of the same relative size
            shape, center, spread = (self.size, self.size, 3), 128.0, noise * 255
        values = np.stack([
            center + np.random.default_rng([self.seed, f, attempt, copy]).normal(0, spread, shape).astype(np.float32)
            for f in filters for copy in range(self.diversity)
        ])
        return values if self.parameterization == "fourier" else np.clip(values, 0, 255)  # none starts frozen

    def optimize(self, filters: list[int]) -> np.ndarray:
        """Gradient ascent for one chunk of filters; returns uint8 patterns (F * diversity, H, W, 3).

        A filter with no gradient at all (a ReLU off everywhere on the start image) cannot move; after the
        first steps such a filter restarts in place, in the same batch, from much stronger noise, which
        often switches it on somewhere. The batch keeps its size, so this costs no extra pass.
        """
        import tensorflow as tf

        render, ascend, *_ = self.functions()
        value = tf.constant(self.starting_values(filters, self.noise))
        moments = (tf.zeros_like(value), tf.zeros_like(value))
        targets = tf.constant(np.repeat(self.positions(filters), self.diversity), tf.int32)
        for step in range(1, self.steps + 1):
            xconv.stop_if_cancelled()  # a web page that moved on to another layer stops the ascent here
            value, moments, moving = ascend(value, moments, targets, tf.constant(step))
            if step in RESTART_STEPS and step < self.steps:
                value, moments = self.restart_stuck(value, moments, filters, moving.numpy(), step)
        dead = ~moving.numpy()
        if dead.any():  # never switched on, even from the strongest restart: gray, not the noise it last started from
            mask = tf.constant(dead.reshape((-1,) + (1,) * (len(value.shape) - 1)))
            value = tf.where(mask, tf.constant(self.starting_values(filters, 0.0)), value)
        return np.uint8(np.clip(np.round(render(value).numpy()), 0, 255))

    def restart_stuck(self, value, moments, filters, moving, step):
        import tensorflow as tf

        stuck = ~moving
        if not stuck.any():
            return value, moments
        fresh = self.starting_values(filters, self.noise * RESTART_STEPS[step], attempt=step)
        mask = tf.constant(stuck.reshape((-1,) + (1,) * (len(value.shape) - 1)))
        zero = tf.zeros_like(value)
        return tf.where(mask, fresh, value), tuple(tf.where(mask, zero, m) for m in moments)

    def scores(self, patterns: np.ndarray, filters) -> np.ndarray:
        """Each pattern's objective (its filter's mean or centre activation, negated for sign=negative)."""
        import tensorflow as tf

        _, _, objective_values, *_ = self.functions()
        filters = self.positions(filters)
        return np.concatenate([
            objective_values(tf.constant(patterns[i:i + self.chunk], tf.float32),
                             tf.constant(filters[i:i + self.chunk], tf.int32)).numpy()
            for i in range(0, len(filters), self.chunk)
        ])

    def robustness(self, patterns: np.ndarray, filters, scores: np.ndarray) -> np.ndarray:
        """The share of each pattern's objective kept under ROBUSTNESS_DRAWS small random moves (shift up to
        6 px, scale 0.92-1.08, rotation up to 8 degrees, borders reflected): the mean objective over the
        moved copies divided by the objective on the pattern. NaN where the pattern does not activate its
        filter at all. The same draws for every pattern, from a fixed seed."""
        import tensorflow as tf

        moved_objectives = self.functions()[4]
        filters = self.positions(filters)
        matrices = random_matrices(ROBUSTNESS_DRAWS, tf.constant([12345, 0]), ROBUSTNESS_CHECK, self.size)
        per_call = max(1, self.chunk // ROBUSTNESS_DRAWS)  # patterns per call: chunk moved copies in one batch
        kept = np.concatenate([
            moved_objectives(tf.constant(patterns[i:i + per_call], tf.float32),
                             tf.constant(filters[i:i + per_call], tf.int32), matrices).numpy()
            for i in range(0, len(patterns), per_call)
        ])
        kept = kept.mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(scores > 1e-6, kept / np.where(scores > 1e-6, scores, 1.0), np.nan).astype(np.float32)

    def gray_scores(self) -> np.ndarray:
        """Each filter's objective on a plain gray image (all filters from one image)."""
        import tensorflow as tf

        all_objectives = self.functions()[3]
        return all_objectives(tf.fill((1, self.size, self.size, 3), 128.0)).numpy()[0, self.positions(self.filters)]

    def explain(self, images=None, targets=None):
        per_chunk = max(1, self.chunk // self.diversity)
        patterns = np.concatenate([self.optimize(self.filters[i:i + per_chunk])
                                   for i in range(0, len(self.filters), per_chunk)])
        pattern_filters = np.repeat(self.filters, self.diversity).tolist()
        scores = self.scores(patterns, pattern_filters)
        robustness = self.robustness(patterns, pattern_filters, scores)
        gray_scores = self.gray_scores()
        if self.sign == "negative" and not (scores > 1e-6).any():
            import warnings

            warnings.warn(f"sign=negative on {self.layer}: no pattern drives a filter below 0 (a rectified layer, a "
                          "ReLU or pooling after one, is never negative), so the patterns only switch filters off "
                          "and have no robustness; to see what drives a filter negative, use the layer before its "
                          "ReLU", xconv.XconvWarning, stacklevel=2)
        return xconv.Explanation(
            method=self.name, kind=self.kind, model_name=self.model.display_name,
            arrays={"patterns": patterns, "scores": scores.astype(np.float32), "robustness": robustness},
            layer=self.layer,
            metadata={"filters": pattern_filters, "gray_scores": gray_scores.tolist(), "steps": self.steps,
                      "step_size": self.step_size, "size": self.size, "objective": self.objective,
                      "sign": self.sign, "diversity": self.diversity,
                      "transforms": {"shift": self.transforms.shift, "scale": self.transforms.scale,
                                     "degrees": self.transforms.degrees},
                      "robustness": [None if np.isnan(r) else round(float(r), 4) for r in robustness]},
        )


@xconv.hookimpl
def xconv_register_explainers(register):
    register(FilterPatterns)
