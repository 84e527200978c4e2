"""``xconv.score``: every method and metric on the same decoded batches, with two reference rows.

The reference rows are what a map that knows nothing scores: ``random`` (uniform noise) and ``center``
(a Gaussian centred on the image, a photographer's prior). A method is worth trusting on a metric only
where it beats both. Images stream through in chunks, so memory does not grow with their number.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from xconv.errors import XconvError
from xconv.faithfulness import maps_at_input_size, pixel_ranks
from xconv.interfaces import Explanation, Model

REFERENCES = ("random", "center")


@dataclass
class ScoreTable:
    """Per-image values (``rows``: image, method, metric, value) and each metric's mean curve per method."""

    rows: list[dict] = field(default_factory=list)
    curves: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)
    curve_x: dict[str, np.ndarray] = field(default_factory=dict)
    curve_labels: dict[str, tuple[str, str]] = field(default_factory=dict)
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    averaged_over: dict[str, str] = field(default_factory=dict)  # metric -> "images" or "classes"
    skipped: list = field(default_factory=list)  # ImageError for each input that could not be decoded
    unannotated: list = field(default_factory=list)  # inputs target="annotated" found no class for

    def summary(self) -> list[dict]:
        """Mean and 95 % confidence half-width per method and metric, NaNs skipped: Student's t quantile
        times the standard error (1.96 on many images; wider on a handful, where 1.96 would claim too much).
        A metric averaged over classes gets the mean of its classes' means and that mean's standard error."""
        groups: dict[tuple[str, str], list[tuple[str, float]]] = {}
        for row in self.rows:  # a metric no image has a value for still gets its (empty) row
            pairs = groups.setdefault((row["method"], row["metric"]), [])
            if not math.isnan(row["value"]):
                pairs.append((row["target"], row["value"]))
        summary = []
        for (method, metric), pairs in groups.items():
            by_class = self.averaged_over.get(metric) == "classes"
            mean, half = (mean_of_class_means if by_class else mean_and_interval)(pairs)
            summary.append({"method": method, "metric": metric, "mean": mean, "ci95": half, "images": len(pairs)})
        return summary

    def unmeasured(self, methods) -> list[str]:
        """Metrics with no value for any image of any of ``methods`` (pointing whose boxes name no image)."""
        measured = {row["metric"] for row in self.rows if row["method"] in methods and not math.isnan(row["value"])}
        return [metric for metric in dict.fromkeys(row["metric"] for row in self.rows) if metric not in measured]

    def best(self) -> dict[str, str]:
        """The best method per metric (reference rows excluded)."""
        best: dict[str, tuple[float, str]] = {}
        for row in self.summary():
            if row["method"] in REFERENCES or math.isnan(row["mean"]):
                continue
            sign = 1 if self.higher_is_better[row["metric"]] else -1
            if row["metric"] not in best or sign * row["mean"] > sign * best[row["metric"]][0]:
                best[row["metric"]] = (row["mean"], row["method"])
        return {metric: method for metric, (_, method) in best.items()}

    def unbeaten(self) -> dict[str, list[str]]:
        """Per metric, the reference rows that score as well as its best method or better: there no method
        is worth trusting (the docs' rule: trust a method only where it beats both references)."""
        means = {(row["method"], row["metric"]): row["mean"] for row in self.summary()}
        found: dict[str, list[str]] = {}
        for metric, method in self.best().items():
            sign = 1 if self.higher_is_better[metric] else -1
            for reference in REFERENCES:
                value = means.get((reference, metric), math.nan)
                if not math.isnan(value) and sign * value >= sign * means[(method, metric)]:
                    found.setdefault(metric, []).append(reference)
        return found

    def mean_curve(self, method: str, metric: str) -> np.ndarray | None:
        """The mean curve over images, NaNs skipped like the summary's (a randomization step where an image's
        map is constant has no rank correlation; one such image must not hide the method's whole curve)."""
        parts = self.curves.get((method, metric))
        if not parts:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a step no image defines stays NaN
            return np.nanmean(np.concatenate(parts), axis=0)


def mean_and_interval(pairs: list[tuple[str, float]]) -> tuple[float, float]:
    """The mean of the values of (target, value) pairs and its 95 % half-width (Student's t)."""
    from scipy.stats import t

    values = np.array([value for _, value in pairs])
    if len(values) < 2:
        return (float(values.mean()) if len(values) else math.nan), math.nan
    return float(values.mean()), float(t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))


def mean_of_class_means(pairs: list[tuple[str, float]]) -> tuple[float, float]:
    """The mean over target classes of each class's mean (Zhang et al.'s mean accuracy over categories: a
    common class does not outweigh a rare one), with the 95 % half-width of that mean: the classes' standard
    errors combined, t with (values - classes) degrees of freedom; NaN while a class has one value."""
    from scipy.stats import t

    by_class: dict[str, list[float]] = {}
    for target, value in pairs:
        by_class.setdefault(target, []).append(value)
    if not by_class:
        return math.nan, math.nan
    groups = [np.array(values) for values in by_class.values()]
    mean = float(np.mean([group.mean() for group in groups]))
    if min(map(len, groups)) < 2:
        return mean, math.nan
    error = math.sqrt(sum(group.var(ddof=1) / len(group) for group in groups)) / len(groups)
    return mean, float(t.ppf(0.975, len(pairs) - len(groups)) * error)


def annotated_pairs(paths: list, metrics) -> tuple[list, list[int], list]:
    """Each input once per class the metrics' annotations give for it, with that class as its target
    (``target="annotated"``: Zhang et al. cue the pointing game with the true class, so an image the model
    gets wrong still counts; scoring the predicted class would leave exactly those out), and the inputs
    no annotation names. Returns (inputs, targets, unannotated)."""
    from xconv.interfaces import Metric

    annotating = [m for m in metrics if type(m).annotated_targets is not Metric.annotated_targets]
    if not annotating:
        raise XconvError("target 'annotated' takes each image's classes from annotations: score it with a "
                         "metric that has some (pointing, with its boxes)")
    inputs, targets, unannotated = [], [], []
    for path in paths:
        classes = sorted({int(c) for metric in annotating for c in metric.annotated_targets(str(path))})
        inputs += [path] * len(classes)
        targets += classes
        if not classes:
            unannotated.append(path)
    if not inputs:
        raise XconvError(f"none of the {len(paths)} inputs is named by an annotation (a box's image): check the "
                         "file names in the boxes file, or give --target")
    return inputs, targets, unannotated


def reference_maps(kind: str, count: int, size=(16, 16), seed: int = 0, input_size=None) -> np.ndarray:
    """``random``: uniform noise; ``center``: a Gaussian centred on the image (sigma a quarter of the side).

    Given ``input_size``, the noise is smoothed up to it (bilinear, as metrics upsample any map) and each
    pixel's value replaced by its rank, spread evenly over [0, 1]: the same random order with no ties, so
    that ``1 - map`` is exactly that order reversed (deletion and insertion then share their copies)."""
    if kind == "random":
        noise = np.random.default_rng(seed).random((count, *size)).astype(np.float32)
        if input_size is None:
            return noise
        ranks = pixel_ranks(maps_at_input_size(noise, input_size), seed)
        return (1 - ranks / np.float32(ranks[0].size - 1)).astype(np.float32)
    ys, xs = np.mgrid[0:size[0], 0:size[1]]
    centre = np.exp(-(((ys - (size[0] - 1) / 2) / (size[0] / 4)) ** 2 + ((xs - (size[1] - 1) / 2) / (size[1] / 4)) ** 2) / 2)
    return np.repeat((centre / centre.max()).astype(np.float32)[None], count, axis=0)


def reference_explanation(model: Model, kind: str, like: Explanation, seed: int) -> Explanation:
    """A heatmap explanation of the same images and targets whose maps know nothing about the model."""
    return Explanation(method=kind, kind="heatmap", model_name=model.display_name,
                       arrays={"heatmaps": reference_maps(kind, len(like.images), seed=seed,
                                                          input_size=like.images.shape[1:3])}, layer=None,
                       images=like.images, originals=like.originals, sources=like.sources, targets=like.targets,
                       target_names=like.target_names, predictions=like.predictions)


def complement(explanation: Explanation) -> Explanation:
    """The same explanation with every map m replaced by 1 - m: the reverse order of its pixels."""
    return dataclasses.replace(explanation, arrays={**explanation.arrays, "heatmaps": 1 - explanation.heatmaps})


def metric_guard(name: str):
    """A metric plugin's own failure reported as a PluginError naming it, like an explainer's."""
    from xconv.registry import get_registry

    return get_registry().entry("metric", name).guarded("score")


def score_batch(model: Model, batch: np.ndarray, methods: list[str], metrics: dict, table: ScoreTable, target=None,
                originals=None, sources=None, method_options=None, seed: int = 0, position: int = 0) -> None:
    """Explain one decoded batch with every method, then score every explanation with every metric.
    ``position``: the position of the batch's first image among all, which names images given without a file."""
    from xconv.api import explain

    explanations = {}
    for method in methods:
        explanations[method] = explain(model, batch, method, target=target, originals=originals, sources=sources,
                                       **(method_options or {}).get(method, {}))
    first = next(iter(explanations.values()))
    for offset, kind in enumerate(REFERENCES):
        explanations[kind] = reference_explanation(model, kind, first, seed + offset)
    targets = np.asarray(first.targets)
    names = [str(s) for s in (sources or [f"image {position + i}" for i in range(len(batch))])]
    for metric_name, metric in metrics.items():
        table.higher_is_better[metric_name] = metric.higher_is_better
        table.averaged_over[metric_name] = metric.averaged_over
        for method, explanation in explanations.items():
            if method == "random" and metric.plays_backwards:  # whether or not that metric is scored too
                explanation = complement(explanation)
            with metric_guard(metric_name):
                result = metric.score(batch, targets, explanation)
            for row_metric, values in {metric_name: result.values, **result.extra}.items():
                values = np.asarray(values, np.float64)
                if values.shape != (len(batch),):
                    raise XconvError(f"metric {metric_name!r} returned {values.shape} values for {len(batch)} images")
                table.higher_is_better.setdefault(row_metric, metric.higher_is_better)
                for name, target_name, value in zip(names, first.target_names, values):
                    table.rows.append({"image": name, "target": target_name, "method": method, "metric": row_metric,
                                       "value": float(value)})
            if result.curve_x is not None:
                x_label, y_label = getattr(metric, "curve_labels", ("", ""))
                curves = {**({} if result.curves is None else {metric_name: (result.curves, y_label)}),
                          **{name: (extra, getattr(metric, "extra_curve_labels", {}).get(name, name))
                             for name, extra in result.extra_curves.items()}}
                for curve_name, (values, label) in curves.items():
                    table.curves.setdefault((method, curve_name), []).append(np.asarray(values))
                    table.curve_x[curve_name] = np.asarray(result.curve_x)
                    table.curve_labels[curve_name] = (x_label, label)



def write_files(table: ScoreTable, out_dir) -> list:
    """score.csv (one row per image, method and metric), score.json (the rows and the summary) and
    score.png (mean deletion/insertion curves per method, and a bar chart per metric)."""
    import csv
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "score.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "target", "method", "metric", "value"])
        writer.writeheader()
        writer.writerows(table.rows)
    curves = [{"method": method, "metric": metric, "x": table.curve_x[metric].tolist(),
               "mean": table.mean_curve(method, metric).tolist()} for method, metric in table.curves]
    (out / "score.json").write_text(json_text({"summary": table.summary(), "best": table.best(),
                                               "curves": curves, "rows": table.rows}))
    return [out / "score.csv", out / "score.json", plot(table, out / "score.png")]


def json_text(value) -> str:
    """JSON with NaN (and infinities) written as null: a metric that does not apply to an image (or a one-image interval) is
    NaN, and a bare NaN is not JSON (jq and JavaScript's JSON.parse refuse it)."""
    import json

    def clean(item):
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {key: clean(inner) for key, inner in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(inner) for inner in item]
        return item

    return json.dumps(clean(value), indent=1, allow_nan=False)


def plot(table: ScoreTable, png):
    """Curves for the metrics that have them, then one bar chart (mean, 95 % interval) per metric."""
    from matplotlib.figure import Figure

    summary = table.summary()
    metrics = list(dict.fromkeys(row["metric"] for row in summary))
    methods = list(dict.fromkeys(row["method"] for row in summary))
    curved = [metric for metric in metrics if metric in table.curve_x]
    columns = min(4, max(len(curved), len(metrics)))
    rows = -(-len(curved) // columns) + -(-len(metrics) // columns)
    figure = Figure(figsize=(4.4 * columns, 3.8 * rows))
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    curve_rows = -(-len(curved) // columns) * columns
    axes = list(grid[:len(curved)]) + list(grid[curve_rows:curve_rows + len(metrics)])
    for unused in [a for a in grid if not any(a is b for b in axes)]:
        unused.set_axis_off()
    for axis, metric in zip(axes, curved):
        for method in methods:
            curve = table.mean_curve(method, metric)
            if curve is not None:
                style = ":" if method in REFERENCES else "-"
                axis.plot(table.curve_x[metric], curve, style, label=method)
        axis.set_title(f"{metric} curve (mean)")
        x_label, y_label = table.curve_labels.get(metric, ("", ""))
        axis.set_xlabel(x_label, fontsize=8)
        axis.set_ylabel(y_label, fontsize=8)
        axis.legend(fontsize=7)
    for axis, metric in zip(axes[len(curved):], metrics):
        rows = [next(r for r in summary if r["method"] == m and r["metric"] == metric) for m in methods]
        colors = ["0.7" if m in REFERENCES else "C0" for m in methods]
        axis.bar(range(len(methods)), [r["mean"] for r in rows], yerr=[r["ci95"] for r in rows], color=colors)
        axis.set_xticks(range(len(methods)), methods, rotation=60, ha="right", fontsize=7)
        axis.set_title(f"{metric} ({'higher' if table.higher_is_better[metric] else 'lower'} is better)")
    figure.tight_layout()
    figure.savefig(png, dpi=90)
    return png
