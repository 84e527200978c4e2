"""Filter patterns: the input each filter responds to most, by gradient ascent in input space.

All requested filters are optimized together, one batch element per filter, in one compiled step.
Images are parameterized as in Lucid (Olah et al. 2017): a Fourier spectrum scaled by 1/frequency
(so steps favour smooth structure over high-frequency noise), decorrelated colors and a sigmoid to
stay in the valid pixel range. The start is a gray image with small noise. Each step can jitter the
image by a random translation (``jitter`` pixels, off by default), so patterns cannot exploit one pixel
alignment, and ascends the filter's mean activation (borders excluded) with Adam. A filter with no
gradient on its start restarts in place from stronger noise. The network runs with its batch norms
folded into the convolutions (the same function, one less pass per feature map). A plain pixel
parameterization (``parameterization="pixels"``) is available for comparison.
"""

from __future__ import annotations

import re

import numpy as np

import xconv

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
                indices.extend(range(low, high + 1))
    else:
        indices = [int(spec)] if isinstance(spec, (int, np.integer)) else [int(i) for i in spec]
    bad = [i for i in indices if not 0 <= i < channels]
    if bad or not indices:
        raise xconv.XconvError(f"filters {bad or spec} out of range: the layer has {channels} filters (0-{channels - 1})")
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
    description = "filter patterns by batched gradient ascent (Fourier parameterization)"
    kind = "patterns"
    needs_images = False
    options = (
        xconv.Option("filters", filter_spec, None, "which filters (default: the first 16)"),
        xconv.Option("steps", int, 30, "gradient-ascent steps"),
        xconv.Option("step_size", float, 0.5, "Adam step size"),
        xconv.Option("size", int, None, "pattern size in pixels (default: the model's input size)"),
        xconv.Option("jitter", int, 0, "random translation per step, in pixels"),
        xconv.Option("seed", int, 0, "random seed of the starting noise"),
        xconv.Option("chunk", int, 64, "filters optimized together in one batch"),
        xconv.Option("jit_compile", bool, False, "compile the step with XLA"),
        xconv.Option("noise", float, 0.01, "spread of the starting noise"),
        xconv.Option("parameterization", str, "fourier", "image parameterization", choices=("fourier", "pixels")),
    )

    def __init__(self, model, layer=None, **options):
        super().__init__(model, layer=model.layer_path(layer), **options)
        filters, steps, size = self.filters, self.steps, self.size
        if steps < 1 or (size is not None and size < 16):
            raise xconv.XconvError("filters: steps must be at least 1 and size at least 16 pixels")
        self.size = int(size) if size else model.input_size[0]
        if self.size is None:
            raise xconv.XconvError(f"{model.display_name} takes any input size: give the pattern size with --size")
        spatial = None if self.size == model.input_size[0] == model.input_size[1] else (self.size, self.size)
        self.feature_model = model.feature_model([self.layer], head=False, spatial_size=spatial,
                                                 fold_batch_norms=True)
        channels = int(self.feature_model.outputs[0].shape[-1])
        self.filters = parse_filters(filters, channels)
        # Jitter is off by default: over a short run of 30 steps it cost InceptionV3 patterns more than
        # half their activation (benchmarks/filters.py), while the Fourier basis already keeps them smooth.
        self.scale, self.offset = xconv.preprocessing.preprocess_affine(model.preprocess, model.display_name)

    def functions(self):
        """(render, ascend, filter_means, channel_means), compiled once per model and setting (cached)."""
        key = ("filters", self.layer, self.size, self.jitter, self.step_size, self.seed, self.jit_compile,
               self.parameterization)
        return self.model.cached(key, self._build_functions)

    def _build_functions(self):
        import tensorflow as tf

        size, jitter = self.size, self.jitter
        weights = tf.constant(spectrum_scale(size, size)[None, None])
        color = tf.constant(COLOR_CORRELATION_SQRT)
        scale, offset = tf.constant(self.scale), tf.constant(self.offset)
        feature_model = self.feature_model

        def render_pixels(pixels):
            return tf.clip_by_value(pixels, 0.0, 255.0)

        def render_fourier(spectrum):
            """Spectrum (F, 2, 3, H, W//2+1), real and imaginary parts -> pixels in [0, 255], (F, H, W, 3)."""
            complex_spectrum = tf.complex(spectrum[:, 0] * weights, spectrum[:, 1] * weights)
            image = tf.signal.irfft2d(complex_spectrum, fft_length=[size, size]) / 4.0
            image = tf.einsum("fchw,dc->fhwd", image, color)
            return tf.sigmoid(image) * 255.0

        render = render_fourier if self.parameterization == "fourier" else render_pixels

        def channel_means(pixels):
            """Each channel's mean activation, borders excluded: (N, C)."""
            activations = feature_model(pixels * scale + offset, training=False)
            border = 2 if min(activations.shape[1], activations.shape[2]) > 6 else 0
            inner = activations[:, border:activations.shape[1] - border, border:activations.shape[2] - border]
            return tf.reduce_mean(inner, axis=(1, 2))

        def filter_means(pixels, filters):
            return tf.gather(channel_means(pixels), filters, axis=1, batch_dims=1)

        seed = tf.constant(self.seed, tf.int32)
        step_size = self.step_size * (1.0 if self.parameterization == "fourier" else PIXEL_STEP_SCALE)

        def ascend(spectrum, moments, filters, step):
            shift = tf.random.stateless_uniform([2], tf.stack([seed, step]), -jitter, jitter + 1, dtype=tf.int32) \
                if jitter else tf.zeros([2], tf.int32)
            with tf.GradientTape() as tape:
                tape.watch(spectrum)
                pixels = tf.roll(render(spectrum), shift, axis=[1, 2])
                # Each batch element scores only its own filter, so one gradient serves all filters.
                objective = tf.reduce_sum(filter_means(pixels, filters))
            gradient = tape.gradient(objective, spectrum)
            first, second = moments
            first = ADAM_BETA1 * first + (1 - ADAM_BETA1) * gradient
            second = 0.999 * second + 0.001 * tf.square(gradient)
            count = tf.cast(step, tf.float32)
            update = (first / (1 - ADAM_BETA1 ** count)) / (tf.sqrt(second / (1 - 0.999 ** count)) + 1e-8)
            moving = tf.reduce_any(tf.not_equal(gradient, 0.0), axis=tf.range(1, tf.rank(gradient)))
            return spectrum + step_size * update, (first, second), moving

        return (
            tf.function(render, jit_compile=self.jit_compile),
            tf.function(ascend, jit_compile=self.jit_compile),
            tf.function(filter_means, reduce_retracing=True),
            tf.function(channel_means, reduce_retracing=True),
        )

    def starting_values(self, filters: list[int], noise: float, attempt: int = 0) -> np.ndarray:
        """Gray plus noise, one draw per filter index so a start does not depend on its batch companions."""
        if self.parameterization == "fourier":
            shape, center, spread = (2, 3, self.size, self.size // 2 + 1), 0.0, noise
        else:  # pixels: gray 128 with noise of the same relative size
            shape, center, spread = (self.size, self.size, 3), 128.0, noise * 255
        return np.stack([
            center + np.random.default_rng([self.seed, f, attempt]).normal(0, spread, shape).astype(np.float32)
            for f in filters
        ])

    def optimize(self, filters: list[int]) -> np.ndarray:
        """Gradient ascent for one chunk of filters; returns uint8 patterns (F, H, W, 3).

        A filter with no gradient at all (a ReLU off everywhere on the start image) cannot move; after the
        first steps such a filter restarts in place, in the same batch, from much stronger noise, which
        often switches it on somewhere. The batch keeps its size, so this costs no extra pass.
        """
        import tensorflow as tf

        render, ascend, _, _ = self.functions()
        value = tf.constant(self.starting_values(filters, self.noise))
        moments = (tf.zeros_like(value), tf.zeros_like(value))
        targets = tf.constant(filters, tf.int32)
        for step in range(1, self.steps + 1):
            value, moments, moving = ascend(value, moments, targets, tf.constant(step))
            if step in RESTART_STEPS and step < self.steps:
                value, moments = self.restart_stuck(value, moments, filters, moving.numpy(), step)
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

    def scores(self, patterns: np.ndarray, filters: list[int]) -> np.ndarray:
        """Each filter's mean activation (borders excluded) on its own uint8 pattern."""
        import tensorflow as tf

        _, _, filter_means, _ = self.functions()
        starts = range(0, len(filters), self.chunk)
        return np.concatenate([
            filter_means(tf.constant(patterns[i:i + self.chunk], tf.float32),
                         tf.constant(filters[i:i + self.chunk], tf.int32)).numpy()
            for i in starts
        ])

    def gray_scores(self) -> np.ndarray:
        """Each filter's mean activation on a plain gray image (all filters from one image)."""
        import tensorflow as tf

        _, _, _, channel_means = self.functions()
        gray = tf.fill((1, self.size, self.size, 3), 128.0)
        return channel_means(gray).numpy()[0, self.filters]

    def explain(self, images=None, targets=None):
        starts = range(0, len(self.filters), self.chunk)
        patterns = np.concatenate([self.optimize(self.filters[i:i + self.chunk]) for i in starts])
        scores = self.scores(patterns, self.filters)
        gray_scores = self.gray_scores()
        return xconv.Explanation(
            method=self.name, kind=self.kind, model_name=self.model.display_name,
            arrays={"patterns": patterns, "scores": scores.astype(np.float32)}, layer=self.layer,
            metadata={"filters": self.filters, "gray_scores": gray_scores.tolist(), "steps": self.steps,
                      "step_size": self.step_size, "size": self.size, "jitter": self.jitter},
        )


@xconv.hookimpl
def xconv_register_explainers(register):
    register(FilterPatterns)
