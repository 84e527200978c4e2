"""The Ray engine on a local Ray instance (2 CPUs): the same files and manifest as the local engine."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from xconv.cli import build_app

ray = pytest.importorskip("ray", reason="the Ray engine is an optional extra: pip install 'xconv[ray]'")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_ray_engine_writes_what_the_local_engine_writes(local_ray, model_file, tmp_path, monkeypatch):
    """Paths as a user types them (relative): the workers must not depend on the driver's directory, and
    the manifest must record the inputs as given, so a local --resume afterwards skips them."""
    import os

    monkeypatch.chdir(tmp_path)
    model_file = os.path.relpath(model_file)
    photos = Path("photos")
    photos.mkdir()
    rng = np.random.default_rng(3)
    for index in range(20):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(photos / f"p{index:02d}.png")
    Path("store").mkdir()  # a link farm's photo (DVC, a download cache): files are named after the link
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save("store/ab12cd.png")
    (photos / "p20.png").symlink_to(Path("..", "store", "ab12cd.png"))
    (photos / "p05_broken.png").write_bytes(b"\x89PNG not really")
    runner, app = CliRunner(), build_app()
    outputs = {}
    for engine in ("local", "ray"):
        out = Path(engine)
        result = runner.invoke(app, ["explain", str(photos), "--model", str(model_file), "--target", "cat",
                                     "--target", "dog", "--out", str(out), "--engine", engine])
        assert result.exit_code == 1, result.output  # the broken photo fails, the rest are explained
        assert "explained 21 of 22 inputs" in result.output and "p05_broken.png" in result.output
        outputs[engine] = out
    local, distributed = (sorted(p.name for p in outputs[e].glob("*.png")) for e in ("local", "ray"))
    assert local == distributed and len(local) == 42 and not any("ab12cd" in name for name in local)
    for name in local:
        np.testing.assert_array_equal(np.asarray(Image.open(outputs["local"] / name)),
                                      np.asarray(Image.open(outputs["ray"] / name)))

    def comparable(records, out):  # files named as the user named the folder (relative), by both engines
        return [{**r, "outputs": [Path(p).relative_to(out).as_posix() for p in r.get("outputs", [])]}
                for r in records]

    assert comparable(manifest(outputs["ray"]), outputs["ray"]) == comparable(manifest(outputs["local"]), outputs["local"])
    resumed = runner.invoke(app, ["explain", str(photos), "--model", str(model_file), "--target", "cat", "--target",
                                  "dog", "--out", "ray", "--resume"])
    assert "21 already done (--resume)" in resumed.output, resumed.output


def test_a_ray_batch_keeps_a_path_given_twice_apart(model_file, tmp_path):
    """The actor's callable, run in this process: both copies of a path get their own place, files and
    spelling (a local --resume matches records by the path as the user gave it)."""
    from xconv.batch_job import JobSpec
    from xconv.ray_engine import RayExplainer

    photo, broken = tmp_path / "p.png", tmp_path / "broken.png"
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(photo)
    broken.write_bytes(b"not an image")
    paths = [str(photo), str(broken), str(photo)]
    # The user spelled the photo two ways; the driver resolves both to one absolute path for the workers.
    given = [str(photo), str(broken), f"{tmp_path}/./p.png"]
    explainer = RayExplainer(JobSpec(model=str(model_file), out=str(tmp_path / "out")), total=3)
    batch = {"position": np.arange(3), "path": np.array(paths), "input": np.array(given)}
    records = [json.loads(text) for text in explainer(batch)["record"]]
    assert [(r["input"], r["position"], r["status"]) for r in records] == [
        (given[0], 0, "ok"), (given[1], 1, "error"), (given[2], 2, "ok")]
    first, second = (r["outputs"] for r in records if r["status"] == "ok")
    assert first != second and all(Path(p).is_file() for p in first + second)


def test_ray_engine_without_ray_says_how_to_install(monkeypatch, model_file, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    result = CliRunner().invoke(build_app(), ["explain", str(photo), "--model", str(model_file), "--engine", "ray",
                                              "--out", str(tmp_path / "out")])
    assert result.exit_code != 0 and "pip install 'xconv[ray]'" in result.output


def test_concurrency_reaches_the_ray_engine_and_only_it(monkeypatch, model_file, tmp_path):
    import xconv.ray_engine
    from xconv.streaming import StreamSummary

    calls = []
    monkeypatch.setattr(xconv.ray_engine, "explain_on_ray",
                        lambda paths, spec, **options: calls.append(options) or StreamSummary(len(paths), len(paths)))
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    runner, app = CliRunner(), build_app()
    command = ["explain", str(photo), "--model", str(model_file), "--out", str(tmp_path / "out")]
    assert runner.invoke(app, command + ["--engine", "ray", "--concurrency", "3"]).exit_code == 0
    assert runner.invoke(app, command + ["--engine", "ray"]).exit_code == 0
    assert [call["concurrency"] for call in calls] == [3, None]  # None: one actor per GPU, else per CPU
    local = runner.invoke(app, command + ["--concurrency", "3"])
    assert local.exit_code != 0 and "use it with --engine ray" in local.output and "Traceback" not in local.output
    assert len(calls) == 2


@pytest.mark.parametrize("mistake, message", [(["--layer", "no_such_layer"], "no_such_layer"),
                                              (["--target", "horse"], "horse")])
def test_ray_engine_reports_a_wrong_layer_or_class_in_one_line(local_ray, model_file, tmp_path, mistake, message):
    """The workers meet the mistake; it comes back as the error itself and prints as one line."""
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(photo)
    result = CliRunner().invoke(build_app(), ["explain", str(photo), "--model", str(model_file), "--engine", "ray",
                                              "--out", str(tmp_path / "out"), *mistake])
    errors = [line for line in result.output.splitlines() if line.startswith("xconv: error")]
    assert result.exit_code == 1 and len(errors) == 1 and message in errors[0], result.output
    # Not Ray's wrapping of it (Ray's logging to the test runner's closed streams adds noise of its own).
    assert "RayTaskError" not in result.output and "UserCodeException" not in result.output, result.output


def test_manifest_names_follow_the_folder_as_given_like_the_local_engine():
    """Workers write under the absolute folder; the records name files as the local engine does, shared
    pictures (a chunk's grid) included, and "." gives bare names, since --resume compares them as text."""
    from xconv.ray_engine import outputs_under

    record = {"status": "ok", "outputs": ["/abs/out/000_a.png"], "shared_outputs": ["/abs/out/grid.png"]}
    assert outputs_under(record, "/abs/out", "out") == {
        "status": "ok", "outputs": ["out/000_a.png"], "shared_outputs": ["out/grid.png"]}
    assert outputs_under(record, "/abs/out", ".")["outputs"] == [str(Path(".") / "000_a.png")] == ["000_a.png"]
