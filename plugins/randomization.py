"""Model-randomization sanity check (Adebayo et al. 2018): do the maps depend on what the model learned?

The model's weighted layers are re-initialized cumulatively from the top down (the output layer first),
by their own initializers with fixed seeds, on a copy: the user's model is never touched and a run
repeats exactly. After each step the method's maps are recomputed for the
same images and targets and compared with the original maps: Spearman rank correlation (the value
reported, after the last step, in ``curves`` after every step) and SSIM (``randomization-ssim``, after
every step in ``extra_curves``). Where a map is constant (a randomized model's Grad-CAM can be zero
everywhere) the rank correlation is undefined: NaN, left out of the mean, while SSIM still counts it, so the
two rows may cover different numbers of images (the table's ``images``). A
faithful method's maps must change, so lower is better; a method whose maps stay the same while the
model turns random is describing the image, not the model. One draw of the new weights can land far
from another (Grad-CAM on the bundled model: 0.30 with one seed, 0.09 with the next two), so ``draws``
averages several independent draws.
"""

from __future__ import annotations

import copy
import warnings
import zlib

import numpy as np

import xconv
from xconv.faithfulness import maps_at_input_size


def rank_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman correlation of two maps, tied values sharing their mean rank as in Spearman's definition
    (and scipy's ``spearmanr``, which Adebayo et al. used). NaN when either map is constant. Ties matter:
    a randomized model's Grad-CAM is zero on a third of the image, and ranking those zeros by position,
    the same order in both maps, adds correlation that no map value supports."""
    from scipy.stats import rankdata

    if first.std() == 0 or second.std() == 0:
        return float("nan")
    return float(np.corrcoef(rankdata(first, axis=None), rankdata(second, axis=None))[0, 1])


def structural_similarity(first: np.ndarray, second: np.ndarray) -> float:
    from skimage.metrics import structural_similarity as ssim

    side = min(7, *first.shape)
    return float(ssim(first, second, data_range=1.0, win_size=side if side % 2 else side - 1))  # odd, as skimage wants


def seeded_clone(keras_model, seed: int):
    """A freshly initialized copy of the architecture in which every random initializer has its own fixed
    seed (from ``seed``, the layer and the weight), so the re-initialized weights are the layers' real
    initial distributions and the same in every run, without touching Keras's global seed. Nested models
    are cloned the same way."""
    import keras

    def clone(layer):
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=clone)
        config = layer.get_config()
        for key, value in config.items():
            if key.endswith("_initializer") and isinstance(value, dict) and "seed" in value.get("config", {}):
                value["config"]["seed"] = zlib.crc32(f"{seed}/{layer.name}/{key}".encode())
        return layer.__class__.from_config(config)

    return keras.models.clone_model(keras_model, clone_function=clone)


def weighted_layers(keras_model) -> list:
    """Layers that own weights, in network order (nested models descended)."""
    return [info.layer for info in xconv.layers.iter_layers(keras_model)
            if info.layer.weights and not xconv.layers.is_container(info.layer)]


class Randomization(xconv.Metric):
    name = "randomization"
    description = "rank correlation with the maps of a top-down randomized copy (Adebayo et al. 2018); lower is better"
    higher_is_better = False
    curve_labels = ("weighted layers randomized, from the output down", "rank correlation with the original")
    extra_curve_labels = {"randomization-ssim": "SSIM with the original"}
    options = (
        xconv.Option("layers", int, 5, "weighted layers randomized, one more per step, from the output down",
                     minimum=1),
        xconv.Option("seed", int, 0, "random seed of the new weights"),
        xconv.Option("draws", int, 1, "independent draws of the new weights (seeds seed, seed+1, ...), averaged",
                     minimum=1),
    )

    def __init__(self, model, **options):
        super().__init__(model, **options)
        self._randomized: dict[int, list] = {}

    def randomized_models(self, draw: int = 0) -> list:
        """(layer name, model) with the top 1, 2, ... ``layers`` weighted layers re-initialized by draw
        ``draw``: one copy per step, built once per metric, so every batch and method reuses their compiled
        functions (``draws`` x ``layers`` copies of the model in memory)."""
        if draw not in self._randomized:
            self._randomized[draw] = list(self._build_randomized(self.seed + draw))
        return self._randomized[draw]

    def _build_randomized(self, seed: int):
        import keras

        original = self.model.keras_model
        fresh = seeded_clone(original, seed)  # new layers, initialized as the architecture says
        pairs = list(zip(weighted_layers(original), weighted_layers(fresh)))[::-1][:self.layers]
        new_weights = {id(layer): source.get_weights() for layer, source in pairs}
        for step in range(1, len(pairs) + 1):
            working = keras.models.clone_model(original)
            working.set_weights(original.get_weights())
            for (layer, _), working_layer in zip(pairs[:step], weighted_layers(working)[::-1]):
                working_layer.set_weights(new_weights[id(layer)])
            model = copy.copy(self.model)
            model.__dict__.pop("_cache", None)
            model.keras_model = working
            yield pairs[step - 1][0].name, model

    def score(self, images, targets, explanation):
        values = np.full(len(images), np.nan)
        try:
            method = xconv.registry.get_registry().get("explainer", explanation.method)
        except xconv.XconvError:
            return xconv.MetricResult(values, extra={"randomization-ssim": values.copy()})  # reference rows
        size = images.shape[1:3]
        original = maps_at_input_size(explanation.heatmaps, size)
        correlations, similarities = [], []  # (draw, step, image)
        layer = explanation.layer if method.takes_layer else None
        for draw in range(self.draws):
            correlations.append([])
            similarities.append([])
            for _, model in self.randomized_models(draw):
                again = xconv.explain(model, images, explanation.method, target=list(map(int, targets)), layer=layer,
                                      **explanation.options)  # the same settings: only the model changed
                changed = maps_at_input_size(again.heatmaps, size)
                correlations[-1].append([rank_correlation(a, b) for a, b in zip(original, changed)])
                similarities[-1].append([structural_similarity(a, b) for a, b in zip(original, changed)])
        curves, ssim = (mean_over_draws(np.array(values)).T for values in (correlations, similarities))
        return xconv.MetricResult(curves[:, -1], curves, np.arange(1, curves.shape[1] + 1),
                                  extra={"randomization-ssim": ssim[:, -1]}, extra_curves={"randomization-ssim": ssim})


def mean_over_draws(values: np.ndarray) -> np.ndarray:
    """(draw, step, image) -> (step, image), ignoring draws where a map was constant (NaN); NaN if all were."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        return np.nanmean(values, axis=0)


@xconv.hookimpl
def xconv_register_metrics(register):
    register(Randomization)
