"""The walk-through in examples/ runs end to end and produces every view of the chapter."""

import json
import os
import runpy
import sys

from PIL import Image

from conftest import REPO


def test_walkthrough_reproduces_the_chapter(tmp_path, monkeypatch):
    """Run as ``python examples/walkthrough.py --out DIR --steps 8`` would, in this process (TensorFlow is
    loaded here already)."""
    script = REPO / "examples" / "walkthrough.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--out", str(tmp_path), "--steps", "8"])
    runpy.run_path(str(script), run_name="__main__")
    report = json.loads((tmp_path / "walkthrough.json").read_text())
    assert {label for label, _ in report["prediction"]} == {"cat", "dog"}
    assert report["first_layer"]["name"] == "stem_conv" and report["first_layer"]["shape"][-1] == 32
    assert len(report["filters"]) == 3
    for layer, numbers in report["filters"].items():
        assert max(numbers["scores"]) > max(numbers["gray"]), layer
    assert set(report["gradcam"]) == {"cat", "dog"}
    names = {os.path.basename(p) for p in report["pictures"]}
    assert {"photo_gradcam_cat.png", "photo_gradcam_dog.png", "photo_stem_conv_grid.png",
            "photo_stem_conv_channel3.png"} <= names
    assert sum(name.endswith("_filters_0-7.png") for name in names) == 3
    for picture in report["pictures"]:
        assert Image.open(picture).size[0] > 0
