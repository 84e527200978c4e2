"""MkDocs hook: generate the CLI reference and the pictures the pages show, and typeset the math.

Everything under docs/generated/ is made here at build time, from the bundled model and the cat photo
that ships with scikit-image (the method pages use the two-animal photo of ../shared when it is there,
Chelsea otherwise), so the docs never hold stale pictures or copies of training data. Formulas are
turned into MathML at build time (latex2mathml), which browsers draw natively: the site needs no math
script and no network.
Pictures are made once and kept between builds, until the bundled model changes (a stamp of its bytes
is kept beside them).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path

GENERATED = Path(__file__).parent / "generated"
BUNDLED_MODEL = Path(__file__).parents[1] / "plugins" / "data" / "catsdogs.keras"


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
    drop_pictures_of_another_model()
    GENERATED.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "typer", "xconv.cli", "utils", "docs", "--name", "xconv",
                    "--title", "CLI reference", "--output", str(GENERATED / "cli.md")], check=True,
                   capture_output=True)
    if not all((GENERATED / name).exists() for name in ("chelsea_gradcam_cat.png", DEMO_FILTERS)):
        make_pictures()
    if not (GENERATED / "cams_compare.png").exists():
        make_method_pictures()
    if not (GENERATED / "choosing_table.txt").exists():
        make_choosing_table()
    if not (GENERATED / "filters_table.txt").exists():
        make_filter_pictures()


DEMO_FILTERS = "catsdogs_block2_sepconv2_filters_0-15.png"  # xconv demo's filter patterns, on the filters page


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


FILTER_LAYERS = ["block2_sepconv2", "block3_sepconv2", "block4_sepconv2"]


def make_filter_pictures():
    """Filters 0-7 of three depths of the bundled model, with the default robust ascent and without it,
    and the table of their robustness and high-frequency share (filters 0-15) that the filters page shows."""
    import numpy as np

    import xconv
    from xconv_plugins.filters import high_frequency_share

    model = xconv.load_model("catsdogs")
    lines = ["| layer | setting | median robustness | median high-frequency share |", "| --- | --- | --- | --- |"]
    for layer in FILTER_LAYERS:
        for setting, options in (("plain", {"robust": False}), ("robust", {})):
            explained = xconv.explain(model, None, method="filters", layer=layer, filters="0-15", **options)
            lines.append(f"| `{layer}` | {setting} | {np.nanmedian(explained.arrays['robustness']):.2f} | "
                         f"{np.median(high_frequency_share(explained.patterns)):.2f} |")
            first = xconv.Explanation(method="filters", kind="patterns", model_name=explained.model_name,
                                      layer=layer, arrays={key: value[:8] for key, value in explained.arrays.items()},
                                      metadata={**explained.metadata, "filters": explained.metadata["filters"][:8]})
            [written] = xconv.render(first, "grid", GENERATED / "filters" / setting)
            written.path.replace(GENERATED / f"filters_{layer}_{setting}.png")
    (GENERATED / "filters_table.txt").write_text("\n".join(lines) + "\n")


def two_animal_photo():
    """The dog-and-cat sample of ../shared when this checkout has it, else Chelsea (a cat only)."""
    from xconv.demo import chelsea
    from xconv.images import load_image

    sample = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples" / "dog-and-cat.png"
    return load_image(sample) if sample.is_file() else chelsea()


def make_method_pictures():
    """One comparison figure per family of methods: the first figure of each method page."""
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


def drop_pictures_of_another_model():
    """Empty docs/generated/ when the bundled model is not the one its pictures were made with."""
    stamp = GENERATED / "model.sha256"
    digest = hashlib.sha256(BUNDLED_MODEL.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    shutil.rmtree(GENERATED, ignore_errors=True)
    GENERATED.mkdir()
    stamp.write_text(digest)


def make_choosing_table():
    """xconv score on 24 validation photos: the build-time table and figure of the 'Choosing' page."""
    sys.path.insert(0, str(Path(__file__).parent))
    from choosing_table import make_choosing_table as make

    out = make(GENERATED / "choosing", per_class=12, steps=10)
    shutil.copy(out / "table.txt", GENERATED / "choosing_table.txt")
    shutil.copy(out / "score.png", GENERATED / "choosing_score.png")
