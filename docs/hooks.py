"""MkDocs hook: generate the CLI reference and the pictures the pages show, and typeset the math.

Everything under docs/generated/ is made here at build time, from the bundled model and the cat photo
that ships with scikit-image (the method pages use the two-animal photo of ../shared when it is there,
Chelsea otherwise), so the docs never hold stale pictures or copies of training data. Formulas are
turned into MathML at build time (latex2mathml), which browsers draw natively: the site needs no math
script and no network.
Pictures are made once and kept between builds, until the bundled model changes (a stamp of its bytes
is kept beside them). With ``XCONV_DOCS_DRAFT=1`` (the test suite's build) missing pictures are drafts,
as the suite runs the docs' commands with fewer epochs and steps: every maker runs, on less work (the
scoring table of two methods on 2 photos, filter patterns from 2 ascent steps, RISE from 100 masks);
drafts are stamped as such, and a build without it remakes them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from html import unescape
from pathlib import Path

GENERATED = Path(__file__).parent / "generated"
STAMP = GENERATED / "pictures.stamp"
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
    draft = os.environ.get("XCONV_DOCS_DRAFT") == "1"
    drop_pictures_of_another_model(draft)
    subprocess.run([sys.executable, "-m", "typer", "xconv.cli", "utils", "docs", "--name", "xconv",
                    "--title", "CLI reference", "--output", str(GENERATED / "cli.md")], check=True,
                   capture_output=True)
    for outputs, make, draft_options in PICTURES:
        if not all((GENERATED / name).exists() for name in outputs):
            if draft:  # a draft among full pictures makes the whole set a draft
                STAMP.write_text(STAMP.read_text().replace(" full", " draft"))
            make(**(draft_options if draft else {}))


DEMO_FILTERS = "catsdogs_block2_sepconv2_filters_0-15.png"  # xconv demo's filter patterns, on the filters page


def make_pictures(filter_steps: int | None = None):
    """xconv demo's pictures, and Chelsea's receptive-field grid and activations; ``filter_steps`` None: the
    filter method's default."""
    import xconv
    from xconv.demo import chelsea, run_demo
    from xconv.images import resize

    run_demo(GENERATED, filter_options={"steps": filter_steps} if filter_steps else None)
    model = xconv.load_model("catsdogs")
    photo = chelsea()
    explained = xconv.explain(model, resize(photo, model.input_size)[None], target="cat", originals=[photo],
                              sources=[GENERATED / "receptive.png"])
    xconv.render(explained, "overlay", GENERATED, grid=True)
    explained = xconv.explain(model, resize(photo, model.input_size)[None], "activations",
                              layers=["block1_sepconv1"], sources=[GENERATED / "chelsea.png"])
    xconv.render(explained, "grid", GENERATED, channel=5)


FILTER_LAYERS = ["block2_sepconv2", "block3_sepconv2", "block4_sepconv2"]


def make_filter_pictures(steps: int | None = None):
    """Filters 0-7 of three depths of the bundled model, with the default robust ascent and without it,
    and the table of their robustness and high-frequency share (filters 0-15) that the filters page shows;
    ``steps`` None: the method's default."""
    import numpy as np

    import xconv
    from xconv_plugins.filters import high_frequency_share

    model = xconv.load_model("catsdogs")
    lines = ["| layer | setting | median robustness | median high-frequency share |", "| --- | --- | --- | --- |"]
    for layer in FILTER_LAYERS:
        for setting, options in (("plain", {"robust": False}), ("robust", {})):
            if steps is not None:
                options = {**options, "steps": steps}
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


def make_method_pictures(rise_masks: int | None = None):
    """One comparison figure per family of methods: the first figure of each method page; ``rise_masks``
    None: RISE's default (2,000 masks, 16 s of a minute's build)."""
    import xconv
    from xconv.images import resize

    model = xconv.load_model("catsdogs")
    photo = two_animal_photo()
    batch = resize(photo, model.input_size)[None]
    every_method = list(dict.fromkeys(method for methods in FAMILIES.values() for method in methods))
    options = {"rise": {"masks": rise_masks}} if rise_masks else {}
    compared = xconv.compare(model, batch, every_method, target="dog", originals=[photo], options=options)  # once each
    for family, methods in FAMILIES.items():
        explanation = replace(compared, sources=[str(GENERATED / f"{family}.png")],
                              arrays={"heatmaps": {m: compared.arrays["heatmaps"][m] for m in methods}},
                              metadata={**compared.metadata, "methods": methods,
                                        "layers": {m: compared.metadata["layers"][m] for m in methods}})
        [written] = xconv.render(explanation, "compare", GENERATED, columns=4, height=200)
        shutil.move(written.path, GENERATED / f"{family}_compare.png")


def drop_pictures_of_another_model(draft: bool = False):
    """Empty docs/generated/ when the bundled model is not the one its pictures were made with, or when
    they are drafts and this build is not (a draft build keeps full pictures)."""
    digest = hashlib.sha256(BUNDLED_MODEL.read_bytes()).hexdigest()
    kept = STAMP.read_text().split() if STAMP.exists() else []
    if kept == [digest, "full"] or (draft and kept == [digest, "draft"]):
        return
    shutil.rmtree(GENERATED, ignore_errors=True)
    GENERATED.mkdir()
    STAMP.write_text(f"{digest} {'draft' if draft else 'full'}\n")


def make_choosing_table(per_class: int = 12, steps: int = 10, methods: list[str] | None = None):
    """xconv score on ``per_class`` validation photos of each class: the build-time table and figure of the
    'Choosing' page (``methods`` None: the page's eight)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from choosing_table import make_choosing_table as make

    out = make(GENERATED / "choosing", per_class=per_class, steps=steps, methods=methods)
    shutil.copy(out / "table.txt", GENERATED / "choosing_table.txt")
    shutil.copy(out / "score.png", GENERATED / "choosing_score.png")


#: What each picture maker writes (it runs when one is missing) and its options in a draft build.
PICTURES = [
    (("chelsea_gradcam_cat.png", DEMO_FILTERS), make_pictures, {"filter_steps": 2}),
    (("cams_compare.png",), make_method_pictures, {"rise_masks": 100}),
    (("choosing_table.txt",), make_choosing_table, {"per_class": 1, "steps": 2, "methods": ["gradcam", "saliency"]}),
    (("filters_table.txt",), make_filter_pictures, {"steps": 2}),
]
