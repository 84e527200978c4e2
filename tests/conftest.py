"""Shared fixtures: tiny models, image factories, fake plugin distributions, paths to ../shared photos."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


#: The files that take longest, in that order, run first (pyproject: ``--no-loadscope-reorder``): longest
#: first keeps either worker from being left alone with a long file at the end. By default pytest-xdist
#: starts the files with the most tests first, and the one-test site build (over a minute on a fresh
#: clone, which makes every picture) ran last.
SLOWEST_FILES = ["test_training.py", "test_docs.py", "test_benchmarks.py", "test_docs_site.py", "test_web.py",
                 "test_ray_engine.py", "test_methods.py", "test_example_plugin.py", "test_cli.py"]


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the others keep their order


def shared_path(*parts) -> Path:
    """A path under ../shared/data, skipping the test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the real photos in {path} (the ../shared checkout is absent)")
    return path


@pytest.fixture(scope="session")
def tiny_model():
    from xconv.testing import tiny_convnet

    return tiny_convnet()


@pytest.fixture(scope="session")
def model_file(tmp_path_factory):
    """A tiny two-class (cat, dog) classifier saved as a .keras file with xconv metadata."""
    from xconv.modelfile import write_metadata
    from xconv.testing import tiny_keras_convnet

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_keras_convnet((32, 32), classes=2, seed=0).save(path)
    write_metadata(path, {"class_names": ["cat", "dog"], "name": "tiny"})
    return path


@pytest.fixture(scope="session")
def tiny_images():
    from xconv.testing import random_images

    return random_images(5, (32, 32), seed=3)


@pytest.fixture
def fresh_registry():
    """Rebuild the plugin registry before and after a test that changes installed plugins."""
    from xconv.registry import reset_registry

    reset_registry()
    yield
    reset_registry()


def write_plugin_dist(site: Path, dist_name: str, module_name: str, source: str, entry_name: str | None = None):
    """A fake distribution with an ``xconv`` entry point in ``site``, laid out the way pip would."""
    site.mkdir(exist_ok=True)
    (site / f"{module_name}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist_name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[xconv]\n{entry_name or module_name} = {module_name}\n")


@pytest.fixture
def make_plugin_dist(tmp_path, monkeypatch, fresh_registry):
    """Install a fake distribution with an ``xconv`` entry point, the way pip would lay it out."""

    def make(dist_name: str, module_name: str, source: str, entry_name: str | None = None) -> Path:
        site = tmp_path / "site"
        write_plugin_dist(site, dist_name, module_name, source, entry_name)
        if str(site) not in sys.path:
            monkeypatch.syspath_prepend(str(site))
        return site

    yield make
    for name in list(sys.modules):
        if name.startswith("fakeplug"):
            del sys.modules[name]
