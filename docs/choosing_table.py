"""The 'Choosing a method' table: ``xconv.score`` on the bundled model over validation photos.

The docs build runs it on a 24-photo sample (``make_choosing_table`` below); the full table comes from::

    python docs/choosing_table.py --per-class all --steps 20 --out docs/results/choosing-1000

which scores the 1,000 validation photos of ``../shared`` (about half an hour on 2 cores) and writes
``table.txt``, ``summary.json`` and ``score.png`` there; the page includes them as they were committed.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

SHARED_VALIDATION = Path(__file__).resolve().parents[2] / "shared" / "data" / "cats-vs-dogs" / "validation"
METHODS = ["gradcam", "gradcam++", "layercam", "hirescam", "xgradcam", "eigencam", "saliency", "guided-backprop"]
METRICS = ["deletion", "insertion", "average-drop", "randomization"]
#: The bundled model's dense head and its whole last block (block4: two separable convolutions, the
#: shortcut convolution and their three batch norms): the sanity check randomizes "the last block".
RANDOMIZED_LAYERS = 7


def validation_photos(per_class: int | None, folder: Path = SHARED_VALIDATION) -> list[Path]:
    """The first ``per_class`` photos of each class (all with None), listed as training lists them (image
    files only, sorted); empty when ../shared is absent."""
    from xconv.image_folders import image_folder_files

    if not folder.is_dir():
        return []
    files, _ = image_folder_files(folder, ["cats", "dogs"])
    return [path for label in (0, 1) for path in [p for p, lab in files if lab == label][:per_class]]


def held_out_photos(photos: list[Path], unreadable=(), share: float = 0.5) -> set[str]:
    """The validation photos the bundled model never trained on: its recipe (``--merge-validation 0.5``)
    moves that share of each class's readable photos into training, chosen by file order as
    ``xconv.image_folders`` does (``unreadable``: the paths training skipped, so later ranks do not shift)."""
    from xconv.image_folders import moved_to_training

    skipped = {str(path) for path in unreadable}
    photos = [path for path in photos if str(path) not in skipped]
    classes = sorted({path.parent.name for path in photos})
    for name in classes:
        members = [path for path in photos if path.parent.name == name]
        if members != sorted(members):
            raise ValueError("validation photos out of order")
    moved = moved_to_training([classes.index(path.parent.name) for path in photos], share)
    return {str(path) for path, trained in zip(photos, moved) if not trained}


def markdown_table(table, methods: list[str], source: str) -> str:
    from xconv.scoring import REFERENCES

    summary, best = table.summary(), table.best()
    metrics = list(table.higher_is_better)
    cells = {(row["method"], row["metric"]): row for row in summary}
    lines = ["| method | " + " | ".join(f"{m} {'(higher)' if table.higher_is_better[m] else '(lower)'}"
                                         for m in metrics) + " |", "| --- |" + " --- |" * len(metrics)]
    for method in methods + list(REFERENCES):
        values = []
        for metric in metrics:
            row = cells[(method, metric)]
            text = "-" if math.isnan(row["mean"]) else f"{row['mean']:.3f} ± {row['ci95']:.3f}"
            values.append(f"**{text}**" if best.get(metric) == method else text)
        lines.append(f"| `{method}` | " + " | ".join(values) + " |")
    lines += ["", f"*Mean ± 95 % interval over {source}; bold: the best method per metric.*"]
    return "\n".join(lines) + "\n"


def make_choosing_table(out: Path, per_class: int | None = 12, steps: int = 10, progress: bool = False,
                        methods: list[str] | None = None) -> Path:
    """Score ``methods`` (None: METHODS) with METRICS; write table.txt, summary.json and score.png into ``out``."""
    import xconv
    from xconv.demo import chelsea
    from xconv.images import resize
    from xconv.scoring import ScoreTable, write_files

    methods = methods or METHODS
    model = xconv.load_model("catsdogs")
    photos = validation_photos(per_class)
    images = [str(p) for p in photos] or resize(chelsea(), model.input_size)[None]
    track = _progress_bar if progress else None
    table, started = ScoreTable(), time.perf_counter()
    xconv.score(model, images, methods, METRICS, table=table, track=track,
                metric_options={"deletion": {"steps": steps}, "insertion": {"steps": steps},
                                "randomization": {"layers": RANDOMIZED_LAYERS}})
    seconds = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    scratch = out / "scratch"
    write_files(table, scratch)
    shutil.move(scratch / "score.png", out / "score.png")
    shutil.rmtree(scratch)
    source = (f"{len(photos)} validation photos, deletion and insertion at {steps} steps" if photos
              else "Chelsea (the validation photos are absent)")
    (out / "table.txt").write_text(markdown_table(table, methods, source))
    if per_class is None and photos:
        held = held_out_photos(photos, [error.path for error in table.skipped])
        subset = ScoreTable(rows=[row for row in table.rows if row["image"] in held],
                            higher_is_better=table.higher_is_better)
        (out / "table-held-out.txt").write_text(markdown_table(
            subset, methods, f"the {len(held)} of those photos the bundled model did not train on (even ranks per class)"))
    (out / "summary.json").write_text(json.dumps({"photos": len(photos), "steps": steps, "seconds": round(seconds),
                                                  "skipped": [str(s) for s in table.skipped],
                                                  "summary": table.summary(), "mean_curves": mean_curves(table)},
                                                 indent=1, default=str) + "\n")
    return out


def mean_curves(table) -> dict:
    """Each metric's x values and mean curve per method, as plotted in score.png (None: no defined value)."""
    curves = {metric: {"x": [float(x) for x in xs]} for metric, xs in table.curve_x.items()}
    for method, metric in table.curves:
        curves[metric][method] = [None if math.isnan(v) else round(float(v), 5) for v in table.mean_curve(method, metric)]
    return curves


def _progress_bar(batches, total):
    from rich.progress import track

    return track(batches, description="scoring", total=total)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", default="12", help="photos per class, or 'all'")
    parser.add_argument("--steps", type=int, default=10, help="deletion/insertion steps")
    parser.add_argument("--out", type=Path, default=Path("docs/results/choosing-1000"))
    args = parser.parse_args(argv)
    if not SHARED_VALIDATION.is_dir():
        print(f"error: {SHARED_VALIDATION} is absent; the full table needs the validation photos", file=sys.stderr)
        return 1
    per_class = None if args.per_class == "all" else int(args.per_class)
    written = make_choosing_table(args.out, per_class, args.steps, progress=True)
    print((written / "table.txt").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
