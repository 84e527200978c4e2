"""MkDocs hook: generate the CLI reference and the pictures the pages show, and typeset the math.

Everything under docs/generated/ is made here at build time, from the bundled model and the cat photo
that ships with scikit-image (the method pages use the two-animal photo of ../shared when it is there,
Chelsea otherwise), so the docs never hold stale pictures or copies of training data. Formulas are
turned into MathML at build time (latex2mathml), which browsers draw natively: the site needs no math
script and no network.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

GENERATED = Path(__file__).parent / "generated"


MATH = re.compile(r'<(span|div) class="arithmatex">\\[(\[](.*?)\\[)\]]</\1>', re.S)

FAMILIES = {
    "cams": ["gradcam", "gradcam++", "layercam", "hirescam", "xgradcam", "eigencam", "scorecam", "ablationcam"],
    "gradients": ["saliency", "smoothgrad", "integrated-gradients", "guided-backprop", "guided-gradcam"],
    "perturbation": ["occlusion", "rise", "scorecam", "ablationcam"],
}


def on_page_content(html, **kwargs):
    """LaTeX from pymdownx.arithmatex (generic mode) -> MathML."""
    from latex2mathml.converter import convert

    def typeset(match):
        tag, latex = match.group(1), unescape(match.group(2))
        return convert(latex.strip(), display="block" if tag == "div" else "inline")

    return MATH.sub(typeset, html)


def on_pre_build(config, **kwargs):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    GENERATED.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "typer", "xconv.cli", "utils", "docs", "--name", "xconv",
                    "--title", "CLI reference", "--output", str(GENERATED / "cli.md")], check=True,
                   capture_output=True)
    if not (GENERATED / "chelsea_gradcam_cat.png").exists():
        make_pictures()
    if not (GENERATED / "cams_compare.png").exists():
        make_method_pictures()
    if not (GENERATED / "choosing_table.txt").exists():
        make_choosing_table()


def make_pictures():
    import xconv
    from xconv.demo import chelsea, run_demo
    from xconv.images import resize

    run_demo(GENERATED)
    model = xconv.load_model("catsdogs")
    photo = chelsea()
    explained = xconv.explain(model, resize(photo, model.input_size)[None], target="cat", originals=[photo],
                              sources=[GENERATED / "receptive.png"])
    xconv.render(explained, "overlay", GENERATED, grid=True)
    explained = xconv.explain(model, resize(photo, model.input_size)[None], "activations",
                              layers=["block1_sepconv1"], sources=[GENERATED / "chelsea.png"])
    xconv.render(explained, "grid", GENERATED, channel=5)


def two_animal_photo():
    """The dog-and-cat sample of ../shared when this checkout has it, else Chelsea (a cat only)."""
    from xconv.demo import chelsea
    from xconv.images import load_image

    sample = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples" / "dog-and-cat.png"
    return load_image(sample) if sample.is_file() else chelsea()


def make_method_pictures():
    """One comparison figure per family of methods: the first figure of each method page."""
    import shutil

    import xconv
    from xconv.images import resize

    model = xconv.load_model("catsdogs")
    photo = two_animal_photo()
    batch = resize(photo, model.input_size)[None]
    for family, methods in FAMILIES.items():
        explanation = xconv.compare(model, batch, methods, target="dog", originals=[photo],
                                    sources=[GENERATED / f"{family}.png"])
        [written] = xconv.render(explanation, "compare", GENERATED, columns=4, height=200)
        shutil.move(written.path, GENERATED / f"{family}_compare.png")


CHOOSING_METHODS = ["gradcam", "gradcam++", "layercam", "hirescam", "xgradcam", "eigencam", "saliency",
                    "guided-backprop"]
CHOOSING_METRICS = ["deletion", "insertion", "average-drop", "randomization"]


def validation_sample(per_class: int = 12) -> list[Path]:
    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "cats-vs-dogs" / "validation"
    if not folder.is_dir():
        return []
    return [path for name in ("cats", "dogs") for path in sorted((folder / name).iterdir())[:per_class]]


def make_choosing_table():
    """xconv score on a sample of the validation photos: the table and figure of the 'Choosing' page."""
    import math
    import shutil

    import xconv
    from xconv.demo import chelsea
    from xconv.images import resize
    from xconv.scoring import REFERENCES, ScoreTable, write_files

    model = xconv.load_model("catsdogs")
    photos = validation_sample()
    images = [str(p) for p in photos] or resize(chelsea(), model.input_size)[None]
    table = ScoreTable()
    xconv.score(model, images, CHOOSING_METHODS, CHOOSING_METRICS, table=table,
                metric_options={"deletion": {"steps": 10}, "insertion": {"steps": 10}, "randomization": {"layers": 3}})
    scratch = GENERATED / "choosing"
    write_files(table, scratch)
    shutil.move(scratch / "score.png", GENERATED / "choosing_score.png")
    summary, best = table.summary(), table.best()
    metrics = list(table.higher_is_better)
    cells = {(row["method"], row["metric"]): row for row in summary}
    lines = ["| method | " + " | ".join(f"{m} {'(higher)' if table.higher_is_better[m] else '(lower)'}" for m in metrics)
             + " |", "| --- |" + " --- |" * len(metrics)]
    for method in CHOOSING_METHODS + list(REFERENCES):
        values = []
        for metric in metrics:
            row = cells[(method, metric)]
            text = "-" if math.isnan(row["mean"]) else f"{row['mean']:.3f} ± {row['ci95']:.3f}"
            values.append(f"**{text}**" if best.get(metric) == method else text)
        lines.append(f"| `{method}` | " + " | ".join(values) + " |")
    source = f"{len(photos)} validation photos" if photos else "Chelsea (the validation photos are absent)"
    lines += ["", f"*Mean ± 95 % interval over {source}; bold: the best method per metric.*"]
    (GENERATED / "choosing_table.txt").write_text("\n".join(lines) + "\n")
