"""The example third-party plugin, installed with pip into a scratch folder and driven through the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO
from xconv.testing import random_images

EXAMPLE = REPO / "examples" / "xconv-saliency"


@pytest.fixture(scope="module")
def installed_site(tmp_path_factory):
    """pip install ./examples/xconv-saliency --target SCRATCH; returns SCRATCH."""
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(EXAMPLE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return target


@pytest.fixture(scope="module")
def installed(installed_site):
    """An environment for a new process that sees the installed plugin."""
    path = os.pathsep.join([str(installed_site), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3"}


def xconv(env, *args):
    return subprocess.run([sys.executable, "-m", "xconv.cli", *map(str, args)], capture_output=True, text=True, env=env)


def test_list_shows_the_plugins_explainers_with_their_distribution(installed):
    result = xconv(installed, "list", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no clash, no load problem
    rows = {(row["kind"], row["name"]): row for row in json.loads(result.stdout)}
    assert rows[("explainer", "input-x-gradient")]["distribution"] == "xconv-saliency"
    assert rows[("renderer", "contours")]["distribution"] == "xconv-saliency"
    assert rows[("explainer", "gradcam")]["distribution"] == "xconv"


@pytest.mark.parametrize("method,renderer,suffix", [
    ("input-x-gradient", "overlay", "input-x-gradient_dog.png"),
    ("gradcam", "contours", "gradcam_dog_contours.png"),
])
def test_the_plugins_explainer_and_renderer_run_through_the_cli(installed_site, monkeypatch, fresh_registry, model_file,
                                                                 tmp_path, method, renderer, suffix):
    """In this process, whose registry finds the plugin on sys.path where pip put it (the test above finds it
    from a new process): a process each cost 11 s of TensorFlow start-up."""
    from typer.testing import CliRunner

    from xconv.cli import build_app

    monkeypatch.syspath_prepend(str(installed_site))
    photo = tmp_path / "photo.png"
    Image.fromarray(random_images(1, (40, 48))[0]).save(photo)
    result = CliRunner().invoke(build_app(), [
        "explain", str(photo), "--method", method, "--renderer", renderer, "--model", str(model_file), "--target",
        "dog", "-O", "renderer.colormap=turbo", "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[-1])
    assert record["targets"] == ["dog"] and len(record["outputs"]) == 1
    written = Path(record["outputs"][0])
    assert written.name == f"photo_{suffix}" and Image.open(written).size == (48, 40)


def test_the_plugins_own_tests_pass(installed):
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
                            capture_output=True, text=True, env=installed, cwd=EXAMPLE)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "4 passed" in result.stdout
