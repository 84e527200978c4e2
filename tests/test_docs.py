"""The docs cannot rot: every hook is documented and tested, and every code example in README.md and
docs/ runs (tests/test_docs_site.py builds the site).

Examples run in a scratch folder holding ``photo.jpg`` (Chelsea the cat, from scikit-image), a
``folder/`` of photos and a tiny generated dataset standing in for ``DIR``. Python blocks run in one
namespace per page, in order; each ``xconv ...`` line of a bash block runs as a command and must exit 0.
The install and test commands themselves (``pip install``, ``pytest``) are what runs this suite, so
they are not run again from inside it. A command that appears on several pages runs once, ``xconv
train`` runs with ``--epochs 2`` appended and a filter-pattern command that names no step count with
``-O steps=4``: their full length is a benchmark (the quality of full-length ascents is tested in
tests/test_filter_robustness.py), not an example.
"""

import inspect
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from xconv import hookspecs
from xconv.demo import chelsea

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
NOT_RERUN = ("python -m pip install", "pip install", "python -m pytest", "python3 -m venv", "source ")


def code_blocks(page: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if lang == language]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    Image.fromarray(chelsea()).save(root / "photo.jpg")
    (root / "folder").mkdir()
    Image.fromarray(chelsea()[::2, ::2]).save(root / "folder" / "small.png")
    (root / "boxes.csv").write_text("image,class,x0,y0,x1,y1\nsmall.png,cat,40,20,200,150\n")
    rng = np.random.default_rng(0)
    for split, count in [("train", 6), ("validation", 3)]:
        for name, color in [("cats", (200, 60, 60)), ("dogs", (60, 60, 200))]:
            folder = root / "data" / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = np.clip(rng.normal(color, 30, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def hook_names() -> list[str]:
    return [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("xconv_")]


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_documented_and_tested(hook):
    assert getattr(hookspecs, hook).__doc__, f"{hook} has no docstring"
    assert f"### {hook}" in (REPO / "docs" / "plugins.md").read_text(), f"{hook} is not in docs/plugins.md"
    tests = [p for p in (REPO / "tests").glob("test_*.py") if p.name != "test_docs.py"]
    assert any(hook in p.read_text() for p in tests), f"no test exercises {hook}"


@pytest.mark.parametrize("page", [p for p in PAGES if code_blocks(p, "python")], ids=lambda p: p.name)
def test_python_examples_run(page, workspace, monkeypatch):
    blocks = code_blocks(page, "python")
    monkeypatch.chdir(workspace)
    namespace = {"__name__": f"docs_{page.stem}"}
    for block in blocks:
        exec(compile(block, f"{page.name} example", "exec"), namespace)  # noqa: S102 - our own docs


ALREADY_RUN: set[str] = set()


def shell_commands(page: Path) -> list[str]:
    commands = []
    for block in code_blocks(page, "bash"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith(NOT_RERUN):
                commands.append(line)
    return commands


@pytest.mark.parametrize("page", [p for p in PAGES if shell_commands(p)], ids=lambda p: p.name)
def test_shell_examples_run(page, workspace, monkeypatch):
    """Each command runs through the CLI in this process (TensorFlow starts once for all of them);
    tests/test_cli.py covers the real subprocess entry point."""
    from typer.testing import CliRunner

    from xconv.cli import build_app

    monkeypatch.chdir(workspace)
    app, runner = build_app(), CliRunner()
    for command in shell_commands(page):
        if command in ALREADY_RUN:
            continue
        ALREADY_RUN.add(command)
        words = shlex.split(command.replace("DIR", str(workspace / "data")))
        if words[:2] == ["xconv", "train"]:
            words += ["--epochs", "2"]
        if "--method filters" in command and "steps=" not in command:
            words += ["-O", "steps=4"]
        assert words[0] == "xconv", f"{page.name}: only xconv commands are run, got {command!r}"
        result = runner.invoke(app, words[1:])
        assert result.exit_code == 0, f"{page.name}: {command}\n{result.output[-2000:]}"
        assert "xconv: warning" not in result.output, f"{page.name}: {command}\n{result.output[-2000:]}"


def test_the_docs_held_out_photos_are_those_training_held_out(tmp_path, monkeypatch):
    """The held-out rows of 'Choosing a method' must be the photos the bundled model's recipe did not move
    into training: a stray file (.DS_Store) or an unreadable photo shifted the parity of every later one."""
    monkeypatch.syspath_prepend(str(REPO / "docs"))
    from choosing_table import held_out_photos, validation_photos

    from xconv.image_folders import read_image_folder, split_validation

    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        for index in range(7):
            Image.fromarray(np.full((8, 8, 3), index * 30, np.uint8)).save(tmp_path / name / f"{index}.png")
        (tmp_path / name / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "cats" / "2.png").write_bytes(b"broken")
    photos = validation_photos(None, tmp_path)
    assert len(photos) == 14 and not any(p.name == ".DS_Store" for p in photos)
    validation = read_image_folder(tmp_path, (8, 8), ["cats", "dogs"])
    _, held = split_validation(validation, validation, 0.5)
    assert held_out_photos(photos, [error.path for error in validation.skipped]) == {str(p) for p in held.paths}
