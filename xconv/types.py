"""The three interfaces plugins implement (Model, Explainer, Renderer) and the Explanation they exchange.

Nothing here imports TensorFlow at module level, so the CLI can list plugins and print help quickly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from xconv.errors import UnknownNameError, XconvError


class Model:
    """A classifier plus everything model-specific, in one place.

    Plugins subclass it, set ``name`` and ``description`` and implement :meth:`load`. The instance wraps
    the ``keras_model`` with its ``input_size`` (H, W), ``class_names``, ``preprocess`` and the default
    layer that class-activation maps explain.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Whether ``xconv train --model NAME`` can build and train this model (see :meth:`build_for_training`).
    trainable: ClassVar[bool] = False
    #: Test-time augmentation in :meth:`predict`: average each image with its mirror image.
    flip_average: ClassVar[bool] = False
    #: Input size ``xconv train`` uses unless ``--image-size`` is given.
    default_image_size: ClassVar[tuple[int, int]] = (224, 224)

    def __init__(self, keras_model, class_names, default_layer: str | None = None, display_name: str | None = None):
        self.keras_model = keras_model
        self.class_names = list(class_names)
        self.display_name = display_name or self.name or keras_model.name
        self._default_layer = default_layer

    @classmethod
    def load(cls, weights: str | None = "default") -> "Model":
        """Build the model; ``weights`` is ``"default"``, a plugin-specific name, a file path or ``None``."""
        raise NotImplementedError

    @classmethod
    def build_for_training(cls, class_names: list[str], image_size: tuple[int, int], weights=None):
        """Return an uncompiled keras.Model for ``xconv train``; only for ``trainable = True`` models."""
        raise XconvError(f"model {cls.name!r} cannot be trained with xconv train")

    @property
    def input_size(self) -> tuple[int, int]:
        shape = self.keras_model.inputs[0].shape
        return tuple(None if side is None else int(side) for side in shape[1:3])  # None: any size

    @property
    def default_layer(self) -> str:
        if self._default_layer is None:
            from xconv.layers import default_cam_layer

            self._default_layer = default_cam_layer(self.keras_model)
        return self._default_layer

    def layer_path(self, name: str | None = None) -> str:
        """Full path of layer ``name`` (a bare name is fine when unique), or of the default layer."""
        from xconv.layers import find_layer

        return find_layer(self.keras_model, name).path if name else self.default_layer

    def feature_model(self, layer_paths: list[str], head: bool = True, spatial_size=None,
                      fold_batch_norms: bool = False):
        """keras.Model: preprocessed input -> [each layer's output..., logits, probabilities]; built once, cached.

        Layer paths reach into nested sub-models (``"inception_v3/mixed10"``); see :mod:`xconv.layers`.
        ``head=False`` stops at the layers (for activations and gradient ascent); ``spatial_size`` then
        allows another input size. ``fold_batch_norms`` merges inference-mode batch norms into the
        convolutions before them (:mod:`xconv.folding`): the same outputs up to float rounding, faster for
        loops that run the graph many times.
        """
        from xconv.layers import build_feature_model

        paths = tuple(self.layer_path(path) for path in layer_paths)
        key = ("feature_model", paths, head, None if spatial_size is None else tuple(spatial_size), fold_batch_norms)

        def build():
            if fold_batch_norms:
                from xconv.folding import fold_batch_norms as fold

                return fold(self.feature_model(layer_paths, head, spatial_size))
            return build_feature_model(self.keras_model, list(paths), head=head, spatial_size=spatial_size)

        return self.cached(key, build)

    def cached(self, key, build):
        """Per-model cache for built graphs and compiled functions, so repeated explains never retrace."""
        cache = self.__dict__.setdefault("_cache", {})
        if key not in cache:
            cache[key] = build()
        return cache[key]

    def feature_layers(self) -> list[str]:
        """Paths of every conv and pooling layer with a spatial output, in network order."""
        from xconv.layers import feature_layers

        return [info.path for info in feature_layers(self.keras_model)]

    def layer_order(self) -> dict[str, int]:
        """Layer path -> position in network order (nested layers included)."""
        from xconv.layers import iter_layers

        return {info.path: index for index, info in enumerate(iter_layers(self.keras_model))}

    def preprocess_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale, offset) per channel with preprocess(x) == scale * x + offset, for optimizing in pixel space."""
        probe = np.array([[[[0, 0, 0]], [[255, 255, 255]], [[128, 64, 32]]]], np.uint8)
        out = np.asarray(self.preprocess(probe), np.float64)[0, :, 0]
        scale, offset = (out[1] - out[0]) / 255.0, out[0]
        if not np.allclose(scale * np.array([128, 64, 32]) + offset, out[2], atol=1e-4):
            raise XconvError(f"{self.display_name}: preprocess is not affine; gradient ascent in pixel space needs it")
        return scale.astype(np.float32), offset.astype(np.float32)

    def preprocess(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) at input size -> float32 model input. Default: the model rescales itself."""
        return np.asarray(batch, dtype=np.float32)

    def predict(self, batch: np.ndarray, flip_average: bool | None = None) -> np.ndarray:
        """Class probabilities (N, classes) for a uint8 batch at input size, averaged with the mirror
        images when ``flip_average`` is set (``None``: the model's own ``flip_average``)."""
        probabilities = np.asarray(self.keras_model(self.preprocess(batch), training=False))
        if self.flip_average if flip_average is None else flip_average:
            mirrored = np.asarray(self.keras_model(self.preprocess(batch[:, :, ::-1]), training=False))
            probabilities = (probabilities + mirrored) / 2
        return probabilities

    def decode(self, probabilities: np.ndarray, top: int = 1) -> list[list[tuple[str, float]]]:
        """Top-k (label, score) per row, best first."""
        order = np.argsort(-probabilities, axis=-1)[:, :top]
        return [[(self.class_names[i], float(row[i])) for i in idx] for row, idx in zip(probabilities, order)]

    def class_index(self, target: int | str) -> int:
        """Resolve a class index or name: exact, case-insensitive, singular/plural, then a unique prefix."""
        if isinstance(target, (int, np.integer)) or (isinstance(target, str) and target.isdigit()):
            index = int(target)
            if not 0 <= index < len(self.class_names):
                raise XconvError(f"class index {index} is out of range: the model has {len(self.class_names)} classes")
            return index
        names = self.class_names
        for match in (
            lambda n: n == target,
            lambda n: n.lower() == target.lower(),
            lambda n: n.lower().replace(" ", "_") == target.lower().replace(" ", "_"),
            lambda n: singular(n) == singular(target),
            lambda n: n.lower().startswith(target.lower()),
        ):
            hits = [i for i, n in enumerate(names) if match(n)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise XconvError(f"class {target!r} is ambiguous: {', '.join(names[i] for i in hits[:10])}")
        raise UnknownNameError("class", target, names)


@dataclass
class Explanation:
    """What an explainer produced, with everything a renderer needs (no access to the model required).

    ``arrays`` holds the method's results, e.g. ``heatmaps`` (N, h, w) or ``activations`` {layer: array}.
    ``images`` are the model-size inputs, ``originals`` the decoded photos at their own size.
    """

    method: str
    kind: str
    model_name: str
    arrays: dict[str, Any]
    layer: str | list[str] | None = None
    images: np.ndarray | None = None
    originals: list[np.ndarray] | None = None
    sources: list[str] | None = None
    targets: list[int] | None = None
    target_names: list[str] | None = None
    predictions: list[tuple[str, float]] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    index_offset: int = 0

    def __getattr__(self, name):
        # e.heatmaps, e.activations, e.patterns, e.scores read straight from ``arrays``.
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(f"{self.method} explanation has no {name!r} (it has: {', '.join(arrays)})")

    def __len__(self) -> int:
        return len(self.sources or []) or (0 if self.images is None else len(self.images))

    def stem(self, index: int) -> str:
        """A file-name stem for input ``index``, unique within a run: numbered when the run has several
        images (``index_offset`` continues the numbering across the chunks of one long batch)."""
        source = (self.sources or [None] * (index + 1))[index]
        base = Path(source).stem if source else "image"
        numbered = len(self) > 1 or self.index_offset > 0 or not source
        return f"{self.index_offset + index:03d}_{safe_name(base)}" if numbered else safe_name(base)


def singular(name: str) -> str:
    """'Cats' -> 'cat', so class folders named in the plural match a model's singular class names."""
    name = name.lower().replace(" ", "_")
    return name[:-1] if name.endswith("s") and not name.endswith("ss") else name


def safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


class Explainer:
    """Turns a model and a batch of images into an :class:`Explanation`.

    ``kind`` tells renderers what the explanation holds. Set ``needs_images = False`` for methods that
    synthesize inputs (filter patterns).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    needs_images: ClassVar[bool] = True

    def __init__(self, model: Model, layer: str | None = None, **options):
        self.model = model
        self.layer = layer
        self.options = options

    def explain(self, images: np.ndarray | None, targets: list[int] | None = None) -> Explanation:
        """``images``: uint8 (N, H, W, 3) at the model's input size; ``targets``: class index per image or None."""
        raise NotImplementedError


class Renderer:
    """Writes an Explanation to files; declares the explanation kinds it accepts."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    accepts: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options):
        self.options = options

    @classmethod
    def can_render(cls, explanation: Explanation) -> bool:
        return explanation.kind in cls.accepts

    def render(self, explanation: Explanation, out_dir: str | os.PathLike) -> list[Path]:
        raise NotImplementedError
