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
    """LayerInfo of the layers that own weights, in network order (nested models descended)."""
    return [info for info in xconv.layers.iter_layers(keras_model)
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
        self._copies: dict[int, tuple] = {}

    def randomized_steps(self, draw: int = 0):
        """(layer path, model) for steps 1, 2, ... ``layers``: the model with its top 1, 2, ... weighted
        layers re-initialized by draw ``draw``. One copy of the model per draw, whose weights change from
        step to step (``Model.set_layer_weights``), so a method traces its compiled functions once per draw,
        not once per step, and every batch reuses them (the docs' table, 8 methods x 7 steps on 24 photos: 144 s
        with a model per step, 121 s).
        The yielded model is only valid until the next step."""
        model, steps = self._copy(draw)
        for step, (path, _, new) in enumerate(steps):
            if step == 0:  # the copy may hold an earlier pass's last step: every other layer back to its original
                changes = {other: original for other, original, _ in steps[1:]} | {path: new}
            else:  # the layers above kept their new weights from the steps before
                changes = {path: new}
            model.set_layer_weights(changes)
            yield path, model

    def _copy(self, draw: int) -> tuple:
        """(model copy, [(layer path, original weights, new weights)] from the output down), built once."""
        if draw not in self._copies:
            import keras

            original = self.model.keras_model
            fresh = seeded_clone(original, self.seed + draw)  # new layers, initialized as the architecture says
            pairs = list(zip(weighted_layers(original), weighted_layers(fresh)))[::-1][:self.layers]
            working = keras.models.clone_model(original)
            working.set_weights(original.get_weights())
            model = copy.copy(self.model)
            for private in ("_cache", "_memos"):  # graphs and results of the user's model, not of the copy
                model.__dict__.pop(private, None)
            model.keras_model = working
            steps = [(info.path, info.layer.get_weights(), source.layer.get_weights()) for info, source in pairs]
            self._copies[draw] = (model, steps)
        return self._copies[draw]

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
            for _, model in self.randomized_steps(draw):
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
