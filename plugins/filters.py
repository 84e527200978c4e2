"""Filter patterns: the input each filter responds to most, by gradient ascent in input space.

All requested filters are optimized together, one batch element per filter, in one compiled step.
Images are parameterized as in Lucid (Olah et al. 2017): a Fourier spectrum scaled by 1/frequency
(so steps favour smooth structure over high-frequency noise), decorrelated colors and a sigmoid to
stay in the valid pixel range. The start is a gray image with small noise. Each step can jitter the
image by a random translation (``jitter`` pixels, off by default), so patterns cannot exploit one pixel
alignment, and ascends the filter's mean activation (borders excluded) with Adam. A plain pixel
parameterization (``parameterization="pixels"``) is available for comparison.
"""

from __future__ import annotations

import re

import numpy as np

import xconv

#: Lucid's square root of the ImageNet color correlation matrix (decorrelated color space).
COLOR_CORRELATION_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
COLOR_CORRELATION_SQRT /= np.max(np.linalg.norm(COLOR_CORRELATION_SQRT, axis=0))

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


def spectrum_scale(height: int, width: int, decay: float = 1.0) -> np.ndarray:
    """1/frequency weights of the rFFT grid, so all frequencies start with equal energy in the image."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    frequencies = np.sqrt(fx * fx + fy * fy)
    return (1.0 / np.maximum(frequencies, 1.0 / max(height, width)) ** decay * np.sqrt(height * width)).astype(np.float32)


class FilterPatterns(xconv.Explainer):
    name = "filters"
    description = "filter patterns by batched gradient ascent (Fourier parameterization, jitter)"
    kind = "patterns"
    needs_images = False

    def __init__(self, model, layer=None, filters=None, steps: int = 30, step_size: float = 0.5,
                 size: int | None = None, jitter: int | None = None, seed: int = 0, chunk: int = 64,
                 jit_compile: bool = False, noise: float = 0.01, parameterization: str = "fourier", **options):
        super().__init__(model, layer=model.layer_path(layer), **options)
        self.size = int(size) if size else model.input_size[0]
        if self.size is None:
            raise xconv.XconvError(f"{model.display_name} takes any input size: give the pattern size with --size")
        spatial = None if self.size == model.input_size[0] == model.input_size[1] else (self.size, self.size)
        self.feature_model = model.feature_model([self.layer], head=False, spatial_size=spatial)
        channels = int(self.feature_model.outputs[0].shape[-1])
        self.filters = parse_filters(filters, channels)
        self.steps, self.step_size, self.seed, self.chunk = int(steps), float(step_size), seed, chunk
        # Jitter is off by default: over a short run of 30 steps it cost InceptionV3 patterns more than
        # half their activation (benchmarks/filters.py), while the Fourier basis already keeps them smooth.
        self.jitter = int(jitter) if jitter is not None else 0
        self.jit_compile, self.noise = jit_compile, float(noise)
        if parameterization not in ("fourier", "pixels"):
            raise xconv.UnknownNameError("parameterization", parameterization, ("fourier", "pixels"))
        self.parameterization = parameterization
        self.scale, self.offset = model.preprocess_affine()

    def functions(self):
        """(render, ascend, score), compiled once per model and setting (cached on the model)."""
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
            """Spectrum (F, 3, H, W//2+1, 2) -> pixels in [0, 255], (F, H, W, 3)."""
            complex_spectrum = tf.complex(spectrum[..., 0], spectrum[..., 1]) * tf.cast(weights, tf.complex64)
            image = tf.signal.irfft2d(complex_spectrum, fft_length=[size, size]) / 4.0
            image = tf.einsum("fchw,dc->fhwd", image, color)
            return tf.sigmoid(image) * 255.0

        render = render_fourier if self.parameterization == "fourier" else render_pixels

        def filter_means(pixels, filters):
            activations = feature_model(pixels * scale + offset, training=False)
            border = 2 if min(activations.shape[1], activations.shape[2]) > 6 else 0
            inner = activations[:, border:activations.shape[1] - border, border:activations.shape[2] - border]
            return tf.reduce_mean(tf.gather(inner, filters, axis=3, batch_dims=1), axis=(1, 2))

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
            first = 0.9 * first + 0.1 * gradient
            second = 0.999 * second + 0.001 * tf.square(gradient)
            count = tf.cast(step, tf.float32)
            update = (first / (1 - 0.9 ** count)) / (tf.sqrt(second / (1 - 0.999 ** count)) + 1e-8)
            return spectrum + step_size * update, (first, second)

        return (
            tf.function(render, jit_compile=self.jit_compile),
            tf.function(ascend, jit_compile=self.jit_compile),
            tf.function(filter_means, reduce_retracing=True),
        )

    def optimize(self, filters: list[int]) -> np.ndarray:
        """Gradient ascent for one chunk of filters; returns uint8 patterns (F, H, W, 3)."""
        import tensorflow as tf

        render, ascend, _ = self.functions()
        if self.parameterization == "fourier":
            shape, center, spread = (len(filters), 3, self.size, self.size // 2 + 1, 2), 0.0, self.noise
        else:  # pixels: gray 128 with noise of the same relative size
            shape, center, spread = (len(filters), self.size, self.size, 3), 128.0, self.noise * 255
        # One noise draw per filter index, so a filter's start does not depend on its batch companions.
        value = tf.constant(np.stack([
            center + np.random.default_rng([self.seed, f]).normal(0, spread, shape[1:]).astype(np.float32)
            for f in filters
        ]))
        moments = (tf.zeros(shape), tf.zeros(shape))
        targets = tf.constant(filters, tf.int32)
        for step in range(1, self.steps + 1):
            value, moments = ascend(value, moments, targets, tf.constant(step))
        return np.uint8(np.clip(np.round(render(value).numpy()), 0, 255))

    def retry_silent_filters(self, patterns: np.ndarray, scores: np.ndarray) -> None:
        """A filter still at zero (a ReLU that is off everywhere has no gradient) gets one restart from
        much stronger noise, which often switches it on somewhere; kept only if it scores higher."""
        silent = [i for i, score in enumerate(scores) if score <= 0][: self.chunk]
        if not silent:
            return
        quiet, self.noise = self.noise, self.noise * 30
        try:
            filters = [self.filters[i] for i in silent]
            retried = self.optimize(filters)
            retried_scores = self.scores(retried, filters)
        finally:
            self.noise = quiet
        for position, index in enumerate(silent):
            if retried_scores[position] > scores[index]:
                patterns[index], scores[index] = retried[position], retried_scores[position]

    def score_all(self, patterns: np.ndarray) -> np.ndarray:
        """Each filter's mean activation (borders excluded) on its own pattern."""
        starts = range(0, len(self.filters), self.chunk)
        return np.concatenate([self.scores(patterns[i:i + self.chunk], self.filters[i:i + self.chunk]) for i in starts])

    def scores(self, patterns: np.ndarray, filters: list[int]) -> np.ndarray:
        import tensorflow as tf

        _, _, filter_means = self.functions()
        return filter_means(tf.constant(patterns, tf.float32), tf.constant(filters, tf.int32)).numpy()

    def explain(self, images=None, targets=None):
        starts = range(0, len(self.filters), self.chunk)
        patterns = np.concatenate([self.optimize(self.filters[i:i + self.chunk]) for i in starts])
        scores = self.score_all(patterns)
        self.retry_silent_filters(patterns, scores)
        gray_scores = self.score_all(np.full_like(patterns, 128))
        return xconv.Explanation(
            method=self.name, kind=self.kind, model_name=self.model.display_name,
            arrays={"patterns": patterns, "scores": scores.astype(np.float32)}, layer=self.layer,
            metadata={"filters": self.filters, "gray_scores": gray_scores.tolist(), "steps": self.steps,
                      "step_size": self.step_size, "size": self.size, "jitter": self.jitter},
        )


@xconv.hookimpl
def xconv_register_explainers(register):
    register(FilterPatterns)
