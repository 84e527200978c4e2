"""Every registered explainer, renderer and model meets the plugin contract on tiny inputs (xplique's
test_common), through the same test kit third-party authors use."""

import numpy as np
import pytest

from xconv.registry import get_registry
from xconv.testing import check_explainer, check_metric, check_model, check_renderer

FAST = {"filters": {"steps": 3, "filters": "0-3"}}


@pytest.mark.parametrize("name", get_registry().names("explainer"))
def test_explainer_contract(name):
    explanation = check_explainer(get_registry().get("explainer", name), **FAST.get(name, {}))
    assert explanation.method == name


@pytest.mark.parametrize("name", get_registry().names("renderer"))
def test_renderer_contract(name):
    written = check_renderer(get_registry().get("renderer", name))
    assert written


@pytest.mark.parametrize("name", [n for n in get_registry().names("model") if n != "inceptionv3-transfer"])
def test_model_contract(name):
    """Random weights (weights=None): nothing is downloaded. inceptionv3-transfer is only ever loaded from a
    file it was trained into; tests/test_training.py trains and reloads one."""
    model = check_model(get_registry().get("model", name), weights=None)
    assert model.name == name


METRIC_OPTIONS = {"randomization": {"layers": 1}, "deletion": {"steps": 4}, "insertion": {"steps": 4}}


@pytest.mark.parametrize("name", [n for n in get_registry().names("metric") if n != "pointing"])
def test_metric_contract(name):
    """pointing needs a boxes file: tests/test_metrics.py checks it against hand-made boxes."""
    result = check_metric(get_registry().get("metric", name), **METRIC_OPTIONS.get(name, {}))
    assert len(result.values) == 3 and np.isfinite(result.values).any()  # the metric ran, not skipped
