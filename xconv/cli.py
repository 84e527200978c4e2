"""The ``xconv`` command line: thin typer commands over the public API.

TensorFlow is imported only inside commands that load a model, so ``xconv --help`` and ``xconv list``
start fast. User and plugin mistakes print one line (``xconv: error: ...``) and exit non-zero, never a
traceback (``--debug`` or ``XCONV_DEBUG=1`` shows it; :mod:`xconv.cli_errors`). Plugin options travel as
``-O NAME=VALUE`` and are checked against each plugin's declaration (:mod:`xconv.options`). What the
commands print lives in :mod:`xconv.cli_output`.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer

import xconv
from xconv.cli_errors import fail, finish, report_bad_inputs, show_warning, user_errors
from xconv.cli_output import (KIND_ORDER, describe_record, describe_synthesized, finish_stream, listing_row, progress,
                              show_evaluation, show_plugin, show_score_table, stream_with_progress)
from xconv.errors import XconvError
from xconv.files import check_output_folder
from xconv.images import MAX_IMAGE_SIDE
from xconv.options import declared_options, parse_assignments, resolve_options, route_options
from xconv.plugin_loading import canonical
from xconv.quiet import debugging
from xconv.registry import disable_plugins, get_registry

app = typer.Typer(
    name="xconv",
    help="See how a convolutional network sees an image: activations, filter patterns and Grad-CAM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

MODEL_OPTION = typer.Option("catsdogs", "--model", "-m", help="Model name (see `xconv list`) or path to a .keras file.")
WEIGHTS_OPTION = typer.Option(None, "--weights", "-w", help="'default' (the model's own: bundled, or 'imagenet' for InceptionV3), "
                              "a weights file path, or 'none' for random init.")
UNSAFE_OPTION = typer.Option(False, "--unsafe", help="Load .keras files that contain code (only files you trust).")
JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object per input instead of text.")
OPTIONS_OPTION = typer.Option(None, "--option", "-O", help="A plugin option NAME=VALUE (repeatable); scope it as "
                              "model.NAME, method.NAME or renderer.NAME when several declare it. `xconv list NAME` "
                              "shows a plugin's options.")
PREPROCESS_OPTION = typer.Option(None, "--preprocess", help="For .keras files: what the network expects its pixels "
                                 "turned into: none (0-255), unit (0-1), tf (-1..1), torch or caffe (ImageNet).")
IMAGES_HELP = "Image files or folders (searched recursively, in sorted order; name sub-folders to limit it)."


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and TensorFlow's own start-up logging."),
    plugin: List[str] = typer.Option(None, "--plugin", "-p", help="no:NAME disables the plugin NAME (entry-point "
                                     "or distribution name), like pytest's -p no:NAME; repeatable. "
                                     "XCONV_DISABLE_PLUGINS=NAME,... does the same."),
):
    """Options for every command."""
    if debug:
        os.environ["XCONV_DEBUG"] = "1"
    bad = [value for value in plugin or [] if not value.startswith("no:")]
    if bad:
        raise typer.BadParameter(f"{bad[0]!r}: write -p no:NAME to disable a plugin", param_hint="-p")
    disable_plugins({value[3:] for value in plugin or []})
    warnings.showwarning = show_warning
    logging.getLogger("tensorflow").setLevel(logging.DEBUG if debugging() else logging.ERROR)
    registry = get_registry()
    for warning in registry.warnings:
        typer.echo(f"xconv: warning: {warning}", err=True)
    found = {canonical(name) for pair in registry.loaded.disabled for name in pair}
    for value in plugin or []:
        if canonical(value[3:]) not in found:
            typer.echo(f"xconv: warning: -p {value}: no installed plugin or distribution has that name", err=True)


def parse_weights(weights: Optional[str]):
    if weights is None:
        return "default"
    return None if weights.lower() == "none" else weights


def model_class(model: str):
    """The Model class a --model value names (registered name or file), for option routing before loading."""
    if model.endswith(xconv.api.MODEL_FILE_SUFFIXES) or os.sep in model or Path(model).is_file():
        from xconv.modelfile import KerasFileModel

        return KerasFileModel
    return get_registry().get("model", model)


def open_model(model: str, weights: Optional[str], unsafe: bool = False, preprocess: Optional[str] = None,
               options: dict | None = None):
    return xconv.load_model(model, weights=parse_weights(weights), safe_mode=not unsafe, preprocess=preprocess,
                            **(options or {}))


def routed_options(assignments: list[tuple], components: dict[str, type], groups=None) -> dict[str, dict]:
    """Route -O values to the components that declare them and check them now, before any model loads."""
    routed = route_options(assignments, components, groups)
    for scope, cls in components.items():
        resolve_options(cls, routed[scope])
    return routed


def chunks(items: list, size: int):
    return [items[start:start + size] for start in range(0, len(items), size)]


@app.command("list")
@user_errors
def list_plugins(
    name: Optional[str] = typer.Argument(None, help="Show one plugin in detail, with its options.", metavar="NAME"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """List every model, explainer, renderer and metric with the distribution that provides it (or one, in detail)."""
    registry = get_registry()
    if name is not None:
        return show_plugin(name, as_json)
    rows = [listing_row(registry, kind, entry_name, entry)
            for kind in KIND_ORDER
            for entry_name, claimants in sorted(registry.claims[kind].items()) for entry in claimants]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("kind", "name", "distribution", "description")
    for row in rows:
        note = f" ({row['note']})" if row["note"] else ""
        table.add_row(row["kind"], row["name"], row["distribution"], row["description"] + note)
    Console().print(table)


@app.command()
@user_errors
def predict(
    images: List[Path] = typer.Argument(..., help=IMAGES_HELP, metavar="IMAGES"),
    model: str = MODEL_OPTION,
    weights: Optional[str] = WEIGHTS_OPTION,
    top: int = typer.Option(1, "--top", "-k", min=1, help="How many classes to show per image."),
    option: List[str] = OPTIONS_OPTION,
    preprocess: Optional[str] = PREPROCESS_OPTION,
    as_json: bool = JSON_OPTION,
    unsafe: bool = UNSAFE_OPTION,
):
    """Classify images."""
    from xconv.streaming import decoded_ahead, good_positions

    routed = routed_options(parse_assignments(option), {"model": model_class(model)})
    paths = xconv.images.expand_inputs(images)
    if not paths:
        finish(0, 0)  # before the model loads: nothing to do is said at once
    loaded = open_model(model, weights, unsafe, preprocess, routed["model"])
    failures = 0
    groups = chunks(paths, 32)
    # Decoding runs in threads ahead of the model, as in `xconv explain`.
    decoded = decoded_ahead(groups, lambda group: xconv.load_images(group, loaded))
    for group, (batch, _, good, errors) in progress(decoded, "predicting", total=len(groups)):
        results = xconv.predict(loaded, batch, top=top) if len(batch) else []
        done = dict(zip(good_positions(list(enumerate(group)), good), zip(good, results)))
        failed = iter(errors)  # the inputs that are not done, in their order
        for position in range(len(group)):  # every line in input order, a failure where its input is
            if position not in done:
                failures += report_bad_inputs([next(failed)], as_json)
                continue
            path, result = done[position]
            if as_json:
                typer.echo(json.dumps({"path": str(path), "predictions": [{"label": l, "score": s} for l, s in result]}))
            else:
                typer.echo(f"{path}: " + ", ".join(f"{label} {score:.3f}" for label, score in result))
    finish(failures, len(paths))


@app.command()
@user_errors
def explain(
    images: List[Path] = typer.Argument(None, help=IMAGES_HELP + " Not needed for --method filters.", metavar="IMAGES"),
    method: str = typer.Option("gradcam", "--method", help="Explainer (see `xconv list`); several as a,b,c or 'all' "
                               "are compared side by side."),
    model: str = MODEL_OPTION,
    weights: Optional[str] = WEIGHTS_OPTION,
    layer: List[str] = typer.Option(None, "--layer", "-l", help="Layer name or path; repeatable for activations."),
    target: List[str] = typer.Option(None, "--target", "-t", help="Class name or index (repeatable); default: the predicted class."),
    renderer: Optional[str] = typer.Option(None, "--renderer", "-r", help="Renderer; default: the first that fits the method."),
    out: Path = typer.Option(Path("xconv-out"), "--out", "-o", help="Output folder (created)."),
    option: List[str] = OPTIONS_OPTION,
    colormap: Optional[str] = typer.Option(None, "--colormap", help="Same as -O colormap=NAME (overlay and grid)."),
    grid: bool = typer.Option(False, "--grid", help="Same as -O grid=true: the overlay draws the layer's cells."),
    channel: Optional[int] = typer.Option(None, "--channel", help="Same as -O channel=K: the grid shows channel K."),
    filters: Optional[str] = typer.Option(None, "--filters", help="Same as -O filters=SPEC: 0-15, 3,7,9 or all."),
    preprocess: Optional[str] = PREPROCESS_OPTION,
    as_json: bool = JSON_OPTION,
    unsafe: bool = UNSAFE_OPTION,
    resume: bool = typer.Option(False, "--resume", help="Skip inputs the output folder's manifest.jsonl records "
                                "as done (their files present)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="A line per input (default: a progress bar and "
                                 "a summary; every input is in OUT/manifest.jsonl)."),
    engine: str = typer.Option("local", "--engine", help="local (this machine, streaming) or ray (Ray Data; "
                               "pip install 'xconv\\[ray]')."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to join (default: RAY_ADDRESS, or "
                                          "a local Ray instance)."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", min=1, help="Ray actors, each with its own "
                                              "model (default: one per GPU of the cluster, else one per CPU)."),
):
    """Explain images with a method (or several: a,b,c or all, compared side by side) and write the pictures into OUT."""
    registry = get_registry()
    methods = method_names(method)
    classes = {name: registry.get("explainer", name) for name in methods}
    several = len(methods) > 1
    if several:
        xconv.api.check_comparable(methods)
    kind = "comparison" if several else classes[methods[0]].kind
    renderer_name = renderer or get_registry().default_renderer(kind)
    renderer_cls = registry.get("renderer", renderer_name)
    per_method = several and "heatmap" in renderer_cls.accepts and "comparison" not in renderer_cls.accepts
    drawn_kind = "heatmap" if per_method else kind
    if drawn_kind not in renderer_cls.accepts:  # said now, not after a folder's first chunk has been computed
        raise xconv.api.unfit_renderer(renderer_name, drawn_kind, lambda cls: drawn_kind in cls.accepts)
    # The drawing flags go to the renderer when it has them, so a method's option of the same name (rise's
    # cells were once called grid) never receives them; else the usual routing says who has them.
    drawn = declared_options(renderer_cls)
    flags = [("colormap", colormap), ("grid", "true" if grid else None), ("channel", channel)]
    aliases = [("renderer" if name in drawn else None, name, value) for name, value in flags if value is not None]
    aliases += [(None, "filters", filters)] if filters is not None else []
    method_scopes = classes if several else {"method": classes[methods[0]]}
    routed = routed_options(parse_assignments(option) + aliases,
                            {"model": model_class(model), **method_scopes, "renderer": renderer_cls},
                            {"method": list(classes)} if several else None)
    from xconv.batch_job import ExplainJob, JobSpec

    spec = JobSpec(model=model, weights=parse_weights(weights), preprocess=preprocess, safe_mode=not unsafe,
                   methods=methods, layer=layer[0] if layer and len(layer) == 1 else (list(layer) if layer else None),
                   renderer=renderer_name, routed=routed, per_method=per_method, out=str(out))
    if engine not in ("local", "ray"):
        raise XconvError(f"--engine must be local or ray, got {engine!r}")
    if concurrency is not None and engine != "ray":
        raise XconvError("--concurrency sets the number of Ray actors: use it with --engine ray")
    if engine == "ray" and (not classes[methods[0]].needs_images or resume):
        raise XconvError("--engine ray explains photos, without --resume" if resume else
                         f"method {methods[0]!r} makes its own inputs; run it with the local engine")
    from xconv.modelfile import KerasFileModel

    # Unseeded initializers: files from two runs, or from two actors, would come from two different models.
    # (A model file takes no --weights at all; opening it says so.)
    if spec.weights is None and (resume or engine == "ray") and model_class(model) is not KerasFileModel:
        raise XconvError("--weights none draws new random weights " + ("in every Ray actor" if engine == "ray" else
                         "in every run, so --resume would mix two models") + "; save one model as a .keras file "
                         "and pass it with --model FILE")
    if not classes[methods[0]].needs_images:
        if images:
            raise XconvError(f"method {methods[0]!r} makes its own inputs; give no images")
        check_output_folder(out)
        job = ExplainJob(spec)
        [explanation] = job.explanations(None, None)
        describe_synthesized(explanation, job.draw(explanation), as_json)
        return
    if not images:
        fail("no input images (folders are searched recursively for .jpg, .png, .bmp, .webp, .tif and .gif files)")
    spec.targets = list(target) if target else [None]
    paths = input_photos(images, out)
    if not paths:
        fail(f"no input images in {', '.join(map(str, images))} (folders are searched recursively for .jpg, "
             ".png, .bmp, .webp, .tif and .gif files)")

    def show(records):
        for record in records:
            if record["status"] == "error":
                report_bad_inputs([xconv.ImageError(record["input"], record["error"])], as_json)
            elif as_json:
                typer.echo(json.dumps({"path": record["input"], **record}))  # "path", as predict --json says
            elif verbose:
                describe_record(record)

    check_output_folder(out)
    if engine == "ray":
        from xconv.ray_engine import explain_on_ray

        # Workers do not share the driver's working directory: every path they open is made absolute.
        spec.out = str(out.resolve())
        spec.model, spec.weights = (str(Path(value).resolve()) if isinstance(value, str) and Path(value).is_file()
                                    else value for value in (spec.model, spec.weights))
        summary = explain_on_ray(paths, spec, address=address, concurrency=concurrency, on_records=show,
                                 out_as_given=str(out))
    else:
        job = ExplainJob(spec)
        summary = stream_with_progress(paths, out, job.decode, job.compute, job.write, show, resume, f"{method}",
                                       job.key())
    hint = ("rerun with the local engine and --resume, which skips what the manifest records" if engine == "ray"
            else "rerun with --resume to continue")
    finish_stream(summary, out, as_json, hint)


def input_photos(images: list[Path], out: Path) -> list[Path]:
    """The photos named or inside the folders named, except the files of an output folder placed inside an
    input folder: a rerun would take its own pictures for photos (and renumber the rest)."""
    paths = xconv.images.expand_inputs(images, output_folder=out)
    inside = os.path.join(os.path.realpath(out), "")
    folders = [os.path.join(os.path.realpath(item), "") for item in images if os.path.isdir(item)]
    if any(inside != folder and inside.startswith(folder) for folder in folders):
        own = len(xconv.images.expand_inputs([out])) if out.is_dir() else 0  # counted only where there can be some
        if own:
            typer.echo(f"left out {own} files inside the output folder {out}", err=True)
    return paths


def method_names(text: str) -> list[str]:
    """'gradcam' -> one method; 'a,b,c' -> several; 'all' -> every installed heatmap method for images."""
    if text.strip().lower() == "all":
        registry = get_registry()
        return [name for name in registry.names("explainer")
                if registry.get("explainer", name).kind == "heatmap" and registry.get("explainer", name).needs_images]
    names = xconv.api.name_list(text)
    if not names:
        raise XconvError("--method needs a method name, a comma-separated list, or 'all'")
    return names


@app.command()
@user_errors
def score(
    images: List[Path] = typer.Argument(..., help=IMAGES_HELP, metavar="IMAGES"),
    method: str = typer.Option("gradcam", "--method", help="Heatmap methods to score: a,b,c or 'all'."),
    metric: str = typer.Option("deletion,insertion", "--metric", help="Metrics: a,b,c or 'all' (see `xconv list`)."),
    boxes: Optional[Path] = typer.Option(None, "--boxes", help="JSON or CSV of boxes per image and class: adds "
                                         "the pointing metric (same as -O pointing.boxes=FILE)."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Class name or index; 'predicted'; or "
                                         "'annotated': each image once per class its boxes give, the pointing "
                                         "game's protocol. Default: annotated with boxes, else predicted."),
    model: str = MODEL_OPTION,
    weights: Optional[str] = WEIGHTS_OPTION,
    out: Path = typer.Option(Path("xconv-score"), "--out", "-o", help="Folder for score.csv, score.json, score.png."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Images decoded and scored together."),
    option: List[str] = OPTIONS_OPTION,
    preprocess: Optional[str] = PREPROCESS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON instead of a table."),
    unsafe: bool = UNSAFE_OPTION,
):
    """Rank explanation methods by faithfulness metrics on your photos, against random and center maps."""
    from xconv.scoring import REFERENCES, ScoreTable, json_text, write_files

    registry = get_registry()
    methods = method_names(method)
    boxes_options = [value for scope, name, value in parse_assignments(option)
                     if name == "boxes" and scope in (None, "pointing", "metric")]
    if boxes and boxes_options:
        raise XconvError(f"boxes given twice: --boxes {boxes} and -O boxes={boxes_options[0]}; give one")
    given_boxes = boxes or boxes_options
    if metric.strip().lower() == "all":  # pointing only with boxes to point at
        metrics = [name for name in registry.names("metric") if name != "pointing" or given_boxes]
    else:
        metrics = xconv.api.name_list(metric)
    if given_boxes and "pointing" not in metrics:
        metrics.append("pointing")  # boxes ask for the pointing game
    if not metrics:
        raise XconvError("--metric needs at least one metric, e.g. deletion,insertion (see `xconv list`)")
    method_classes = {name: registry.get("explainer", name) for name in methods}
    metric_classes = {name: registry.get("metric", name) for name in metrics}
    assignments = parse_assignments(option) + ([("pointing", "boxes", str(boxes))] if boxes else [])
    components = {"model": model_class(model), **method_classes, **metric_classes}
    routed = routed_options(assignments, components, {"method": methods, "metric": metrics})
    check_output_folder(out)
    loaded = open_model(model, weights, unsafe, preprocess, routed["model"])
    paths = input_photos(images, out)
    if not paths:
        finish(0, 0)
    table = ScoreTable()
    target = target or ("annotated" if given_boxes else "predicted")
    chosen = None if target == "predicted" else target if target == "annotated" else loaded.class_index(target)
    xconv.score(loaded, paths, methods, metrics, target=chosen,
                method_options={n: routed[n] for n in methods}, metric_options={n: routed[n] for n in metrics},
                batch_size=batch_size, table=table, track=lambda batches, total: progress(batches, "scoring", total=total))
    failures = report_bad_inputs(table.skipped, False)
    if not table.rows:
        typer.echo(f"xconv: none of the {len(paths)} inputs could be scored", err=True)
        raise typer.Exit(1)
    if table.unannotated:
        typer.echo(f"note: {len(table.unannotated)} of {len(paths)} inputs have no box and were not scored "
                   "(--target annotated; --target predicted scores every input)", err=True)
    unmeasured = table.unmeasured(methods)
    for name in unmeasured:
        hint = f" (no image's name in {boxes} had a box for its target)" if name == "pointing" and boxes else ""
        typer.echo(f"warning: {name} gave no value for any image{hint}", err=True)
    written = write_files(table, out)
    summary, best = table.summary(), table.best()
    if as_json:
        typer.echo(json_text({"summary": summary, "best": best, "unbeaten": table.unbeaten(),
                              "outputs": [str(p) for p in written]}))
    else:
        show_score_table(summary, best, methods + list(REFERENCES), list(table.higher_is_better), table.higher_is_better)
        for metric_name, references in table.unbeaten().items():
            typer.echo(f"note: on {metric_name}, no method beats the {' and '.join(references)} map"
                       f"{'s' if len(references) > 1 else ''}: its ranking says nothing there")
        for path in written:
            typer.echo(f"wrote {path}")
    if failures:
        typer.echo(f"xconv: {failures} of {len(paths)} inputs failed", err=True)
        raise typer.Exit(1)
    if all(name in unmeasured for name in metrics):  # a table of dashes is no answer
        typer.echo("xconv: no metric gave a value for any input", err=True)
        raise typer.Exit(1)


@app.command()
@user_errors
def layers(model: str = MODEL_OPTION, weights: Optional[str] = WEIGHTS_OPTION, unsafe: bool = UNSAFE_OPTION,
           option: List[str] = OPTIONS_OPTION, preprocess: Optional[str] = PREPROCESS_OPTION):
    """List conv and pooling layers with output shapes; * marks the default Grad-CAM layer."""
    from xconv.layers import iter_layers

    routed = routed_options(parse_assignments(option), {"model": model_class(model)})
    loaded = open_model(model, weights, unsafe, preprocess, routed["model"])
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
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Trainable model: catsdogs (default) or "
                                        "inceptionv3-transfer; with --resume, the checkpoint's."),
    epochs: int = typer.Option(60, "--epochs", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    image_size: Optional[int] = typer.Option(None, "--image-size", min=16, max=MAX_IMAGE_SIDE,
                                             help="Square input size; default: the model's."),
    out: Path = typer.Option(Path("model.keras"), "--out", "-o", help="Best checkpoint (.keras); history and curves beside it."),
    patience: int = typer.Option(15, "--patience", min=1, help="Early stopping: epochs without a better val_accuracy."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Train without data augmentation."),
    seed: int = typer.Option(1337, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint at --out."),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate"),
    weights: Optional[str] = WEIGHTS_OPTION,
    fine_tune: int = typer.Option(0, "--fine-tune", min=0, help="Then unfreeze the top N base layers at a low learning rate."),
    explain_every: int = typer.Option(0, "--explain-every", min=0, help="Explain --explain-images every N epochs "
                                      "(a PNG strip per epoch and an animated GIF at the end)."),
    explain_images: List[Path] = typer.Option(None, "--explain-images", help="Photos (or folders) to explain while "
                                              "training; repeat the option for several."),
    explain_method: str = typer.Option("gradcam", "--explain-method", help="Heatmap method for --explain-every."),
    tensorboard: Optional[Path] = typer.Option(None, "--tensorboard", help="Log the strips, the metrics and the "
                                               "final confusion matrix to this TensorBoard folder."),
    strategy: str = typer.Option("default", "--strategy", help="default or mirrored (every local GPU; multi-worker is "
                                 "refused: Keras 3 cannot fit under it); --batch-size is per replica, the learning "
                                 "rate scales with replicas."),
    mixing: str = typer.Option("none", "--mixing", help="Mix training batches: none, cutmix or mixup."),
    mixing_probability: float = typer.Option(0.5, "--mixing-probability", min=0.0, max=1.0,
                                             help="Share of training batches mixed."),
    small_size: Optional[int] = typer.Option(None, "--small-size", min=16, help="Progressive resizing: train the "
                                             "first --small-epochs at this square size, then at --image-size."),
    small_epochs: int = typer.Option(0, "--small-epochs", min=0),
    keep: str = typer.Option("best", "--keep", help="best: the checkpoint with the best val_accuracy (early "
                             "stopping); last: the last epoch's, so validation chooses nothing."),
    merge_validation: float = typer.Option(0.0, "--merge-validation", min=0.0, max=0.99,
                                           help="Move this share of each validation class into training "
                                           "(evenly over sorted files); the rest stays held out."),
):
    """Train a model on a folder of labelled photos (best checkpoint, early stopping, CSV history, curves)."""
    from xconv.image_folders import image_folder_files
    from xconv.quiet import quiet_tensorflow

    # What needs no TensorFlow is checked before it starts (5 s): a typo is said at once.
    if out.suffix != ".keras":
        raise XconvError(f"--out must end in .keras, got {out}")
    if out.is_dir():
        raise XconvError(f"--out {out} is a folder; give the checkpoint's file name")
    model = resumed_or_new(out, model, weights, resume)
    model_cls = get_registry().get("model", model)
    if not model_cls.trainable:
        trainable = [n for n in get_registry().names("model") if get_registry().get("model", n).trainable]
        raise XconvError(f"model {model!r} cannot be trained; choose from: {', '.join(trainable)}")
    image_folder_files(data / "train")
    quiet_tensorflow()  # before xconv.training imports Keras: its callbacks subclass Keras's
    from xconv.training import TrainConfig, default_training_size, train as run_training

    config = TrainConfig(epochs=epochs, batch_size=batch_size, patience=patience, augment=not no_augment, seed=seed,
                         strategy=strategy, mixing=mixing, mixing_probability=mixing_probability,
                         small_size=small_size, small_epochs=small_epochs, keep=keep,
                         merge_validation=merge_validation)
    if learning_rate is not None:
        if not learning_rate > 0:
            raise XconvError(f"--learning-rate must be above 0, got {learning_rate}")
        config.learning_rate = learning_rate
    size = (image_size, image_size) if image_size else default_training_size(model_cls, out, resume)
    explain = None
    if explain_every or explain_images or tensorboard:
        photos = xconv.images.expand_inputs(explain_images or [])
        if not photos and explain_images:
            raise XconvError(f"--explain-images {', '.join(map(str, explain_images))}: no images there")
        if not photos:
            raise XconvError("--explain-every and --tensorboard need photos: give --explain-images PHOTO (or a folder)")
        if tensorboard is not None:
            check_output_folder(tensorboard)
            import importlib.util

            if importlib.util.find_spec("tensorboard") is None:
                raise XconvError("--tensorboard needs TensorBoard: pip install 'xconv[tensorboard]' (or tensorboard)")
        explain = {"images": photos, "every": explain_every or 1, "method": explain_method,
                   "out_dir": out.with_name(out.stem + ".explanations"), "tensorboard_dir": tensorboard}
    check_output_folder(out.parent)
    summary = run_training(data, model_cls, out, config, size, weights=parse_weights(weights), resume=resume,
                           fine_tune=fine_tune, echo=typer.echo, explain=explain)
    kept = summary["kept"]
    if summary["epochs_run"]:
        if summary["interrupted"]:
            typer.echo("interrupted: the best checkpoint so far is kept" if kept == "best"
                       else "interrupted: the last finished epoch's checkpoint is kept")
        seconds = summary["seconds_per_epoch"]
        typer.echo(f"{kept} val_accuracy {summary[kept + '_val_accuracy']:.4f} after {summary['epochs_run']} epochs "
                   + (f"({seconds:.1f} s/epoch, {summary['train_images_per_second']:.1f} images/s)"
                      if not math.isnan(seconds) else f"(none run now: the checkpoint holds them; raise --epochs above {epochs} to continue)"))
    else:
        typer.echo("interrupted before the first epoch ended: no checkpoint was written")
    for path in summary["written"] + ([summary["explanations"]] if "explanations" in summary else []):
        typer.echo(f"wrote {path}")
    if summary["interrupted"]:
        raise typer.Exit(130)  # as explain does: a script can tell a stopped run from a finished one
    if summary["skipped"]:  # as every batch command: the good files are used, the bad ones make the exit 1
        typer.echo(f"xconv: {len(summary['skipped'])} files could not be read (skipped, listed above); the model "
                   "was trained and validated on the others", err=True)
        raise typer.Exit(1)


def resumed_or_new(out: Path, model: Optional[str], weights: Optional[str], resume: bool) -> str:
    """The model to train: a new one never replaces a checkpoint at --out (a trained model was lost that
    way), and a resumed one is the checkpoint's own network, which --model and --weights cannot change."""
    if not resume:
        if out.exists():
            raise XconvError(f"--out {out} exists: --resume continues it; to train a new model, choose another "
                             "--out or remove that file")
        return model or "catsdogs"
    from xconv.modelfile import read_metadata

    trained_as = read_metadata(out).get("trained_as") if out.is_file() else None
    if model and trained_as and model != trained_as:
        raise XconvError(f"--resume: {out} was trained as {trained_as}, not {model}; drop --model (a resumed run "
                         "continues the checkpoint's network)")
    if weights is not None:
        raise XconvError("--weights picks a new model's starting weights; --resume continues the checkpoint's own")
    return model or trained_as or "catsdogs"


@app.command()
@user_errors
def evaluate(
    data: Path = typer.Option(..., "--data", help="Folder of <class>/ folders (or with test/ or validation/ inside)."),
    model: str = MODEL_OPTION,
    weights: Optional[str] = WEIGHTS_OPTION,
    out: Path = typer.Option(Path("xconv-out"), "--out", "-o", help="Folder for the confusion-matrix PNG."),
    flip: bool = typer.Option(False, "--flip", help="Average predictions over each image and its mirror image, "
                              "for any model (catsdogs always does; -O flip=false turns that off)."),
    option: List[str] = OPTIONS_OPTION,
    preprocess: Optional[str] = PREPROCESS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as one JSON object."),
    unsafe: bool = UNSAFE_OPTION,
):
    """Accuracy, per-class precision and recall, confusion matrix and the most confidently wrong images."""
    from xconv.evaluation import evaluate as run_evaluation, evaluation_folder, plot_confusion
    from xconv.image_folders import image_folder_files
    from xconv.quiet import quiet_tensorflow

    routed = routed_options(parse_assignments(option), {"model": model_class(model)})
    check_output_folder(out)
    image_folder_files(evaluation_folder(data))  # a wrong folder is said before TensorFlow starts
    quiet_tensorflow()
    loaded = open_model(model, weights, unsafe, preprocess, routed["model"])
    result = run_evaluation(loaded, data, flip_average=flip)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_confusion(result, out / "confusion_matrix.png")
    report = {**result.as_dict(), "model": loaded.display_name, "confusion_png": str(png)}
    if as_json:
        typer.echo(json.dumps(report, indent=1))  # stdout holds the one JSON object; the rest goes to stderr
    else:
        show_evaluation(result, loaded.display_name, png)
    for line in result.skipped:
        typer.echo(f"xconv: skipped {line}", err=True)
    if result.skipped:
        if not as_json:
            typer.echo(f"xconv: {len(result.skipped)} files could not be read; the other {result.images} were "
                       "evaluated", err=True)
        raise typer.Exit(1)


@app.command()
@user_errors
def serve(
    model: str = MODEL_OPTION,
    weights: Optional[str] = WEIGHTS_OPTION,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; anything but loopback needs a token."),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    token: Optional[str] = typer.Option(None, "--token", help="Access token to require (default: generated "
                                        "when --host is not loopback)."),
    no_token: bool = typer.Option(False, "--no-token", help="Serve without an access token even off loopback."),
    max_batch: int = typer.Option(16, "--max-batch", min=1, help="Most uploads answered by one model call."),
    option: List[str] = OPTIONS_OPTION,
    preprocess: Optional[str] = PREPROCESS_OPTION,
    unsafe: bool = UNSAFE_OPTION,
):
    """A local web page (and JSON API) showing predictions, heatmaps, activations and filter patterns."""
    from xconv.quiet import quiet_tensorflow

    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(name) is None]
    if missing:
        raise XconvError(f"xconv serve needs {', '.join(missing)}: pip install fastapi uvicorn python-multipart")
    from xconv.web.server import serve as run_server

    quiet_tensorflow()
    routed = routed_options(parse_assignments(option), {"model": model_class(model)})
    loaded = open_model(model, weights, unsafe, preprocess, routed["model"])
    run_server(loaded, host=host, port=port, token=token, no_token=no_token, max_batch=max_batch, echo=typer.echo)


@app.command()
@user_errors
def report(
    images: List[Path] = typer.Argument(..., help=IMAGES_HELP, metavar="IMAGES"),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write."),
    method: str = typer.Option("gradcam", "--method", help="Heatmap methods: a,b,c or 'all'."),
    model: str = MODEL_OPTION,
    weights: Optional[str] = WEIGHTS_OPTION,
    layers: int = typer.Option(2, "--layers", min=0, help="Activation grids of this many first layers per photo."),
    filters_layer: Optional[str] = typer.Option(None, "--filters-layer", help="Layer of the filter-pattern panel."),
    option: List[str] = OPTIONS_OPTION,
    preprocess: Optional[str] = PREPROCESS_OPTION,
    unsafe: bool = UNSAFE_OPTION,
):
    """One self-contained HTML file: predictions, heatmaps per class and method, activations, filter patterns."""
    from xconv.quiet import quiet_tensorflow
    from xconv.report import build_report, is_xconv_report

    if out.suffix.lower() not in (".html", ".htm"):
        raise XconvError(f"--out must end in .html, got {out}")
    if out.is_dir():
        raise XconvError(f"--out {out} is a folder; name the HTML file to write")
    if out.exists() and not is_xconv_report(out):  # an earlier report is replaced; the user's own page never
        raise XconvError(f"--out {out} exists and is not an xconv report; choose another name, or remove it")
    check_output_folder(out.parent)
    methods = method_names(method)
    method_classes = {name: get_registry().get("explainer", name) for name in methods}
    routed = routed_options(parse_assignments(option), {"model": model_class(model), **method_classes},
                            {"method": methods})
    quiet_tensorflow()
    loaded = open_model(model, weights, unsafe, preprocess, routed["model"])
    paths = xconv.images.expand_inputs(images)
    written = build_report(loaded, paths, out, methods, activation_layers=layers, filter_layer=filters_layer,
                           method_options={name: routed[name] for name in methods})
    failures = report_bad_inputs(written.errors, False)
    if written.photos:
        size = written.path.stat().st_size / 1e6
        typer.echo(f"wrote {written.path} ({written.photos} photos, {size:.1f} MB)")
    elif paths:
        typer.echo(f"xconv: no photo could be read; {out} was not written", err=True)
    finish(failures, len(paths))


@app.command()
@user_errors
def demo(out: Path = typer.Option(Path("xconv-demo"), "--out", "-o", help="Output folder (created).")):
    """Offline demo on a cat photo shipped with scikit-image: predict, then every view for both classes."""
    from xconv.demo import run_demo

    check_output_folder(out)
    for line in run_demo(out):
        typer.echo(line)


def build_app() -> typer.Typer:
    """A new app: the core commands plus those plugins add through ``xconv_register_commands``.

    The module-level ``app`` is never changed, so building twice (tests, docs) adds nothing twice.
    """
    from xconv.plugin_loading import call_each

    built = typer.Typer(**{key: getattr(app.info, key) for key in ("name", "help", "no_args_is_help")},
                        add_completion=False, pretty_exceptions_enable=False)
    built.registered_callback = app.registered_callback
    built.registered_commands = list(app.registered_commands)
    call_each(get_registry().loaded, "xconv_register_commands", lambda plugin, dist: {"app": built})
    return built


def main() -> None:
    atexit.register(skip_final_garbage_collection)  # runs last, after the handlers registered later (Ray's)
    click = click_exceptions()
    try:
        disable_plugins(disabled_on_command_line(sys.argv[1:]))  # before plugins load, so a disabled one never runs
        code = build_app()(prog_name="xconv", standalone_mode=False)
    except KeyboardInterrupt:
        typer.echo("xconv: error: interrupted", err=True)
        sys.exit(130)
    except click.NoArgsIsHelpError as error:  # `xconv` alone: the help, as before
        error.show()
        sys.exit(error.exit_code)
    except click.UsageError as error:
        sys.exit(usage_error_line(error))
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except typer.Abort:
        typer.echo("xconv: error: aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def click_exceptions():
    """The module of the Click exceptions typer raises: recent typer vendors its own Click."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def usage_error_line(error) -> int:
    """A wrong option value or a missing argument as one line, like every other mistake (Click drew a usage
    line, a hint and a framed box); returns the exit status, 2 as Click's."""
    command = error.ctx.command_path if error.ctx is not None else "xconv"
    typer.echo(f"xconv: error: {error.format_message()} (see {command} --help)", err=True)
    return error.exit_code


def skip_final_garbage_collection() -> None:
    """Python's collections at exit walk every object: with TensorFlow imported, 0.7-0.8 s of every
    command's run (Ray Data's pyarrow and pandas add their own). Frozen objects are left out of them
    (their memory goes back to the OS); files are closed and other atexit handlers run as usual."""
    import gc

    gc.freeze()


def disabled_on_command_line(args: list[str]) -> set[str]:
    """The NAMEs of ``-p no:NAME`` / ``--plugin no:NAME`` before the command (global options come first)."""
    names = set()
    for flag, value in zip(args, args[1:] + [""]):
        if flag in ("-p", "--plugin") and value.startswith("no:"):
            names.add(value[3:])
        elif flag.startswith("--plugin=no:"):
            names.add(flag[len("--plugin=no:"):])
    return names


if __name__ == "__main__":
    main()
