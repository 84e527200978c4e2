"""MkDocs hook: generate the CLI reference from the typer app and the pictures the pages show.

Everything under docs/generated/ is made here at build time, from the bundled model and the cat photo
that ships with scikit-image, so the docs never hold stale pictures or copies of training data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GENERATED = Path(__file__).parent / "generated"


def on_pre_build(config, **kwargs):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    GENERATED.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "typer", "xconv.cli", "utils", "docs", "--name", "xconv",
                    "--title", "CLI reference", "--output", str(GENERATED / "cli.md")], check=True,
                   capture_output=True)
    if not (GENERATED / "chelsea_gradcam_cat.png").exists():
        make_pictures()


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
