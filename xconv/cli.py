"""The ``xconv`` command line: thin typer commands over the public API.

TensorFlow is imported only inside commands that load a model, so ``xconv --help`` and ``xconv list``
start fast. User mistakes print one line (``xconv: error: ...``) and exit non-zero, never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

import xconv
from xconv.errors import XconvError
from xconv.registry import get_registry

app = typer.Typer(
    name="xconv",
    help="See how a convolutional network sees an image: activations, filter patterns and Grad-CAM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

MODEL_OPTION = typer.Option("catsdogs", "--model", "-m", help="Model name (see `xconv list`) or path to a .keras file.")
WEIGHTS_OPTION = typer.Option(None, "--weights", "-w", help="'imagenet', a weights file path, or 'none' for random init.")
UNSAFE_OPTION = typer.Option(False, "--unsafe", help="Load .keras files that contain code (only files you trust).")
JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object per input instead of text.")


def fail(message: str, code: int = 1):
    typer.echo(f"xconv: error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(command):
    """Turn XconvError (and Ctrl-C) into one line on stderr and a non-zero exit."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except XconvError as error:
            fail(str(error))
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper


def parse_weights(weights: Optional[str]):
    if weights is None:
        return "default"
    return None if weights.lower() == "none" else weights


def open_model(model: str, weights: Optional[str], unsafe: bool = False):
    return xconv.load_model(model, weights=parse_weights(weights), safe_mode=not unsafe)


def report_warnings() -> None:
    for warning in get_registry().warnings:
        typer.echo(f"xconv: warning: {warning}", err=True)


def progress(items, description: str):
    """A rich progress bar on a terminal for long batches; plain iteration otherwise."""
    items = list(items)
    if len(items) > 1 and sys.stderr.isatty():
        from rich.progress import track

        return track(items, description=description, transient=True)
    return items


def chunks(items: list, size: int):
    return [items[start:start + size] for start in range(0, len(items), size)]


@app.command("list")
@user_errors
def list_plugins(as_json: bool = typer.Option(False, "--json", help="Print a JSON array instead of a table.")):
    """List every model, explainer and renderer with the distribution that provides it."""
    registry = get_registry()
    rows = [
        {"kind": kind, "name": name, "distribution": entry.distribution, "description": entry.description}
        for kind in ("model", "explainer", "renderer")
        for name, entry in sorted(registry.entries[kind].items())
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("kind", "name", "distribution", "description")
        for row in rows:
            table.add_row(row["kind"], row["name"], row["distribution"], row["description"])
        Console().print(table)
    report_warnings()


@app.command()
@user_errors
def predict(
    images: List[Path] = typer.Argument(..., help="Image files or folders of images."),
    model: str = MODEL_OPTION,
    weights: Optional[str] = WEIGHTS_OPTION,
    top: int = typer.Option(1, "--top", "-k", min=1, help="How many classes to show per image."),
    as_json: bool = JSON_OPTION,
    unsafe: bool = UNSAFE_OPTION,
):
    """Classify images."""
    loaded = open_model(model, weights, unsafe)
    paths = xconv.images.expand_inputs(images)
    failures = 0
    for group in progress(chunks(paths, 32), "predicting"):
        batch, _, good, errors = xconv.load_images(group, loaded)
        results = xconv.predict(loaded, batch, top=top) if len(batch) else []
        for path, result in zip(good, results):
            if as_json:
                typer.echo(json.dumps({"path": str(path), "predictions": [{"label": l, "score": s} for l, s in result]}))
            else:
                typer.echo(f"{path}: " + ", ".join(f"{label} {score:.3f}" for label, score in result))
        failures += report_bad_inputs(errors, as_json)
    finish(failures, len(paths))


def report_bad_inputs(errors, as_json: bool) -> int:
    for error in errors:
        if as_json:
            typer.echo(json.dumps({"path": error.path, "error": error.reason}))
        else:
            typer.echo(f"xconv: error: {error}", err=True)
    return len(errors)


def finish(failures: int, total: int) -> None:
    if total == 0:
        fail("no input images (folders are searched for .jpg, .png, .bmp, .webp, .tif and .gif files)")
    if failures:
        typer.echo(f"xconv: {failures} of {total} inputs failed", err=True)
        raise typer.Exit(1)


@app.command()
@user_errors
def explain(
    images: List[Path] = typer.Argument(None, help="Image files or folders (not needed for --method filters)."),
    method: str = typer.Option("gradcam", "--method", help="Explainer (see `xconv list`)."),
    model: str = MODEL_OPTION,
    weights: Optional[str] = WEIGHTS_OPTION,
    layer: List[str] = typer.Option(None, "--layer", "-l", help="Layer name or path; repeatable for activations."),
    target: List[str] = typer.Option(None, "--target", "-t", help="Class name or index (repeatable); default: the predicted class."),
    renderer: Optional[str] = typer.Option(None, "--renderer", "-r", help="Renderer; default: the first that fits the method."),
    out: Path = typer.Option(Path("xconv-out"), "--out", "-o", help="Output folder (created)."),
    colormap: str = typer.Option("jet", "--colormap", help="OpenCV colormap for heatmaps."),
    grid: bool = typer.Option(False, "--grid", help="Overlay: draw the explained layer's cell grid (receptive fields)."),
    score: Optional[str] = typer.Option(None, "--score", help="CAM methods: logit, contrast (log-odds) or auto."),
    channel: Optional[int] = typer.Option(None, "--channel", help="Grid: render only channel K, large."),
    filters: Optional[str] = typer.Option(None, "--filters", help="Filters: which ones, e.g. 0-15, 3,7,9 or all."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Filters: gradient-ascent steps."),
    step_size: Optional[float] = typer.Option(None, "--step-size", help="Filters: ascent step size."),
    size: Optional[int] = typer.Option(None, "--size", min=16, help="Filters: pattern size in pixels."),
    as_json: bool = JSON_OPTION,
    unsafe: bool = UNSAFE_OPTION,
):
    """Explain images with a method and write the pictures into OUT."""
    loaded = open_model(model, weights, unsafe)
    explainer_cls = get_registry().get("explainer", method)
    renderer_name = renderer or default_renderer(explainer_cls.kind)
    render_options = given(colormap=colormap if renderer_name == "overlay" or colormap != "jet" else None,
                           grid=grid or None, channel=channel)
    options = given(filters=filters, steps=steps, step_size=step_size, size=size, score=score)
    layer_option = layer[0] if layer and len(layer) == 1 else (list(layer) if layer else None)
    if not explainer_cls.needs_images:
        explanation = xconv.explain(loaded, None, method=method, layer=layer_option, **options)
        written = [str(p) for p in xconv.render(explanation, renderer_name, out, **render_options)]
        if as_json:
            typer.echo(json.dumps({"method": method, "layer": explanation.layer, "outputs": written,
                                   "scores": np.asarray(explanation.arrays.get("scores", [])).tolist()}))
        else:
            typer.echo(f"{method} at {explanation.layer}")
            for item in written:
                typer.echo(f"  wrote {item}")
        return
    targets = [loaded.class_index(t) for t in target] if target else [None]
    paths = xconv.images.expand_inputs(images or [])
    failures = 0
    offset = 0
    for group in progress(chunks(paths, 16), f"{method}"):
        batch, originals, good, errors = xconv.load_images(group, loaded)
        index_offset, offset = offset, offset + len(good)
        failures += report_bad_inputs(errors, as_json)
        if not good:
            continue
        written_per_image = [[] for _ in good]
        explanation = None
        for class_index in targets:
            explanation = xconv.explain(loaded, batch, method=method, target=class_index, layer=layer_option,
                                        originals=originals, sources=good, index_offset=index_offset, **options)
            for path in xconv.render(explanation, renderer_name, out, **render_options):
                written_per_image[owner_of(path, explanation)].append(str(path))
        for index, path in enumerate(good):
            describe(explanation, index, path, written_per_image[index], targets, loaded, as_json)
    finish(failures, len(paths))


def given(**options) -> dict:
    """Only the options the user set, so each plugin keeps its own defaults."""
    return {key: value for key, value in options.items() if value is not None}


def owner_of(path: Path, explanation) -> int:
    """Which input a written file belongs to, from the stem prefix the renderers use."""
    for index in range(len(explanation)):
        if Path(path).name.startswith(explanation.stem(index) + "_"):
            return index
    return 0


def describe(explanation, index, path, written, targets, model, as_json: bool) -> None:
    label, score = explanation.predictions[index] if explanation.predictions else (None, None)
    target_names = [model.class_names[t] for t in targets if t is not None] or (
        [explanation.target_names[index]] if explanation.target_names else [])
    if as_json:
        typer.echo(json.dumps({"path": str(path), "predicted": label, "score": score, "targets": target_names,
                               "layer": explanation.layer, "outputs": written}))
        return
    layers = explanation.layer if isinstance(explanation.layer, str) else f"{len(explanation.layer)} layers"
    typer.echo(f"{path}: predicted {label} {score:.3f}; explained {', '.join(target_names)} at {layers}")
    for item in written:
        typer.echo(f"  wrote {item}")


def default_renderer(kind: str) -> str:
    registry = get_registry()
    for name in registry.names("renderer"):
        if kind in registry.get("renderer", name).accepts:
            return name
    raise XconvError(f"no installed renderer can draw {kind!r} explanations")


@app.command()
@user_errors
def layers(model: str = MODEL_OPTION, weights: Optional[str] = WEIGHTS_OPTION, unsafe: bool = UNSAFE_OPTION):
    """List conv and pooling layers with output shapes; * marks the default Grad-CAM layer."""
    from xconv.layers import iter_layers

    loaded = open_model(model, weights, unsafe)
    default = loaded.default_layer
    for info in iter_layers(loaded.keras_model):
        if info.is_spatial and (info.type in xconv.layers.FEATURE_LAYER_TYPES or info.path == default):
            mark = "*" if info.path == default else " "
            shape = "x".join(str(d) for d in info.output_shape[1:])
            typer.echo(f"{mark} {info.path:<40} {info.type:<18} {shape}")


@app.command()
@user_errors
def train(
    data: Path = typer.Option(..., "--data", help="Folder with train/<class>/ and validation/<class>/ images."),
    model: str = typer.Option("catsdogs", "--model", "-m", help="Trainable model: catsdogs or inceptionv3-transfer."),
    epochs: int = typer.Option(60, "--epochs", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Square input size; default: the model's."),
    out: Path = typer.Option(Path("model.keras"), "--out", "-o", help="Best checkpoint (.keras); history and curves beside it."),
    patience: int = typer.Option(15, "--patience", min=1, help="Early stopping: epochs without a better val_accuracy."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Train without data augmentation."),
    seed: int = typer.Option(1337, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint at --out."),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate"),
    weights: Optional[str] = WEIGHTS_OPTION,
    fine_tune: int = typer.Option(0, "--fine-tune", min=0, help="Then unfreeze the top N base layers at a low learning rate."),
):
    """Train a model on a folder of labelled photos (best checkpoint, early stopping, CSV history, curves)."""
    from xconv.training import TrainConfig, train as run_training

    if out.suffix != ".keras":
        raise XconvError(f"--out must end in .keras, got {out}")
    model_cls = get_registry().get("model", model)
    if not model_cls.trainable:
        trainable = [n for n in get_registry().names("model") if get_registry().get("model", n).trainable]
        raise XconvError(f"model {model!r} cannot be trained; choose from: {', '.join(trainable)}")
    config = TrainConfig(epochs=epochs, batch_size=batch_size, patience=patience, augment=not no_augment, seed=seed)
    if learning_rate is not None:
        config.learning_rate = learning_rate
    size = (image_size, image_size) if image_size else tuple(model_cls.default_image_size)
    summary = run_training(data, model_cls, out, config, size, weights=parse_weights(weights), resume=resume,
                           fine_tune=fine_tune, echo=typer.echo)
    if summary["interrupted"]:
        typer.echo("interrupted: the best checkpoint so far is kept")
    typer.echo(f"best val_accuracy {summary['best_val_accuracy']:.4f} after {summary['epochs_run']} epochs "
               f"({summary['seconds_per_epoch']:.1f} s/epoch, {summary['train_images_per_second']:.1f} images/s)")
    for key in ("checkpoint", "history", "curves"):
        typer.echo(f"wrote {summary[key]}")


@app.command()
@user_errors
def evaluate(
    data: Path = typer.Option(..., "--data", help="Folder of <class>/ folders (or with test/ or validation/ inside)."),
    model: str = MODEL_OPTION,
    weights: Optional[str] = WEIGHTS_OPTION,
    out: Path = typer.Option(Path("xconv-out"), "--out", "-o", help="Folder for the confusion-matrix PNG."),
    flip: bool = typer.Option(False, "--flip", help="Average predictions over each image and its mirror image."),
    as_json: bool = JSON_OPTION,
    unsafe: bool = UNSAFE_OPTION,
):
    """Accuracy, per-class precision and recall, confusion matrix and the most confidently wrong images."""
    from xconv.evaluation import evaluate as run_evaluation, plot_confusion

    loaded = open_model(model, weights, unsafe)
    result = run_evaluation(loaded, data, flip_average=flip)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_confusion(result, out / "confusion_matrix.png")
    report = {**result.as_dict(), "model": loaded.display_name, "confusion_png": str(png)}
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        return
    typer.echo(f"{loaded.display_name}: accuracy {result.accuracy:.4f} on {result.images} images")
    for name, row in result.per_class().items():
        typer.echo(f"  {name:<20} precision {row['precision']:.4f}  recall {row['recall']:.4f}  ({row['support']} images)")
    width = max(len(n) for n in result.class_names) + 2
    typer.echo("confusion matrix (rows: true, columns: predicted)")
    typer.echo(" " * width + "".join(f"{n:>{width}}" for n in result.class_names))
    for name, row in zip(result.class_names, result.confusion):
        typer.echo(f"{name:<{width}}" + "".join(f"{c:>{width}}" for c in row))
    if result.wrong:
        typer.echo("most confidently wrong:")
        for item in result.wrong:
            typer.echo(f"  {item['path']}: {item['true']} predicted as {item['predicted']} ({item['confidence']:.3f})")
    for line in result.skipped:
        typer.echo(f"skipped {line}")
    typer.echo(f"wrote {png}")


@app.command()
@user_errors
def demo(out: Path = typer.Option(Path("xconv-demo"), "--out", "-o", help="Output folder (created).")):
    """Offline demo on a cat photo shipped with scikit-image: predict, then every view for both classes."""
    from xconv.demo import run_demo

    for line in run_demo(out):
        typer.echo(line)


def build_app() -> typer.Typer:
    """The app with plugin commands added through the ``xconv_register_commands`` hook."""
    from xconv.plugins import call_each

    registry = get_registry()
    call_each(registry.loaded, "xconv_register_commands", lambda plugin, dist: {"app": app})
    return app


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter is not for users
    build_app()(prog_name="xconv")


if __name__ == "__main__":
    main()
