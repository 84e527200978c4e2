"""What the commands print: the plugin listing, progress bars, per-input lines and run summaries, the
score table; kept apart from the commands so each command reads as its steps."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import typer

from xconv.cli_errors import finish
from xconv.errors import XconvError
from xconv.options import declared_options
from xconv.registry import get_registry

KIND_ORDER = ("model", "explainer", "renderer", "metric")


def progress(items, description: str, total: int | None = None):
    """A rich progress bar on a terminal for long batches; plain iteration otherwise. With ``total``,
    ``items`` may be an iterator: it is not consumed ahead of the loop."""
    if total is None:
        items = list(items)
        total = len(items)
    if total > 1 and sys.stderr.isatty():
        from rich.progress import track

        return track(items, description=description, total=total, transient=True)
    return items


def listing_row(registry, kind: str, name: str, entry) -> dict:
    """One row of ``xconv list``: an entry that lost a name clash is listed under its qualified name."""
    holder = registry.entries[kind].get(name)
    note = "" if entry is holder else ("the built-in holds this name" if holder else "name claimed twice: qualify it")
    return {"kind": kind, "name": name if entry is holder else entry.qualified(name), "distribution": entry.distribution,
            "description": entry.description, "note": note}


def plugin_details(kind: str, entry) -> dict:
    cls = entry.cls
    details = {"kind": kind, "name": cls.name, "plugin": entry.plugin, "distribution": entry.distribution,
               "description": cls.description}
    if kind == "explainer":
        details.update(explains=cls.kind, needs_images=cls.needs_images)
    if kind == "renderer":
        details["accepts"] = list(cls.accepts)
    if kind == "metric":
        details["higher_is_better"] = cls.higher_is_better
    details["options"] = [
        {"name": option.name, "type": option.type_name, "default": option.default, "help": option.help,
         "choices": list(option.choices)}
        for option in declared_options(cls).values()
    ]
    return details


def show_plugin(name: str, as_json: bool) -> None:
    registry = get_registry()
    found = registry.find(name)
    if not found:
        for kind in KIND_ORDER:
            try:
                registry.entry(kind, name)
            except XconvError as error:
                if "unknown" not in str(error):
                    raise  # a clash or a plugin that failed to load: that message says more
        known = "; ".join(f"{kind}s: {', '.join(registry.names(kind))}" for kind in KIND_ORDER)
        raise XconvError(f"no plugin provides {name!r}; {known}")
    details = [plugin_details(kind, entry) for kind, entry in found]
    if as_json:
        typer.echo(json.dumps(details, indent=1, default=str))
        return
    for item in details:
        extra = {"explainer": lambda: f", makes {item['explains']} explanations",
                 "renderer": lambda: f", draws {', '.join(item['accepts'])}"}.get(item["kind"], lambda: "")()
        typer.echo(f"{item['kind']} {item['name']} (plugin {item['plugin']}, distribution {item['distribution']}"
                   f"{extra})")
        typer.echo(f"  {item['description']}")
        if not item["options"]:
            typer.echo("  options: none")
            continue
        typer.echo("  options (-O NAME=VALUE):")
        for option in item["options"]:
            choices = f" (one of: {', '.join(map(str, option['choices']))})" if option["type"] == "choice" else ""
            typer.echo(f"    {option['name']:<18} {option['type']:<20} default {option['default']!s:<8} "
                       f"{option['help']}{choices}")


def describe_record(record: dict) -> None:
    parts = [f"predicted {record['prediction']} {record['probability']:.3f}"] if record.get("prediction") else []
    if record.get("targets") or record.get("layer"):
        parts.append("explained" + (f" {', '.join(dict.fromkeys(record['targets']))}" if record.get("targets") else "")
                     + (f" at {layer_text(record['layer'])}" if record.get("layer") else ""))
    typer.echo(f"{record['input']}: {'; '.join(parts)}")
    for item in record["outputs"]:
        typer.echo(f"  wrote {item}")


def stream_with_progress(paths, out, decode, compute, write, show, resume: bool, description: str,
                         job: str | None = None):
    """``xconv.streaming.stream`` with a rich progress bar (count, rate, time left) on a terminal."""
    from xconv.streaming import stream

    if not (len(paths) > 1 and sys.stderr.isatty()):
        return stream(paths, out, decode, compute, write, resume=resume, on_records=show, job=job)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:.1f}/s" if task.speed else "")

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(), TimeRemainingColumn(),
                  transient=True) as bar:
        task = bar.add_task(description, total=len(paths))
        return stream(paths, out, decode, compute, write, resume=resume, on_records=show, job=job,
                      on_progress=lambda count: bar.advance(task, count))


def finish_stream(summary, out: Path, as_json: bool, resume_hint: str = "rerun with --resume to continue") -> None:
    """The one-line summary; exit 1 when an input failed, 130 when interrupted."""
    line = (f"explained {summary.explained} of {summary.inputs} inputs in {summary.seconds:.1f} s "
            f"({summary.rate:.1f}/s), {summary.files} files in {out}")
    if summary.resumed:
        line += f"; {summary.resumed} already done (--resume)"
    if summary.failed:
        line += f"; {summary.failed} failed"
    if (out / "manifest.jsonl").is_file():  # not when nothing was written (stopped before the first batch)
        line += f"; manifest {out / 'manifest.jsonl'}"
    if not as_json:  # with --json every line on stdout is one input's record
        typer.echo(line)
    if summary.overwritten:
        typer.echo(f"xconv: warning: wrote over {summary.overwritten} files that an earlier run made in {out} for "
                   "other inputs of the same name (manifest.jsonl's last records say which input each shows)", err=True)
    if summary.interrupted:
        typer.echo(f"xconv: interrupted after the current batch; {resume_hint}", err=True)
        raise typer.Exit(130)
    finish(summary.failed, summary.inputs)


def show_evaluation(result, model_name: str, png) -> None:
    """`xconv evaluate`'s text report: accuracy with its interval, per-class precision and recall, the
    confusion matrix, the most confidently wrong photos, then its notes on stderr."""
    from xconv.evaluation import missing_classes_note, share_text, validation_note

    low, high = result.accuracy_interval()
    typer.echo(f"{model_name}: accuracy {result.accuracy:.4f} (95 % interval {low:.3f}-{high:.3f}) "
               f"on {result.images} images")
    for name, row in result.per_class().items():
        typer.echo(f"  {name:<20} precision {share_text(row['precision'])}  recall {share_text(row['recall'])}  "
                   f"({row['support']} images)")
    width = max(len(n) for n in result.class_names) + 2
    typer.echo("confusion matrix (rows: true, columns: predicted)")
    typer.echo(" " * width + "".join(f"{n:>{width}}" for n in result.class_names))
    for name, row in zip(result.class_names, result.confusion):
        typer.echo(f"{name:<{width}}" + "".join(f"{c:>{width}}" for c in row))
    if result.wrong:
        typer.echo("most confidently wrong:")
        for item in result.wrong:
            typer.echo(f"  {item['path']}: {item['true']} predicted as {item['predicted']} ({item['confidence']:.3f})")
    typer.echo(f"wrote {png}")
    for note in (missing_classes_note(result), validation_note(result)):
        if note:
            typer.echo(note, err=True)


def show_score_table(summary, best, methods, metrics, higher_is_better) -> None:
    from rich.console import Console
    from rich.table import Table

    cells = {(row["method"], row["metric"]): row for row in summary}
    table = Table("method", *[f"{m} {'↑' if higher_is_better.get(m, True) else '↓'}" for m in metrics],
                  title="mean ± 95 % interval; * best method")
    for name in methods:
        values = []
        for metric_name in metrics:
            row = cells.get((name, metric_name))
            text = "-" if row is None or row["images"] == 0 else f"{row['mean']:.3f}" + (
                "" if math.isnan(row["ci95"]) else f" ± {row['ci95']:.3f}")  # one value (a class's): no interval
            values.append(text + (" *" if best.get(metric_name) == name else ""))
        table.add_row(name, *values)
    Console(width=max(100, 24 * (len(metrics) + 1))).print(table)


def describe_synthesized(explanation, written, as_json: bool) -> None:
    """Report a method that makes its own inputs (filter patterns): its layer, outputs, scores and robustness."""
    import numpy as np

    scores = explanation.arrays.get("scores")
    robustness = explanation.arrays.get("robustness")
    if as_json:
        typer.echo(json.dumps({"method": explanation.method, "layer": explanation.layer,
                               "outputs": [str(p) for p in written],
                               "filters": explanation.metadata.get("filters"),
                               "scores": [] if scores is None else [float(v) for v in scores],
                               "robustness": None if robustness is None else
                               [None if np.isnan(v) else round(float(v), 4) for v in robustness]}))
        return
    typer.echo(f"{explanation.method}" + (f" at {layer_text(explanation.layer)}" if explanation.layer else ""))
    if robustness is not None and np.isfinite(robustness).any():
        fragile = int(np.sum(robustness < 0.5))  # NaN (a pattern that never activates its filter) is not "below"
        dead = int(np.isnan(robustness).sum())
        typer.echo(f"  robustness (activation kept when moved a little): median {np.nanmedian(robustness):.2f}, "
                   f"{fragile} of {len(robustness)} patterns below 0.5"
                   + (f", {dead} that do not activate their filter" if dead else ""))
    for item in written:
        typer.echo(f"  wrote {item}")


def layer_text(layer) -> str:
    return layer if isinstance(layer, str) else f"{len(layer)} layers"
