"""The public Python API; the CLI uses nothing else.

>>> import xconv
>>> model = xconv.load_model("catsdogs")
>>> model.class_names
['cat', 'dog']
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xconv.errors import PluginError, XconvError, XconvWarning
from xconv.files import check_output_folder
from xconv.images import ImageError, load_batch, load_image, resize
from xconv.options import already_resolved, resolve_options
from xconv.quiet import no_retracing_notices, quiet_tensorflow
from xconv.registry import get_registry
from xconv.interfaces import Explanation, Model, Output
from xconv.modelfile import MODEL_FILE_SUFFIXES  # where the CLI reads it too


def load_model(name_or_path: str | os.PathLike = "catsdogs", weights="default", safe_mode: bool = True,
               preprocess: str | None = None, **options) -> Model:
    """A registered model by name (``weights``: ``"default"``, a plugin-specific name, a path, or ``None``),
    or any saved Keras classifier by path (loaded with ``safe_mode`` unless you trust the file).

    ``preprocess`` (files only) says what the network expects its pixels turned into: ``none``, ``unit``,
    ``tf``, ``torch`` or ``caffe`` (:mod:`xconv.preprocessing`). ``options`` are the model's declared options.
    """
    quiet_tensorflow()
    text = str(name_or_path)
    if isinstance(weights, str) and weights.lower() == "none":  # as the CLI and every message spell it
        weights = None
    if text.endswith(MODEL_FILE_SUFFIXES) or os.sep in text or Path(text).is_file():
        from xconv.modelfile import KerasFileModel, load_model_file

        if weights != "default":
            raise XconvError(f"--weights applies to registered models; {text} carries its own weights")
        resolved = resolve_options(KerasFileModel, options)
        return load_model_file(text, safe_mode=safe_mode, preprocess=preprocess, image_size=resolved["image_size"])
    entry = get_registry().entry("model", text)
    if preprocess is not None:
        raise XconvError(f"model {text!r} preprocesses its own input; --preprocess applies to model files")
    resolved = resolve_options(entry.cls, options)
    with entry.guarded("load"), already_resolved():
        model = entry.cls.load(weights, **resolved) if resolved else entry.cls.load(weights)
    if not isinstance(model, Model):
        raise PluginError(f"model {text!r} from {entry.distribution}: load() returned {type(model).__name__}, "
                          f"not an xconv.Model")
    model.options = resolved
    return model


def load_images(paths, model: Model):
    """Decode files for ``model``: (uint8 batch at input size, originals, good paths, list of ImageError)."""
    require_model(model)
    return load_batch(path_list(paths), model.input_size)


def require_model(model) -> None:
    """A Keras model or a name given where an :class:`xconv.Model` belongs: say how to make one."""
    if not isinstance(model, Model):
        raise XconvError(f"expected an xconv.Model, got {type(model).__name__}: load one with "
                         "xconv.load_model(NAME or PATH), or wrap a Keras classifier as "
                         "xconv.Model(keras_model, class_names)")


def path_list(paths) -> list:
    """One path, or an iterable of them (a generator too), as a list of paths; anything else is an error
    naming what the API takes."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    for item in paths:
        if not isinstance(item, (str, os.PathLike)):
            hint = (" (stack arrays into one uint8 (N, H, W, 3) array at the model's input size)"
                    if isinstance(item, np.ndarray) else "")
            raise XconvError(f"images are paths or one uint8 (N, H, W, 3) array; got {type(item).__name__} "
                             f"in a list{hint}")
    return paths


def as_batch(model: Model, images) -> tuple[np.ndarray, list[np.ndarray] | None, list[str] | None]:
    """Accept paths (decoded, errors raised) or a uint8 (N, H, W, 3) array at the model's input size."""
    if images is None:
        return None, None, None
    if isinstance(images, np.ndarray):
        check_array(model, images)
        return images, None, None
    images = path_list(images)  # also a generator of paths
    if len(images) == 0:
        raise XconvError("no images given")
    originals = [load_image(path) for path in images]
    batch = np.stack([resize(image, model.input_size) for image in originals])
    return batch, originals, [str(path) for path in images]


def check_array(model: Model, images: np.ndarray) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise XconvError(f"images must be uint8 (N, H, W, 3); got {images.dtype} {images.shape}")
    if any(want is not None and want != got for want, got in zip(model.input_size, images.shape[1:3])):
        raise XconvError(f"images must be {model.input_size} to fit {model.display_name}; got {images.shape[1:3]}")
    if len(images) == 0:
        raise XconvError("no images given")


def check_per_image(name: str, values, count: int) -> None:
    """``originals``, ``sources`` or ``index_offset`` given per image: one for each (a short list once
    drew fewer files than images, without a word)."""
    if values is not None and not isinstance(values, (int, np.integer)) and len(values) != count:
        raise XconvError(f"got {len(values)} {name} for {count} images")


def check_originals(originals, count: int) -> None:
    check_per_image("originals", originals, count)
    for image in originals or ():
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3):
            raise XconvError("originals are the photos as uint8 (H, W, 3) arrays (as xconv.load_image returns "
                             f"them); got {getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")


def resolve_targets(model: Model, target, count: int) -> list[int] | None:
    """None (predicted class), one class name/index for all images, or one per image."""
    if target is None:
        return None
    if isinstance(target, np.ndarray):
        target = target.tolist() if target.ndim else target.item()
    if isinstance(target, (list, tuple)):
        check_per_image("targets", target, count)
        return [model.class_index(t) for t in target]
    return [model.class_index(target)] * count


def predict(model: Model, images, top: int = 1) -> list[list[tuple[str, float]]]:
    """Top-``top`` (label, probability) for each image."""
    require_model(model)
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise XconvError(f"top is a whole number of classes, at least 1; got {top!r}")
    batch, _, _ = as_batch(model, images)
    return model.decode(model.predict(batch), top=top)


def explain(model: Model, images, method: str = "gradcam", target=None, layer=None, *, originals=None,
            sources=None, index_offset: int | list = 0, **options) -> Explanation:
    """Run explainer ``method`` on ``images`` (paths or a uint8 array at input size; ``None`` for methods
    that synthesize inputs, such as filter patterns). ``target``: class name or index, one per image,
    or ``None`` for the predicted class. ``options``: the method's declared options (``xconv list METHOD``);
    an unknown or ill-typed one is an error. ``index_offset`` (or a number per image) numbers output files when one long batch is
    explained in chunks, so files of later chunks never overwrite earlier ones."""
    require_model(model)
    entry = get_registry().entry("explainer", method)
    explainer_cls = entry.cls
    if images is not None and not isinstance(images, np.ndarray):
        images = path_list(images)  # a generator has no len()
    if explainer_cls.needs_images and (images is None or len(images) == 0):
        raise XconvError(f"method {method!r} needs at least one image")
    if not explainer_cls.needs_images and images is not None:
        raise XconvError(f"method {method!r} makes its own inputs; it takes no images")
    if layer is not None and not explainer_cls.takes_layer:
        raise XconvError(f"method {method!r} works on the input itself; it takes no layer")
    if isinstance(layer, (list, tuple)) and not explainer_cls.takes_layers:
        if len(layer) != 1:
            raise XconvError(f"method {method!r} explains one layer at a time; got {len(layer)}: {', '.join(layer)}")
        layer = layer[0]
    resolved = resolve_options(explainer_cls, options)
    batch, decoded, paths = as_batch(model, images)
    count = 0 if batch is None else len(batch)
    targets = resolve_targets(model, target, count)
    check_originals(originals, count)
    check_per_image("sources", sources, count)
    check_per_image("index_offset values", index_offset, count)
    with entry.guarded("explain"), no_retracing_notices():
        with already_resolved():
            explainer = explainer_cls(model, layer=layer, **resolved)
        explanation = explainer.explain(batch, targets)
    if not isinstance(explanation, Explanation):
        raise PluginError(f"explainer {method!r} from {entry.distribution}: explain() returned "
                          f"{type(explanation).__name__}, not an xconv.Explanation")
    explanation.originals = originals if originals is not None else decoded
    explanation.sources = [str(s) for s in sources] if sources is not None else paths
    explanation.index_offset = index_offset
    explanation.options = dict(resolved)
    warn_if_one_cell(explanation)
    return explanation


def warn_if_one_cell(explanation: Explanation) -> None:
    """A layer that is 1x1 at the input size (a model trained on small photos) gives one value per photo:
    drawn, it tints the whole photo, which reads as "everywhere" rather than "cannot tell"."""
    import warnings

    heatmaps = explanation.arrays.get("heatmaps") if explanation.kind == "heatmap" else None
    if heatmaps is not None and len(heatmaps) and np.shape(heatmaps)[1:3] == (1, 1):
        warnings.warn(f"layer {explanation.layer} is 1x1 at this input size: {explanation.method}'s map is one value "
                      "for the whole photo and cannot say where; pick an earlier layer (xconv layers lists them)",
                      XconvWarning, stacklevel=3)


def heatmap_method(name: str, use: str) -> type:
    """The explainer class ``name``, which must make heatmaps of images; ``use`` ends the error otherwise
    ("only heatmap methods can be compared")."""
    cls = get_registry().get("explainer", name)
    if cls.kind != "heatmap" or not cls.needs_images:
        raise XconvError(f"method {name!r} makes {cls.kind} explanations; {use}")
    return cls


def check_comparable(methods: list[str]) -> None:
    """At least two different methods, each making heatmaps of images."""
    if len(set(methods)) < 2:
        raise XconvError("compare needs at least two different methods")
    for name in methods:
        heatmap_method(name, "only heatmap methods can be compared")


def compare(model: Model, images, methods: list[str] | str, target=None, layer=None, *, options=None,
            originals=None, sources=None, index_offset: int | list = 0) -> Explanation:
    """Several heatmap methods (names, or one comma-separated string) on the same decoded batch, as one
    ``comparison`` explanation (drawn by the ``compare`` renderer): ``arrays["heatmaps"]`` maps each method
    to its (N, h, w) maps. ``layer`` goes to the methods that take one; ``options`` maps a method name to
    its options (a method not compared is an error: its options would be dropped)."""
    require_model(model)
    methods = name_list(methods)
    check_comparable(methods)
    check_options_named(options, methods, "method")
    registry = get_registry()
    batch, decoded, paths = as_batch(model, images)
    check_originals(originals, len(batch))
    check_per_image("sources", sources, len(batch))
    check_per_image("index_offset values", index_offset, len(batch))
    explained = {
        name: explain(model, batch, name, target=target,
                      layer=layer if registry.get("explainer", name).takes_layer else None,
                      **(options or {}).get(name, {}))
        for name in dict.fromkeys(methods)
    }
    first = next(iter(explained.values()))
    return Explanation(
        method="compare", kind="comparison", model_name=model.display_name,
        arrays={"heatmaps": {name: e.heatmaps for name, e in explained.items()}},
        layer=layer, images=batch, originals=originals if originals is not None else decoded,
        sources=[str(s) for s in sources] if sources is not None else paths,
        targets=first.targets, target_names=first.target_names, predictions=first.predictions,
        metadata={"methods": list(explained), "layers": {name: e.layer for name, e in explained.items()},
                  "target_scores": first.metadata.get("target_scores"),
                  "layer_is_default": all(e.metadata.get("layer_is_default", True) for e in explained.values())},
        index_offset=index_offset,
    )


def check_options_named(options, names, kind: str) -> None:
    """Options given for a method or metric that is not run would be dropped without a word."""
    unknown = [name for name in (options or {}) if name not in names]
    if unknown:
        raise XconvError(f"options given for {kind} {', '.join(map(repr, unknown))}, which is not run "
                         f"(running: {', '.join(names)}; {kind}_options maps each {kind} to its options, "
                         f"e.g. {{{names[0]!r}: {{...}}}})")


def name_list(names) -> list[str]:
    """Names given as a list or as one comma-separated string ("gradcam,layercam"): stripped, each once."""
    parts = names.split(",") if isinstance(names, str) else (names or [])
    return list(dict.fromkeys(name.strip() for name in parts if name.strip()))


def score(model: Model, images, methods=("gradcam",), metrics=("deletion", "insertion"), target=None, *,
          method_options=None, metric_options=None, batch_size: int = 16, table=None, track=None):
    """Score every method with every metric (names, or one comma-separated string) on ``images`` (paths,
    decoded in chunks of ``batch_size``, or a uint8 array at input size), plus the ``random`` and ``center`` reference rows.
    ``target``: a class for every image, one per image, ``None`` for the predicted class, or ``"annotated"``:
    each file once per class a metric's annotations give it (the pointing game's boxes). Returns the per-image
    rows (image, target, method, metric, value): a pandas DataFrame when pandas is installed, else a list
    of dicts. ``table``: a :class:`xconv.scoring.ScoreTable` to fill (summaries, curves, files; files that
    could not be decoded are in ``table.skipped``). ``track(batches, total)`` wraps the iterator of decoded
    batches, ``total`` of them (a progress bar)."""
    from xconv.scoring import ScoreTable, annotated_pairs, score_batch

    require_model(model)
    registry = get_registry()
    methods, metrics = name_list(methods), name_list(metrics)
    if not methods or not metrics:
        raise XconvError("score needs at least one method and one metric, e.g. methods=['gradcam'], "
                         "metrics=['deletion', 'insertion']")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise XconvError(f"batch_size is a whole number of images, at least 1; got {batch_size!r}")
    check_options_named(method_options, methods, "method")
    check_options_named(metric_options, metrics, "metric")
    for name in methods:
        heatmap_method(name, "only heatmap methods can be scored")
    method_options = {name: resolve_options(registry.get("explainer", name), (method_options or {}).get(name, {}))
                      for name in methods}
    metric_objects = {}
    for name in metrics:
        entry = registry.entry("metric", name)
        resolved = resolve_options(entry.cls, (metric_options or {}).get(name, {}))
        with entry.guarded("load"), already_resolved():
            metric_objects[name] = entry.cls(model, **resolved)
    own_table = table is None  # else the caller reads table.skipped, as xconv score does
    table = table if table is not None else ScoreTable()
    if isinstance(target, str) and target == "annotated":
        if isinstance(images, np.ndarray):
            raise XconvError("target 'annotated' needs image files: annotations name files, an array has none")
        images, target, table.unannotated = annotated_pairs(path_list(images), metric_objects.values())
    if isinstance(images, np.ndarray):
        check_array(model, images)
        chunks = [list(range(i, min(i + batch_size, len(images)))) for i in range(0, len(images), batch_size)]
        batches = ((images[chunk], None, None, []) for chunk in chunks)
    else:
        from xconv.streaming import decoded_ahead, good_positions

        paths = path_list(images)
        if not paths:
            raise XconvError("no images given")
        chunks = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
        # Decoded in threads a few chunks ahead of the model, so memory stays flat; files that fail are
        # listed, not fatal.
        batches = (decoded for _, decoded in decoded_ahead(chunks, lambda chunk: load_batch(chunk, model.input_size)))
    per_image = isinstance(target, (list, tuple)) or (isinstance(target, np.ndarray) and target.ndim > 0)
    if per_image:
        target = list(target)
        check_per_image("targets", target, len(images) if isinstance(images, np.ndarray) else len(paths))
    start = 0
    for index, (batch, originals, good, errors) in enumerate(track(batches, len(chunks)) if track else batches):
        table.skipped.extend(errors)
        chunk = chunks[index]
        if len(batch):
            # Each chunk's own targets, for the images of it that decoded.
            kept = target[start:start + len(chunk)] if per_image else target
            if per_image and good is not None:
                kept = [kept[position] for position in good_positions(list(enumerate(map(Path, chunk))), good)]
            with no_retracing_notices():
                score_batch(model, batch, methods, metric_objects, table, target=kept, originals=originals,
                            sources=good, method_options=method_options, seed=index, position=start)
        start += len(chunk)
    if own_table and table.skipped:  # an empty table, or one short of some files, was returned without a word
        if not table.rows:
            raise XconvError(f"none of the {start} inputs could be decoded: {table.skipped[0]}")
        import warnings

        warnings.warn(f"{len(table.skipped)} of {start} inputs could not be decoded and are left out, e.g. "
                      f"{table.skipped[0]}", XconvWarning, stacklevel=2)
    try:
        import pandas

        return pandas.DataFrame(table.rows)
    except ImportError:
        return table.rows


def unfit_renderer(name: str, kind: str, fits) -> XconvError:
    """The error for renderer ``name``, which cannot draw ``kind`` explanations; it names the renderers that
    can (``fits(renderer class)``)."""
    registry = get_registry()
    fitting = [other for other in registry.names("renderer") if fits(registry.get("renderer", other))]
    return XconvError(f"renderer {name!r} cannot draw {kind} explanations; "
                      f"use one of: {', '.join(fitting) or 'none installed'}")


def render(explanation: Explanation, renderer: str = "overlay", out_dir: str | os.PathLike = "xconv-out",
           **options) -> list[Output]:
    """Write ``explanation`` with renderer ``renderer`` into ``out_dir`` (created); returns one
    :class:`~xconv.Output` per file written: its path, and the input index and target it shows."""
    if not isinstance(explanation, Explanation):
        raise XconvError(f"render takes an xconv.Explanation (what xconv.explain returns); got {type(explanation).__name__}")
    registry = get_registry()
    entry = registry.entry("renderer", renderer)
    renderer_cls = entry.cls
    if not renderer_cls.can_render(explanation):
        raise unfit_renderer(renderer, explanation.kind, lambda cls: cls.can_render(explanation))
    resolved = resolve_options(renderer_cls, options)
    check_output_folder(out_dir)
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with entry.guarded("render"):
            with already_resolved():
                drawer = renderer_cls(**resolved)
            written = drawer.render(explanation, out)
            if not isinstance(written, (list, tuple)):
                raise TypeError(f"render() returned {type(written).__name__}, not a list of xconv.Output")
            return [item if isinstance(item, Output) else Output(Path(item)) for item in written]
    except BaseException:
        if created and not any(out.iterdir()):  # a refused drawing (a channel out of range) leaves no folder
            out.rmdir()
        raise


__all__ = ["ImageError", "XconvError", "compare", "explain", "load_images", "load_model", "predict", "render", "score"]
