"""Streaming explain: manifest as it goes, resume after an interruption, errors recorded, memory bounded queues."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from xconv.cli import build_app
from xconv.images import ImageError
from xconv.streaming import Manifest, stream


def fake_pipeline(out: Path, calls: list, interrupt_at=None, file_name=lambda number, name: f"{number:03d}_{name}.txt"):
    """decode/compute/write over file names: 'bad*' fails to decode; compute doubles; write makes a file
    (``file_name(number, name)``)."""

    def decode(chunk):
        good = [p for p in chunk if not p.startswith("bad")]
        errors = [ImageError(p, "not an image file") for p in chunk if p.startswith("bad")]
        return np.array([len(p) for p in good]), None, good, errors

    def compute(batch, originals, good, numbers):
        calls.append(list(good))
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return [(number, value * 2) for number, value in zip(numbers, batch)]

    def write(result, good):
        records = []
        for (number, value), name in zip(result, good):
            path = out / file_name(number, name)
            path.write_text(str(value))
            records.append({"input": name, "status": "ok", "outputs": [str(path)]})
        return records

    return decode, compute, write


def test_a_path_given_twice_keeps_both_places_and_both_files(tmp_path):
    stream(["a", "bad1", "a", "bad1", "b"], tmp_path, *fake_pipeline(tmp_path, []), batch_size=8)
    records = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [(r["input"], r["position"]) for r in records] == [("a", 0), ("bad1", 1), ("a", 2), ("bad1", 3), ("b", 4)]
    assert [r["outputs"] for r in records if r["status"] == "ok"] == [[str(tmp_path / f"{n}.txt")]
                                                                      for n in ("000_a", "002_a", "004_b")]
    (tmp_path / "002_a.txt").unlink()  # the second copy's file is gone: resume redoes that copy, not the first
    calls = []
    resumed = stream(["a", "bad1", "a", "bad1", "b"], tmp_path, *fake_pipeline(tmp_path, calls), batch_size=8,
                     resume=True)
    assert resumed.resumed == 2 and calls == [["a"]] and (tmp_path / "002_a.txt").exists()


def test_interrupted_run_resumes_to_the_same_files_and_manifest(tmp_path):
    names = ["a", "b", "bad1", "c", "d", "e", "f", "g"]
    full, interrupted = tmp_path / "full", tmp_path / "interrupted"
    full.mkdir(), interrupted.mkdir()
    summary = stream(names, full, *fake_pipeline(full, []), batch_size=2)
    assert (summary.explained, summary.failed, summary.interrupted) == (7, 1, False)

    calls = []
    first = stream(names, interrupted, *fake_pipeline(interrupted, calls, interrupt_at=3), batch_size=2)
    assert first.interrupted and first.explained == 3  # chunks 1 and 2 written; Ctrl-C during chunk 3
    recorded = Manifest(interrupted).records()
    assert set(recorded) == {"a", "b", "bad1", "c"} and recorded["bad1"]["status"] == "error"
    assert all(Path(p).exists() for r in recorded.values() for p in r.get("outputs", []))

    calls = []
    resumed = stream(names, interrupted, *fake_pipeline(interrupted, calls), batch_size=2, resume=True)
    assert calls == [["d"], ["e", "f"], ["g"]]  # bad1 is tried again; a, b, c are done
    assert resumed.resumed == 3
    assert sorted(p.name for p in interrupted.glob("*.txt")) == sorted(p.name for p in full.glob("*.txt"))
    for path in full.glob("*.txt"):
        assert (interrupted / path.name).read_text() == path.read_text()
    done = {(name, position) for position, name in enumerate(names) if name != "bad1"}
    assert Manifest(interrupted).completed() == Manifest(full).completed() == done


def test_writer_errors_surface_and_nothing_is_recorded_for_them(tmp_path):
    decode, compute, _ = fake_pipeline(tmp_path, [])

    def failing_write(result, good):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        stream(["a", "b", "c"], tmp_path, decode, compute, failing_write, batch_size=1)
    assert not Manifest(tmp_path).records()


def test_cli_explain_writes_a_manifest_and_resume_skips_done_inputs(model_file, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(photos / f"p{index}.png")
    out = tmp_path / "out"
    runner, app = CliRunner(), build_app()
    first = runner.invoke(app, ["explain", str(photos), "--model", str(model_file), "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert "explained 3 of 3 inputs" in first.output and "wrote" not in first.output  # a summary, not a line each
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [Path(r["input"]).name for r in records] == ["p0.png", "p1.png", "p2.png"]
    for record in records:
        assert record["status"] == "ok" and record["layer"] and record["targets"] == [record["prediction"]]
        assert sum(record["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert all(Path(p).exists() for p in record["outputs"])
    again = runner.invoke(app, ["explain", str(photos), "--model", str(model_file), "--out", str(out), "--resume"])
    assert again.exit_code == 0 and "3 already done" in again.output and "explained 0 of 3" in again.output
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 3
    # Another photo of the same name, explained into the same folder, writes over p0's pictures: said.
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(other / "p0.png")
    lone = tmp_path / "lone"  # a lone input's files carry no number: p0_gradcam_dog.png
    runner.invoke(app, ["explain", str(photos / "p0.png"), "--model", str(model_file), "--out", str(lone)])
    over = runner.invoke(app, ["explain", str(other / "p0.png"), "--model", str(model_file), "--out", str(lone)])
    assert over.exit_code == 0 and "wrote over 1 files that an earlier run made" in over.output, over.output
    same = runner.invoke(app, ["explain", str(other / "p0.png"), "--model", str(model_file), "--out", str(lone)])
    assert same.exit_code == 0 and "wrote over" not in same.output  # its own files, written again


def test_resume_redoes_inputs_of_another_job_and_repairs_a_cut_line(tmp_path):
    names = ["a", "b", "c"]
    first = stream(names, tmp_path, *fake_pipeline(tmp_path, []), batch_size=2, job="gradcam")
    assert first.explained == 3
    with Manifest(tmp_path).path.open("ab") as handle:  # bytes that are not UTF-8 (a disk error, another tool)
        handle.write(b'\xff\xfe{"input": "y"}\n')
    with Manifest(tmp_path).path.open("a") as handle:
        handle.write('{"input": "x", "sta')  # a crash in the middle of a line
    calls = []
    other = stream(names, tmp_path, *fake_pipeline(tmp_path, calls), batch_size=2, resume=True, job="eigencam")
    assert other.resumed == 0 and calls == [["a", "b"], ["c"]]  # another job's records do not count
    records = Manifest(tmp_path).records()
    assert {records[name]["job"] for name in names} == {"eigencam"} and "x" not in records
    same = stream(names, tmp_path, *fake_pipeline(tmp_path, []), batch_size=2, resume=True, job="eigencam")
    assert same.resumed == 3 and same.explained == 0


def test_another_jobs_run_in_between_undoes_only_what_it_wrote_over(tmp_path):
    """Job A, then job B with --resume in the same folder, then A with --resume redid all of A's inputs,
    though B wrote other files; it must redo only the inputs whose files B wrote over."""
    def pipeline(suffix, calls):
        return fake_pipeline(tmp_path, calls, file_name=lambda number, name:
                             f"{number:03d}_{name}_{suffix if name != 'b' else 'shared'}.txt")

    names = ["a", "b", "c"]
    stream(names, tmp_path, *pipeline("cat", []), batch_size=3, job="A")
    stream(names, tmp_path, *pipeline("dog", []), batch_size=3, resume=True, job="B")  # b: the same file name
    calls = []
    again = stream(names, tmp_path, *pipeline("cat", calls), batch_size=3, resume=True, job="A")
    assert again.resumed == 2 and calls == [["b"]]


def test_resume_redoes_an_input_that_moved_since_its_files_carry_its_old_number(tmp_path):
    """x.jpg explained at position 0, then w.jpg put before it: w.jpg now writes position 0's files, so
    skipping x.jpg (done, files present) would leave it without its own and report success."""
    calls = []
    stream(["x", "y"], tmp_path, *fake_pipeline(tmp_path, []), batch_size=2, job="j")
    summary = stream(["w", "x", "y"], tmp_path, *fake_pipeline(tmp_path, calls), batch_size=2, resume=True,
                     job="j")
    assert summary.resumed == 0 and calls == [["w", "x"], ["y"]]
    assert {name: record["position"] for name, record in Manifest(tmp_path).records().items()} == {
        "w": 0, "x": 1, "y": 2}
    again = stream(["w", "x", "y"], tmp_path, *fake_pipeline(tmp_path, []), batch_size=2, resume=True, job="j")
    assert again.resumed == 3


def test_numbered_files_do_not_depend_on_how_many_inputs_a_chunk_holds():
    from xconv.interfaces import Explanation

    one = Explanation(method="m", kind="heatmap", model_name="x", arrays={}, sources=["a.jpg"], index_offset=[0])
    assert one.stem(0) == "000_a"
    alone = Explanation(method="m", kind="heatmap", model_name="x", arrays={}, sources=["a.jpg"])
    assert alone.stem(0) == "a"


def test_photos_with_long_names_get_short_distinct_output_names(model_file, tmp_path):
    """A 240-character photo name is legal; with a number, a method and a class added it would not be."""
    from xconv import safe_name

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    long_names = ["p" + "x" * 230 + tail for tail in ("_cat.png", "_dog.png")] + ["\u00e9" * 120 + ".png"]
    for name in long_names:
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(photos / name)
    out = tmp_path / "out"
    result = CliRunner().invoke(build_app(), ["explain", str(photos), "--model", str(model_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "explained 3 of 3 inputs" in result.output
    written = sorted(p.name for p in out.glob("*.png"))
    assert len(written) == 3 and all(len(name.encode()) < 200 for name in written)
    assert safe_name("a" * 300) != safe_name("a" * 299) and safe_name("layer_1") == "layer_1"


def test_a_rerun_into_an_output_folder_inside_the_inputs_does_not_explain_its_own_pictures(model_file, tmp_path):
    """--resume with the same arguments picked up the first run's PNGs as photos and renumbered the rest;
    a class named twice (-t 0 -t 0) was explained, written and recorded twice."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(photos / f"p{index}.png")
    out = photos / "out"
    arguments = ["explain", str(photos), "--model", str(model_file), "--out", str(out), "-t", "0", "-t", "0"]
    runner, app = CliRunner(), build_app()
    first = runner.invoke(app, arguments)
    assert first.exit_code == 0 and "2 files in" in first.output, first.output
    again = runner.invoke(app, [*arguments, "--resume"])
    assert again.exit_code == 0 and "left out 2 files inside the output folder" in again.output
    assert "explained 0 of 2 inputs" in again.output and "2 already done" in again.output
    assert len(list(out.glob("*.png"))) == 2 and len((out / "manifest.jsonl").read_text().splitlines()) == 2
    from xconv.images import expand_inputs

    (tmp_path / "link").symlink_to(out)
    assert len(expand_inputs([photos], output_folder=tmp_path / "link")) == 2  # the same folder by a link
    (out / "manifest.jsonl").rename(out / "records.jsonl")  # without it, out/ is not known as an output folder
    for folder in (photos, tmp_path, photos / "p0.png"):  # the input folder itself, a parent: nothing left out
        assert len(expand_inputs([photos], output_folder=folder)) == 4
    assert expand_inputs([out / "000_p0_gradcam_class_0.png"], output_folder=out) != []  # a file named: kept


def test_an_empty_folder_is_one_line_naming_it_and_no_manifest(model_file, tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(build_app(), ["explain", str(tmp_path / "empty"), "--model", str(model_file),
                                              "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and f"no input images in {tmp_path / 'empty'}" in result.output
    assert "manifest" not in result.output and not (tmp_path / "out").exists()


def test_resume_redoes_an_input_whose_file_another_input_wrote_since(tmp_path):
    """Two runs into one folder, a/photo.jpg then b/photo.jpg, both write photo.png: a's record is stale."""
    manifest = Manifest(tmp_path)
    shared = tmp_path / "photo.png"
    shared.write_text("b's picture")
    manifest.append([{"input": "a/photo.jpg", "status": "ok", "outputs": [str(shared)], "job": "j"}])
    manifest.append([{"input": "b/photo.jpg", "status": "ok", "outputs": [str(shared)], "job": "j"}])
    (manifest.path.parent / "other.txt").write_text("")
    with manifest.path.open("a") as handle:
        handle.write("{}\n[1, 2]\n")  # lines of some other tool: ignored, not a crash
    assert manifest.completed("j") == {("b/photo.jpg", None)}
    manifest.append([{"input": "a/photo.jpg", "status": "ok", "outputs": [str(shared)], "job": "j"}])
    assert manifest.completed("j") == {("a/photo.jpg", None)}  # a wrote it last: now b's record is the stale one


def test_the_job_key_changes_when_the_model_file_is_retrained_in_place(tmp_path):
    import os

    from xconv.batch_job import JobSpec

    model = tmp_path / "m.keras"
    model.write_bytes(b"first")
    before = JobSpec(model=str(model), methods=["gradcam"]).key()
    os.utime(model, ns=(1, 10**18))
    assert JobSpec(model=str(model), methods=["gradcam"]).key() == before  # a copy elsewhere: the same key
    relative = os.path.relpath(model)  # as a user types it; Ray's workers get it absolute: the same job
    assert JobSpec(model=relative, methods=["gradcam"]).key() == before
    model.write_bytes(b"second")
    assert JobSpec(model=str(model), methods=["gradcam"]).key() != before
    assert JobSpec(model="catsdogs", methods=["gradcam"]).key() == JobSpec(model="catsdogs", methods=["gradcam"]).key()


def test_files_a_renderer_did_not_attribute_are_listed_for_its_whole_chunk(tmp_path):
    """A plugin renderer returning plain paths for a chunk of two: both records list the file, and --resume
    redoes both when it is gone (before, both said "ok" with no files and were skipped forever)."""
    from xconv.batch_job import manifest_records
    from xconv.interfaces import Explanation, Output

    explanation = Explanation(method="m", kind="heatmap", model_name="x", arrays={}, sources=["a", "b"],
                              predictions=[("cat", 0.9), ("dog", 0.8)])
    sheet = tmp_path / "sheet.png"
    sheet.write_text("both")
    records = manifest_records([explanation], ["a", "b"], [[Output(str(sheet))]], model=None)
    assert [r["shared_outputs"] for r in records] == [[str(sheet)], [str(sheet)]]
    manifest = Manifest(tmp_path)
    manifest.append(records)
    assert manifest.completed() == {("a", None), ("b", None)}
    sheet.unlink()
    assert manifest.completed() == set()
