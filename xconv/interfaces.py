"""The three interfaces plugins implement (Model, Explainer, Renderer) and the Explanation they exchange.

Nothing here imports TensorFlow at module level, so the CLI can list plugins and print help quickly.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from xconv.errors import UnknownNameError, XconvError
from xconv.options import Option, resolve_options


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
    #: Declared options (:class:`xconv.Option`), passed to :meth:`load` as keyword arguments.
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, keras_model, class_names, default_layer: str | None = None, display_name: str | None = None,
                 image_size=None):
        self.keras_model = keras_model
        self.class_names = list(class_names)
        check_class_count(keras_model, self.class_names)
        self.display_name = display_name or self.name or keras_model.name
        self._default_layer = default_layer
        self.declared_size = tuple(image_size) if image_size else None

    @classmethod
    def load(cls, weights: str | None = "default", **options) -> "Model":
        """A classmethod building the model: ``weights`` is ``"default"``, a plugin-specific name, a file path
        or ``None`` (random); ``options`` are the declared options, validated and with defaults filled in."""
        raise NotImplementedError

    @classmethod
    def build_for_training(cls, class_names: list[str], image_size: tuple[int, int], weights=None):
        """Return an uncompiled keras.Model for ``xconv train``; only for ``trainable = True`` models."""
        raise XconvError(f"model {cls.name!r} cannot be trained with xconv train")

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W); a net that takes any size (progressive resizing) uses the ``image_size`` it was given, the
        size it was trained for, else reports None for the free sides."""
        shape = self.keras_model.inputs[0].shape
        size = tuple(None if side is None else int(side) for side in shape[1:3])
        return self.declared_size if None in size and self.declared_size else size

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
                      fold_batch_norms: bool = False, guided: bool = False):
        """keras.Model: preprocessed input -> [each layer's output..., logits, probabilities]; built once, cached.

        Layer paths reach into nested sub-models (``"inception_v3/mixed10"``); see :mod:`xconv.layers`.
        ``head=False`` stops at the layers (for activations and gradient ascent); ``spatial_size`` then
        allows another input size. ``fold_batch_norms`` merges inference-mode batch norms into the
        convolutions before them (:mod:`xconv.folding`): the same outputs up to float rounding, faster for
        loops that run the graph many times. ``guided`` gates every ReLU's gradient as guided
        backpropagation does (:mod:`xconv.guided`), in the copy only.
        """
        from xconv.layers import build_feature_model

        paths = tuple(self.layer_path(path) for path in layer_paths)
        key = ("feature_model", paths, head, None if spatial_size is None else tuple(spatial_size), fold_batch_norms,
               guided)

        def build():
            if fold_batch_norms:
                from xconv.folding import fold_batch_norms as fold

                return fold(self.feature_model(layer_paths, head, spatial_size, guided=guided))
            transform = None
            if guided:
                from xconv.guided import GuidedGates

                transform = GuidedGates()
            built = build_feature_model(self.keras_model, list(paths), head=head, spatial_size=spatial_size,
                                        transform=transform)
            if guided and not transform.gates:
                # A warning, not an error: --method all still runs every other method on such a model.
                import warnings

                from xconv.errors import XconvWarning

                warnings.warn(f"guided backpropagation gates ReLUs, and model {self.display_name!r} has none: "
                              "its guided gradient is the plain gradient (saliency's)", XconvWarning, stacklevel=2)
            return built

        return self.cached(key, build)

    def channel_feature_model(self, layer_path: str, channels, spatial_size=None, fold_batch_norms: bool = False):
        """(keras.Model, positions): preprocessed input -> the part of one layer's output that holds
        ``channels``, and each channel's index in that output; built once, cached.

        For gradient ascent on a few filters: when the layer concatenates branches (an Inception block),
        the branches holding none of the channels are left out and never computed (InceptionV3 ``mixed3``,
        filters 0-15: one branch of three, a forward+backward pass 7 % faster). A block inside a nested
        model (a transfer model's base) gives the same channels, but its whole block is computed. Otherwise
        the output is the whole layer and the positions are the channels themselves.
        """
        from xconv.layers import ChannelSelection, build_feature_model

        path = self.layer_path(layer_path)
        selection = ChannelSelection(channels)
        key = ("channel_feature_model", path, tuple(selection.channels),
               None if spatial_size is None else tuple(spatial_size), fold_batch_norms)

        def build():
            network = build_feature_model(self.keras_model, [path], head=False, spatial_size=spatial_size,
                                          selection=selection)
            if fold_batch_norms:
                from xconv.folding import fold_batch_norms as fold

                network = fold(network)
            return network, dict(zip(selection.channels, selection.positions))

        network, positions = self.cached(key, build)
        return network, [positions[int(channel)] for channel in channels]

    def probability_network(self):
        """inputs -> probabilities (no test-time flipping) through the batch-norm-folded copy of the network:
        the same function up to float rounding, about 10 % less time per pass on a CPU, for the methods and
        metrics that are nothing but forward passes (perturbations, deletion and insertion). Compiled, so a
        call from eager code costs what a call inside a compiled step does (eager Keras took 2.6x as long)."""
        return self.cached(("probability_network",), self._build_probability_network)

    def _build_probability_network(self):
        import tensorflow as tf

        network = self.feature_model([], fold_batch_norms=True)

        @tf.function(reduce_retracing=True)
        def probabilities(inputs):
            return network(inputs, training=False)[-1]

        return probabilities

    def cached(self, key, build):
        """Per-model cache for built graphs and compiled functions, so repeated explains never retrace."""
        self.catch_up_with_training()
        cache = self.__dict__.setdefault("_cache", {})
        if key not in cache:
            cache[key] = build()
        return cache[key]

    def set_layer_weights(self, weights: dict) -> None:
        """Set the weights of the layers at these paths (``{path: [arrays]}``, as ``layer.set_weights``
        takes them) and keep every graph and compiled function built so far: the batch-norm-folded copies,
        which hold merged copies of the weights, are refolded in place, and per-batch memos are dropped.
        A new model with the changed weights would retrace every function instead (the randomization
        metric changes weights once per step)."""
        import keras

        from xconv.layers import find_layer, iter_layer_objects

        layers = [find_layer(self.keras_model, path).layer for path in weights]
        for layer, values in zip(layers, weights.values()):
            layer.set_weights(values)
        # A nested model's weights are its layers': each of them changed.
        self.weights_changed([inner for layer in layers for inner in
                              ([layer, *iter_layer_objects(layer)] if isinstance(layer, keras.Model) else [layer])])

    def weights_changed(self, layers=None) -> None:
        """Bring what was built from the weights up to date after they changed (by :meth:`set_layer_weights`,
        or by training: a callback's explanations): refold the batch-norm-folded copies in place (only the
        convolutions merging one of ``layers``, when the changed layers are known) and drop the per-batch
        memos. The compiled functions stay; they read the variables."""
        import keras

        from xconv.folding import refold

        layers = None if layers is None else list(layers)  # read once per cached model below
        for value in self.__dict__.get("_cache", {}).values():
            for part in value if isinstance(value, tuple) else (value,):
                if isinstance(part, keras.Model):
                    refold(part, layers)
        self.__dict__.pop("_memos", None)  # results of the old weights
        self.__dict__["_trained_to"] = self._training_step()

    def catch_up_with_training(self) -> None:
        """:meth:`weights_changed` when ``keras_model`` was trained since the last look (``fit``,
        ``train_on_batch``: its compiled optimizer counts the steps), so explanations never come from the
        folded copies of older weights. A read of one counter; weights set any other way (``set_weights``,
        ``load_weights``, an optimizer of your own) need :meth:`weights_changed` called."""
        import tensorflow as tf

        if not tf.executing_eagerly():  # a graph being traced: the eager call around it has looked
            return
        step = self._training_step()
        if "_trained_to" in self.__dict__ and step != self.__dict__["_trained_to"]:
            self.weights_changed()
        self.__dict__["_trained_to"] = step

    def _training_step(self):
        optimizer = getattr(self.keras_model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None)
        return None if iterations is None else (id(optimizer), int(np.asarray(iterations)))

    def memo(self, name: str) -> dict:
        """A per-model dict, by ``name``, for results computed with the current weights (unlike
        :meth:`cached` graphs, dropped by :meth:`weights_changed`)."""
        self.catch_up_with_training()
        return self.__dict__.setdefault("_memos", {}).setdefault(name, {})

    def feature_layers(self) -> list[str]:
        """Paths of every conv and pooling layer with a spatial output, in network order."""
        from xconv.layers import feature_layers

        return [info.path for info in feature_layers(self.keras_model)]

    def preprocess(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) at input size -> float32 model input. Default: the model rescales itself."""
        return np.asarray(batch, dtype=np.float32)

    def predict(self, batch: np.ndarray, flip_average: bool | None = None) -> np.ndarray:
        """Class probabilities (N, classes) for a uint8 batch at input size, averaged with the mirror
        images when ``flip_average`` is set (``None``: the model's own ``flip_average``). One compiled pass
        through the folded network, the one explanations report from: on the bundled model 1,000 photos
        took 12 s instead of 20 with eager Keras calls, one photo 0.3 s more (the trace)."""
        return self.predict_preprocessed(self.preprocess(batch), flip_average)

    def predict_preprocessed(self, inputs: np.ndarray, flip_average: bool | None = None) -> np.ndarray:
        """:meth:`predict` for inputs already preprocessed: the compiled pass every eager caller shares."""
        flip = bool(self.flip_average if flip_average is None else flip_average)
        return np.asarray(self.cached(("predict", flip), lambda: self._build_predict(flip))(inputs))

    def _build_predict(self, flip: bool):
        import tensorflow as tf

        network = self.probability_network()
        return tf.function(lambda inputs: self.probabilities(inputs, flip_average=flip, network=network),
                           reduce_retracing=True)

    def probabilities(self, inputs, computed=None, flip_average: bool | None = None, network=None):
        """Probabilities of preprocessed ``inputs`` (also a tensor inside a tf.function), with the model's
        test-time augmentation. Explainers report these, so ``predict`` and ``explain`` give one confidence;
        ``computed``: the plain probabilities of ``inputs`` when a pass already made them; ``network``:
        inputs -> probabilities, when a faster copy of the Keras model (batch norms folded) is at hand.
        """
        flip = self.flip_average if flip_average is None else flip_average
        if computed is not None and not flip:
            return computed
        network = network or self.probability_network()  # xconv's view of the output (one unit: two classes)
        if computed is None:
            computed = network(inputs)
        if not flip:
            return computed
        import tensorflow as tf

        mirrored = network(tf.reverse(tf.convert_to_tensor(inputs), axis=[2]))
        return (computed + mirrored) / 2

    def decode(self, probabilities: np.ndarray, top: int = 1) -> list[list[tuple[str, float]]]:
        """Top-k (label, score) per row, best first."""
        order = np.argsort(-probabilities, axis=-1)[:, :top]
        return [[(self.class_names[i], float(row[i])) for i in idx] for row, idx in zip(probabilities, order)]

    def class_index(self, target: int | str) -> int:
        """Resolve a class index or name: exact, case-insensitive, singular/plural, then the unique name that
        starts with ``target``'s words ("golden" for golden_retriever; "cat" is not catamaran). Text of
        digits is an index unless it is a class's own name (folders named "1", "2" train classes "1", "2")."""
        if isinstance(target, (bool, np.bool_)) or not isinstance(target, (str, int, np.integer)):
            raise XconvError(f"a target is a class name or index; got {target!r}")
        if isinstance(target, str) and target in self.class_names:
            return self.class_names.index(target)
        if isinstance(target, (int, np.integer)) or (isinstance(target, str) and re.fullmatch(r"-?\d+", target)):
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
            lambda n: starts_with_words(n, target),
        ):
            hits = [i for i, n in enumerate(names) if match(n)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise XconvError(f"class {target!r} is ambiguous: {', '.join(names[i] for i in hits[:10])}")
        # Names holding the text first: among ImageNet's 1,000, "cat" lists tiger_cat and Persian_cat, not tench.
        holding = [n for n in names if word_key(target) in word_key(n)]
        raise UnknownNameError("class", target, holding + [n for n in names if n not in holding])


@dataclass(repr=False)
class Explanation:
    """What an explainer produced, with everything a renderer needs (no access to the model required).

    ``arrays`` holds the method's results by kind (``heatmaps`` (N, h, w), ``activations`` {layer: array},
    ``patterns`` and ``scores``; see the plugin guide for each kind's fields). ``images`` are the
    model-size inputs, ``originals`` the decoded photos at their own size, ``sources`` their file names.
    ``options``: the method's options it was made with, so it can be made again the same way (on a
    randomized copy of the model, say).
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
    index_offset: int | list = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name):
        # e.heatmaps, e.activations, e.patterns, e.scores read straight from ``arrays``.
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        method = self.__dict__.get("method", "this")  # also while copy and pickle rebuild an instance
        raise AttributeError(f"{method} explanation has no {name!r} (it has: {', '.join(arrays)})")

    def __repr__(self) -> str:
        def shape(value):
            if isinstance(value, dict):
                return f"{{{len(value)} layers}}"
            array = np.asarray(value)
            return f"{array.dtype}{list(array.shape)}"

        layer = self.layer if not isinstance(self.layer, list) else f"{len(self.layer)} layers"
        arrays = ", ".join(f"{name}={shape(value)}" for name, value in self.arrays.items())
        return (f"Explanation({self.method}, kind={self.kind}, model={self.model_name}, inputs={len(self)}, "
                f"layer={layer}, {arrays})")

    def _repr_html_(self) -> str:
        """Jupyter shows an explanation as its pictures (the default renderer's, small): ``e`` alone in a cell."""
        from xconv.html import explanation_html

        return explanation_html(self)

    def __len__(self) -> int:
        return len(self.sources or []) or (0 if self.images is None else len(self.images))

    def stem(self, index: int) -> str:
        """A file-name stem for input ``index``, unique within a run: numbered when the run has several
        images. ``index_offset`` continues the numbering across the chunks of one long batch, or gives
        each image its own number (its position among all inputs), so names do not depend on batching."""
        source = (self.sources or [None] * (index + 1))[index]
        base = Path(source).stem if source else "image"
        offset = self.index_offset
        number = int(offset[index]) if isinstance(offset, (list, tuple)) else offset + index
        numbered = isinstance(offset, (list, tuple)) or len(self) > 1 or number > 0 or not source
        return f"{number:03d}_{safe_name(base)}" if numbered else safe_name(base)

    def output(self, path: str | os.PathLike, index: int | None = None) -> "Output":
        """An :class:`Output` record for a file a renderer wrote about input ``index`` (None: all inputs)."""
        target = self.target_names[index] if index is not None and self.target_names else None
        return Output(Path(path), index, target)


@dataclass(frozen=True)
class Output:
    """A file a renderer wrote, and which input (``index`` into the explanation) and target it shows.

    It is path-like (``open(output)``, ``str(output)``), so code that wanted paths keeps working; ``index``
    is None for a file about the explanation as a whole (a grid of filter patterns).
    """

    path: Path
    index: int | None = None
    target: str | None = None

    def __fspath__(self) -> str:
        return str(self.path)

    def __getattr__(self, name):
        # output.name, output.suffix, output.exists(): the written file's Path answers.
        if name.startswith("__") or "path" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["path"], name)

    def __str__(self) -> str:
        return str(self.path)


def check_class_count(keras_model, class_names: list) -> None:
    """One name per class the model outputs; one unit (a binary classifier) is two classes, 1 - p and p."""
    from xconv.layers import output_classes

    try:
        if len(keras_model.outputs[0].shape) != 2:  # not a classifier's (N, classes): a base for filter patterns
            return
        classes = output_classes(keras_model)
    except (AttributeError, IndexError, TypeError, ValueError):  # a subclassed model not yet called: no outputs
        return
    if len(class_names) != classes:
        binary = " (its one output unit is two classes, 1 - p and p: name both)" if classes == 2 and \
            int(keras_model.outputs[0].shape[-1]) == 1 else ""
        raise XconvError(f"{len(class_names)} class names for a model with {classes} classes{binary}")


def word_key(name: str) -> str:
    """Lower case, words joined by ``_`` however they were written (space, hyphen)."""
    return name.lower().replace(" ", "_").replace("-", "_")


def starts_with_words(name: str, target: str) -> bool:
    """Whether ``name``'s leading words are ``target``'s: a word cut in the middle is another word."""
    name, target = word_key(name), word_key(target)
    return name.startswith(target) and name[len(target):len(target) + 1] in ("", "_")


def singular(name: str) -> str:
    """'Cats' -> 'cat', so class folders named in the plural match a model's singular class names."""
    name = name.lower().replace(" ", "_")
    return name[:-1] if name.endswith("s") and not name.endswith("ss") else name


#: File systems refuse names over 255 bytes; a photo's name, a layer, a method and a class name go into one
#: output file name, so each part is kept to this many bytes.
NAME_PART_BYTES = 64


def safe_name(text: str) -> str:
    """``text`` with every character that is unsafe in a file name replaced by ``_``; a part longer than
    ``NAME_PART_BYTES`` keeps its start and a digest of the whole, so long names stay distinct and writable."""
    name = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in str(text))
    encoded = name.encode("utf-8")
    if len(encoded) <= NAME_PART_BYTES:
        return name
    digest = hashlib.sha1(encoded).hexdigest()[:8]
    start = encoded[:NAME_PART_BYTES - len(digest) - 1].decode("utf-8", errors="ignore")
    return f"{start}-{digest}"


class Explainer:
    """Turns a model and a batch of images into an :class:`Explanation`.

    Constructed as ``Explainer(model, layer=None, **options)``: ``layer`` is a layer name or path, a list
    of them, or None for methods without one; ``options`` are checked against the ``options`` declaration
    and each becomes an attribute (``self.steps``) and an entry of ``self.options``. ``kind`` tells
    renderers what the explanation holds. Set ``needs_images = False`` for methods that synthesize inputs.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    needs_images: ClassVar[bool] = True
    #: False for methods that work on the input alone (saliency, occlusion): a --layer for them is an error.
    takes_layer: ClassVar[bool] = True
    #: True for methods that take several layers at once (activations); the others are given one.
    takes_layers: ClassVar[bool] = False
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, model: Model, layer: str | list[str] | None = None, **options):
        self.model = model
        self.layer = layer
        self.options = resolve_options(type(self), options)
        self.__dict__.update(self.options)

    def explain(self, images: np.ndarray | None, targets: list[int] | None = None) -> Explanation:
        """``images``: uint8 (N, H, W, 3) at the model's input size; ``targets``: class index per image or None."""
        raise NotImplementedError

    def targets_and_probabilities(self, inputs: np.ndarray, targets=None, batch_size: int = 32):
        """(class per image, probabilities) for preprocessed ``inputs``: the requested targets, or the predicted
        classes, with the probabilities ``xconv predict`` reports (test-time augmentation included)."""
        probabilities = np.concatenate([self.model.predict_preprocessed(inputs[start:start + batch_size])
                                        for start in range(0, len(inputs), batch_size)])
        chosen = probabilities.argmax(axis=1) if targets is None else np.asarray(targets)
        return chosen.astype(np.int32), probabilities


class Renderer:
    """Writes an Explanation to files; declares the explanation kinds it accepts and its options."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    accepts: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, **options):
        self.options = resolve_options(type(self), options)
        self.__dict__.update(self.options)

    @classmethod
    def can_render(cls, explanation: Explanation) -> bool:
        return explanation.kind in cls.accepts

    def render(self, explanation: Explanation, out_dir: str | os.PathLike) -> list[Output]:
        """Write files into ``out_dir``; return one :class:`Output` per file (``explanation.output(path, i)``)."""
        raise NotImplementedError


@dataclass(repr=False)
class MetricResult:
    """One number per image (NaN where the metric does not apply, e.g. no box for the target), and, for
    metrics that have them, each image's curve sampled at ``curve_x`` (``curves``: (N, len(curve_x))).
    ``extra`` holds further per-image values by name (randomization's SSIM beside its rank correlation),
    ``extra_curves`` their curves at the same ``curve_x`` (SSIM after every randomization step)."""

    values: np.ndarray
    curves: np.ndarray | None = None
    curve_x: np.ndarray | None = None
    #: Further per-image values the same computation gave, by name (they become rows of their own).
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    extra_curves: dict[str, np.ndarray] = field(default_factory=dict)

    def __repr__(self) -> str:
        curves = "" if self.curves is None else f", curves={list(np.shape(self.curves))}"
        return f"MetricResult(values={list(np.shape(self.values))}{curves})"


class Metric:
    """Scores explanations: how faithfully does each map describe what the model computes?

    Constructed as ``Metric(model, **options)`` (options declared as for explainers);
    ``score(images, targets, explanation)`` gets the uint8 images at input size, the class index per image
    and a heatmap explanation of them, and returns a :class:`MetricResult`. ``higher_is_better`` tells
    tables which end is best.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    #: Axis labels for the metric's curves in ``xconv score``'s figure.
    curve_labels: ClassVar[tuple[str, str]] = ("fraction of pixels", "target probability")
    #: The metric whose perturbations this one makes in reverse order (insertion: deletion). ``xconv
    #: score`` then always gives it the complement of the ``random`` row's noise, itself uniform noise, so
    #: that both can read one set of perturbed copies (in opposite directions) instead of making two.
    plays_backwards: ClassVar[str | None] = None
    #: How ``xconv score``'s summary averages the per-image values: over ``"images"``, or ``"classes"`` (the
    #: mean of each target class's mean, as the pointing game reports its accuracy per category).
    averaged_over: ClassVar[str] = "images"
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, model: Model, **options):
        self.model = model
        self.options = resolve_options(type(self), options)
        self.__dict__.update(self.options)

    def annotated_targets(self, source: str) -> list[int]:
        """The classes this metric's annotations give for the image file at ``source`` (ground truth, such
        as the pointing game's boxes), which ``target="annotated"`` scores; most metrics have none."""
        return []

    def score(self, images: np.ndarray, targets: np.ndarray, explanation: Explanation) -> MetricResult:
        raise NotImplementedError
