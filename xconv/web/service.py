"""What the web page shows, computed without HTTP: predictions, heatmaps per class, activation grids and
filter patterns, for whole batches of uploads at once.

Pictures are made by the same renderer plugins the CLI uses (``overlay``, ``grid``), written into a
temporary folder that is removed before the call returns, and handed back as PNG bytes.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import xconv
from xconv.errors import UnknownNameError, XconvError
from xconv.images import resize, shrink_to_fit

#: Photos shipped with the package (scikit-image's CC0 samples), offered on the page by name only.
SAMPLES = {"chelsea": "chelsea", "coffee": "coffee", "astronaut": "astronaut"}

#: Originals are shrunk to this longest side before overlays are drawn: the page shows them small.
DISPLAY_SIZE = 448

#: Classes explained per photo when the model has more than this many (the top ones by probability).
MAX_CLASSES = 3


def sample_photo(name: str) -> np.ndarray:
    """A shipped sample by name; the name is looked up, never used as a path."""
    from skimage import data

    if name not in SAMPLES:
        raise UnknownNameError("sample", name, SAMPLES)
    return np.asarray(getattr(data, SAMPLES[name])(), np.uint8)


@dataclass(frozen=True)
class ExplainKey:
    """Requests with equal keys share one compiled call."""

    method: str = "gradcam"
    layer: str | None = None
    activation_layer: str | None = None
    grid: bool = False
    all_classes: bool = True


@dataclass
class Upload:
    """One decoded photo: at model input size, and shrunk for display."""

    image: np.ndarray
    display: np.ndarray
    name: str = "upload"


@dataclass
class ServiceStats:
    """Model calls made and photos they carried: how well concurrent requests were batched."""

    batches: int = 0
    items: int = 0
    largest_batch: int = 0


def installed_heatmap_methods() -> list[dict]:
    """Every installed method that makes heatmaps of photos (plugins included)."""
    from xconv.registry import get_registry

    registry = get_registry()
    methods = []
    for name in registry.names("explainer"):
        cls = registry.get("explainer", name)
        if cls.kind == "heatmap" and cls.needs_images:
            methods.append({"name": name, "description": cls.description, "takes_layer": cls.takes_layer})
    return methods


class ExplainService:
    """One loaded model and the work the page asks of it. Not thread-safe by itself: the app runs every
    call on one worker thread."""

    def __init__(self, model, filter_options: dict | None = None, method_options: dict[str, dict] | None = None):
        """``filter_options``: the filters method's options for the patterns (its defaults: 30 ascent steps);
        ``method_options``: each heatmap method's options by name (``xconv report -O``), defaults otherwise."""
        self.model = model
        self.filter_options = dict(filter_options or {})
        self.method_options = dict(method_options or {})
        self.layers = model.feature_layers()
        self.methods = installed_heatmap_methods()  # the registry is fixed once plugins have loaded
        self.stats = ServiceStats()
        self._filters: dict[str, dict] = {}
        self._filters_lock = threading.Lock()

    def describe(self) -> dict:
        return {"name": self.model.display_name, "classes": list(self.model.class_names),
                "input_size": list(self.model.input_size), "layers": self.layers,
                "default_layer": self.model.default_layer}

    def upload(self, photo: np.ndarray, name: str = "upload") -> Upload:
        return Upload(resize(photo, self.model.input_size), shrink_to_fit(photo, DISPLAY_SIZE), name)

    def check(self, key: ExplainKey) -> ExplainKey:
        """The key with names resolved, or one readable XconvError (unknown method or layer)."""
        names = {m["name"]: m for m in self.methods}
        if key.method not in names:
            from xconv.registry import get_registry

            if key.method in get_registry().names("explainer"):  # installed, but no heatmap of a photo
                raise XconvError(f"method {key.method!r} makes no heatmap of a photo (activation grids: the "
                                 "activations field; filter patterns: GET /api/filters); heatmap methods: "
                                 f"{', '.join(names)}")
            raise XconvError(f"unknown method {key.method!r}; choose one of {', '.join(names)}")
        # The default layer by its path, so requests that name it and requests that leave it out share a batch.
        takes_layer = names[key.method]["takes_layer"]
        if key.layer and not takes_layer:  # the CLI refuses it too: an answer for another layer would mislead
            raise XconvError(f"method {key.method!r} works on the input itself; it takes no layer")
        layer = self.model.layer_path(key.layer) if takes_layer else None
        if layer is not None:  # checked here too, for plugin methods that do not check it themselves
            xconv.layers.spatial_layer(self.model.keras_model, layer, key.method)
        activation_layer = self.model.layer_path(key.activation_layer) if key.activation_layer else None
        if activation_layer is not None:
            xconv.layers.spatial_layer(self.model.keras_model, activation_layer, "the activation grid")
        return ExplainKey(key.method, layer, activation_layer, key.grid, key.all_classes)

    def predict(self, uploads: list[Upload]) -> list[dict]:
        probabilities = self.model.predict(np.stack([u.image for u in uploads]))
        self._count(len(uploads))
        return [self.prediction(row) for row in probabilities]

    def prediction(self, probabilities: np.ndarray) -> dict:
        order = np.argsort(-probabilities, kind="stable")
        return {"label": self.model.class_names[order[0]], "probability": float(probabilities[order[0]]),
                "probabilities": [{"class": self.model.class_names[i], "probability": float(probabilities[i])}
                                  for i in order]}

    def explain(self, key: ExplainKey, uploads: list[Upload]) -> list[dict]:
        """Prediction, one overlay per explained class and (optionally) the activation grid, per upload."""
        batch = np.stack([u.image for u in uploads])
        displays = [u.display for u in uploads]
        # The predicted class's explanation comes with every class's probability: no separate prediction pass.
        options = self.method_options.get(key.method, {})
        explanations = [xconv.explain(self.model, batch, key.method, layer=key.layer, originals=displays, **options)]
        probabilities = explanations[0].arrays.get("probabilities")
        if probabilities is None:  # a plugin method that does not report them
            probabilities = self.model.predict(batch)
        ranked = np.argsort(-probabilities, axis=1, kind="stable")
        explained = min(len(self.model.class_names), MAX_CLASSES) if key.all_classes else 1
        for rank in range(1, explained):
            explanations.append(xconv.explain(self.model, batch, key.method, target=[int(t) for t in ranked[:, rank]],
                                              layer=key.layer, originals=displays, **options))
        results = [{**self.prediction(row), "method": key.method, "layer": None, "heatmaps": []} for row in probabilities]
        with tempfile.TemporaryDirectory(prefix="xconv-serve-") as scratch:
            for rank, explanation in enumerate(explanations):
                for output in xconv.render(explanation, "overlay", Path(scratch) / f"rank{rank}", grid=key.grid):
                    index = output.index
                    target = int(explanation.targets[index])
                    results[index]["layer"] = explanation.layer
                    results[index]["heatmaps"].append({
                        "class": self.model.class_names[target],
                        "probability": float(probabilities[index, target]),
                        "png": Path(output.path).read_bytes()})
        if key.activation_layer:
            for result, grid in zip(results, self.activation_grids(key.activation_layer, batch)):
                result["activations"] = grid
        self._count(len(uploads))
        return results

    def activation_grids(self, layer: str, batch: np.ndarray) -> list[dict]:
        """Every channel of ``layer`` for each image of the batch, as one grid PNG per image."""
        activations = xconv.explain(self.model, batch, "activations", layers=[layer])
        grids = [None] * len(batch)
        with tempfile.TemporaryDirectory(prefix="xconv-serve-") as scratch:
            for output in xconv.render(activations, "grid", scratch):
                grids[output.index] = {"layer": layer, "png": Path(output.path).read_bytes()}
        return grids

    def cached_filters(self, layer: str | None) -> dict | None:
        """The patterns already computed for the layer at path ``layer``, else None: no model work and no
        lock (an ascent in progress holds it for minutes), so the event loop may ask."""
        return self._filters.get(layer) if layer else None

    def filters(self, layer: str | None, count: int = 16) -> dict:
        """Filter patterns of ``layer``: computed once per layer, then served from memory."""
        info = self.pattern_layer(layer)
        layer = info.path
        with self._filters_lock:
            if layer not in self._filters:
                explanation = xconv.explain(self.model, None, "filters", layer=layer,
                                            filters=f"0-{min(count, int(info.output_shape[-1])) - 1}",
                                            **self.filter_options)
                with tempfile.TemporaryDirectory(prefix="xconv-serve-") as scratch:
                    [output] = xconv.render(explanation, "grid", scratch)
                    png = Path(output.path).read_bytes()
                robustness = explanation.arrays.get("robustness")
                self._filters[layer] = {
                    "layer": layer, "png": png, "filters": explanation.metadata.get("filters"),
                    "robustness": None if robustness is None else
                    [None if np.isnan(v) else round(float(v), 3) for v in robustness]}
            return self._filters[layer]

    def pattern_layer(self, name: str | None):
        """The conv or pooling layer ``name`` (a path or a bare name) whose filter patterns can be drawn, as
        :class:`xconv.layers.LayerInfo`; else one readable XconvError. None: the conv or pooling layer a
        third of the way in, where patterns are textures already (the model's default layer, the one its
        heatmaps explain, may be an activation, and its patterns are objects too blurred to read)."""
        path = self.layers[len(self.layers) // 3] if not name and self.layers else self.model.layer_path(name)
        info = next((i for i in xconv.layers.feature_layers(self.model.keras_model) if i.path == path), None)
        if info is None:
            raise XconvError(f"layer {name or path!r} is not a conv or pooling layer; filter patterns need one")
        return info

    def _count(self, size: int) -> None:
        self.stats.batches += 1
        self.stats.items += size
        self.stats.largest_batch = max(self.stats.largest_batch, size)
