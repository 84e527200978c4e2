"""Every registered explainer meets the plugin contract on a tiny random convnet (xplique's test_common)."""

import pytest

from xconv.registry import get_registry
from xconv.testing import check_explainer

FAST = {"filters": {"steps": 3, "filters": "0-3"}}


@pytest.mark.parametrize("name", get_registry().names("explainer"))
def test_explainer_contract(name):
    explanation = check_explainer(get_registry().get("explainer", name), **FAST.get(name, {}))
    assert explanation.method == name
