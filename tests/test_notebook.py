"""The example notebook runs offline from top to bottom, and explanations display themselves as pictures."""

import re

import numpy as np
import pytest

import xconv
from conftest import REPO
from xconv.testing import TinyModel, random_images, tiny_keras_convnet


def test_explanation_displays_as_inline_pictures():
    model = TinyModel(tiny_keras_convnet((32, 32), classes=2, seed=1), ["a", "b"])
    images = random_images(2, (32, 32), seed=0)
    shown = xconv.explain(model, images, "gradcam")._repr_html_()
    assert shown.count('<img src="data:image/jpeg;base64,') == 2 and "Explanation(gradcam" in shown
    grid = xconv.explain(model, images[:1], "activations", layers=["conv1"])._repr_html_()
    assert grid.count("<img ") == 1 and not re.search(r'src="(?!data:)', grid)
    many = xconv.explain(model, random_images(30, (32, 32), seed=1), "gradcam")._repr_html_()  # a folder's worth
    assert many.count("<img ") == 24 and "6 more pictures not shown: <code>xconv.render(e, &#x27;overlay&#x27;" in many


def test_example_notebook_executes_and_shows_pictures():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(REPO / "examples" / "notebook.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(shown) == 3 and all('<img src="data:image/jpeg;base64,' in html for html in shown)
    assert "Explanation(gradcam" in shown[0] and "Explanation(filters" in shown[2]
    assert shown[0].count("<img") == 2  # Grad-CAM for each class, as the notebook says
    assert np.all([len(html) < 1_500_000 for html in shown])  # small images, not full-size PNGs
