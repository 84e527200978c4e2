"""The CLI through typer's CliRunner and as a real subprocess: outputs, files written, exit codes, errors."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import xconv
from xconv.cli import build_app
from xconv.modelfile import write_metadata
from xconv.testing import random_images

runner = CliRunner()
app = build_app()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for index, image in enumerate(random_images(2, (48, 64), seed=1)):
        Image.fromarray(image).save(folder / f"photo{index}.png")
    (folder / "broken.jpg").write_text("not an image")
    return folder


def assert_one_line_error(result, *needles):
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.startswith("xconv: error")]
    assert lines, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output


def test_help_does_not_import_tensorflow():
    code = ("import sys\nfrom xconv.cli import main\nsys.argv = ['xconv', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'tensorflow imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "explain" in result.stdout and "predict" in result.stdout


def test_a_wrong_option_or_a_missing_argument_is_one_line_too():
    """Click drew a usage line, a hint and a framed box of four lines for these."""
    code = ("import sys\nfrom xconv.cli import main\n"
            "for args in (['predict', '--top', '0', 'x.jpg'], ['predict'], ['predict', '--bogus', 'x'], ['nope']):\n"
            "    sys.argv = ['xconv', *args]\n"
            "    try:\n        main()\n    except SystemExit as stop:\n        print('exit', stop.code, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 8 and lines[1::2] == ["exit 2"] * 4, result.stderr  # one line each (Click's words vary)
    for line, said, command in zip(lines[::2], ["'--top'", "'IMAGES'", "--bogus", "'nope'"],
                                   ["xconv predict", "xconv predict", "xconv predict", "xconv"]):
        assert line.startswith("xconv: error: ") and said in line and line.endswith(f"(see {command} --help)")


def test_mistakes_that_need_no_model_are_said_before_tensorflow_starts(tmp_path):
    """Each of these waited about 5 s for TensorFlow (and the model) before its one line."""
    (tmp_path / "empty").mkdir()
    commands = [["predict", str(tmp_path / "empty")], ["evaluate", "--data", str(tmp_path / "nothing")],
                ["train", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "m.keras")],
                ["train", "--data", str(tmp_path), "--model", "nosuch"],
                ["report", str(tmp_path / "empty"), "--method", "nosuch"], ["report", "x.jpg", "--out", "x.txt"]]
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom xconv.cli import build_app\n"
            f"for args in {commands!r}:\n"
            "    result = CliRunner().invoke(build_app(), args)\n"
            "    assert result.exit_code == 1 and result.output.startswith('xconv: error: '), (args, result.output)\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'tensorflow imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_importing_xconv_asks_tensorflow_for_its_onednn_kernels_unless_the_user_chose(monkeypatch):
    """TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI/AMX; on AVX2 CPUs they are 1.7x faster."""
    import xconv.cpu_kernels as cpu_kernels
    from tensorflow.python.util import _pywrap_util_port

    # Set by import xconv when it came before TensorFlow in this process (a test module importing keras
    # first leaves it unset: collection order decides), or by whoever ran the tests.
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1":  # then TensorFlow loaded after it and took the kernels
        assert _pywrap_util_port.IsMklEnabled()
    monkeypatch.delitem(sys.modules, "tensorflow")  # as before TensorFlow loads
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    cpu_kernels.prefer_onednn_kernels()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # the user's choice stays
    cpu_kernels.prefer_onednn_kernels()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    monkeypatch.undo()
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert "tensorflow" in sys.modules
    cpu_kernels.prefer_onednn_kernels()  # too late once TensorFlow has loaded: left alone
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ


def test_help_shows_bracketed_install_hints_verbatim():
    """Typer renders help as rich markup, where an unescaped "[ray]" is a style tag and vanishes."""
    result = runner.invoke(app, ["explain", "--help"])
    assert result.exit_code == 0
    assert "'xconv[ray]'" in result.output


def test_list_json_names_distributions():
    result = invoke("list", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.output)
    gradcam = next(r for r in rows if r["name"] == "gradcam")
    assert gradcam["kind"] == "explainer" and gradcam["distribution"] == "xconv" and gradcam["description"]
    assert {"catsdogs", "inceptionv3", "overlay"} <= {r["name"] for r in rows}


def test_predict_prints_labels_and_json(model_file, photos):
    result = invoke("predict", photos / "photo0.png", "--model", model_file, "--top", "2", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.splitlines()[0])
    assert record["path"].endswith("photo0.png")
    assert {p["label"] for p in record["predictions"]} == {"cat", "dog"}
    assert abs(sum(p["score"] for p in record["predictions"]) - 1) < 1e-4


def test_explain_batch_keeps_good_files_lists_bad_and_fails(model_file, photos, tmp_path):
    out = tmp_path / "out"
    result = invoke("explain", photos, "--model", model_file, "--target", "cat", "--target", "dog", "--out", out, "--json")
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    errors = [r for r in records if "error" in r]
    done = [r for r in records if "outputs" in r]
    assert [Path(r["path"]).name for r in errors] == ["broken.jpg"]
    assert errors[0]["input"] == errors[0]["path"] and errors[0]["status"] == "error"  # as a record of the manifest
    assert sorted(Path(r["path"]).name for r in done) == ["photo0.png", "photo1.png"]
    written = sorted(p.name for p in out.glob("*.png"))
    assert len(written) == 4 and len(set(written)) == 4  # one per image and target, nothing overwritten
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["status"] for r in manifest) == ["error", "ok", "ok"]
    assert sorted(p for r in manifest for p in r.get("outputs", [])) == sorted(str(out / n) for n in written)
    assert all(r["layer"] == "conv3" and r["targets"] == ["cat", "dog"] for r in done)
    for record in done:
        for path in record["outputs"]:
            image = np.asarray(Image.open(path))
            assert image.shape == (48, 64, 3)  # the original photo's size, not the model's


def test_explain_text_output_and_grid(model_file, photos, tmp_path):
    result = invoke("explain", photos / "photo1.png", "--model", model_file, "--out", tmp_path, "--grid",
                    "--colormap", "viridis", "--verbose")
    assert result.exit_code == 0, result.output
    assert "predicted" in result.output and "wrote" in result.output
    assert len(list(tmp_path.glob("photo1_gradcam_*.png"))) == 1
    # Another layer's map of the same photo and class goes to its own file, not over the default layer's.
    default = next(tmp_path.glob("photo1_gradcam_*.png"))
    result = invoke("explain", photos / "photo1.png", "--model", model_file, "--out", tmp_path, "--layer", "conv2",
                    "--target", default.stem.rsplit("_", 1)[-1])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("photo1_gradcam_*.png")) == sorted(
        [default.name, default.name.replace("_gradcam_", "_gradcam_conv2_")])


@pytest.mark.parametrize("args,needles", [
    (["--method", "nope"], ["unknown explainer 'nope'", "gradcam"]),
    (["--renderer", "nope"], ["unknown renderer 'nope'", "overlay"]),
    (["--layer", "nope"], ["unknown layer 'nope'", "conv3"]),
    (["--layer", "conv3", "--layer", "conv2"], ["method 'gradcam' explains one layer at a time; got 2: conv3, conv2"]),
    (["--target", "unicorn"], ["unknown class 'unicorn'", "cat"]),
    (["--colormap", "nope"], ["option colormap of renderer 'overlay' must be one of jet", "got 'nope'"]),
])
def test_user_mistakes_are_one_line(model_file, photos, tmp_path, args, needles):
    result = invoke("explain", photos / "photo0.png", "--model", model_file, "--out", tmp_path, *args)
    assert_one_line_error(result, *needles)


@pytest.mark.parametrize("args, needle", [(["--resume"], "in every run, so --resume would mix two models"),
                                          (["--engine", "ray"], "in every Ray actor")])
def test_random_weights_are_refused_where_two_draws_would_mix(photos, tmp_path, args, needle):
    result = invoke("explain", photos / "photo0.png", "--weights", "none", "--out", tmp_path / "out", *args)
    assert_one_line_error(result, needle, "--model FILE")
    assert not (tmp_path / "out").exists()


def test_unknown_model_and_missing_files(photos, tmp_path):
    assert_one_line_error(invoke("predict", photos / "photo0.png", "--model", "nope"), "unknown model 'nope'", "catsdogs")
    assert_one_line_error(invoke("predict", photos / "photo0.png", "--model", tmp_path / "missing.keras"), "no such model file")
    assert_one_line_error(invoke("predict", tmp_path / "missing.png", "--model", "inceptionv3", "--weights", tmp_path / "w.h5"),
                          "does not exist", "--weights")
    assert_one_line_error(invoke("predict", photos / "photo0.png", "--weights", "imagenet"),
                          "model 'catsdogs' has no weights named 'imagenet'; --weights takes")  # was "no such model file"


def test_mistaken_files_and_values_say_what_is_wrong(photos, model_file, tmp_path):
    """Each was a true but unhelpful line: h5py's 'file signature not found', 'no such folder' for a file,
    '2 class names for a model with 3 classes', 'out of range' for a reversed range, 'unknown class'."""
    (tmp_path / "photo.weights.h5").write_bytes((photos / "photo0.png").read_bytes())
    assert_one_line_error(invoke("predict", photos / "photo0.png", "--weights", tmp_path / "photo.weights.h5"),
                          "is not an HDF5 weights file")
    bare = tmp_path / "three.keras"  # no class names stored with it
    xconv.testing.tiny_keras_convnet(classes=3).save(bare)
    assert_one_line_error(invoke("predict", photos / "photo0.png", "--weights", bare),
                          f"--weights {bare} is not a catsdogs model: it has 3 outputs", f"--model {bare}")
    (tmp_path / "afile").write_text("")
    assert_one_line_error(invoke("evaluate", "--data", tmp_path / "afile"), "a file, not a folder")
    assert_one_line_error(invoke("train", "--data", tmp_path / "afile", "--out", tmp_path / "m.keras"),
                          "afile is a file, not a folder")
    assert_one_line_error(invoke("explain", photos / "photo0.png", "--model", model_file, "--target", "-1",
                                 "--out", tmp_path), "class index -1 is out of range")
    assert_one_line_error(invoke("explain", "--method", "filters", "--model", model_file, "--filters", "5-2",
                                 "--out", tmp_path), "--filters '5-2': a range goes from low to high, such as 2-5")


def test_the_bundled_architecture_takes_a_weights_file(photos, tmp_path):
    """`--help` says --weights takes a weights file: one saved with save_weights gives the bundled model's answers."""
    bundled = xconv.load_model("catsdogs")
    bundled.keras_model.save_weights(tmp_path / "catsdogs.weights.h5")
    default = invoke("predict", photos / "photo0.png", photos / "photo1.png", "--top", "2")
    from_weights = invoke("predict", photos / "photo0.png", photos / "photo1.png", "--top", "2",
                          "--weights", tmp_path / "catsdogs.weights.h5")
    assert default.exit_code == 0 and from_weights.output == default.output, from_weights.output


def test_missing_image_is_reported(model_file, tmp_path):
    result = invoke("predict", tmp_path / "nothing.png", "--model", model_file)
    assert result.exit_code == 1 and "no such file" in result.output


def test_corrupt_model_file(tmp_path, photos):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"garbage")  # Keras itself says "File not found" for it
    assert_one_line_error(invoke("predict", photos / "photo0.png", "--model", bad),
                          "not a Keras model file (a .keras file is a zip archive")
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("notes.txt", "a zip archive, but not of a model")
    assert_one_line_error(invoke("predict", photos / "photo0.png", "--model", bad), "not a loadable Keras model")
    # A photo given as the model: Keras's own sentence was cut at 200 characters, mid-word.
    result = invoke("layers", "--model", photos / "photo0.png")
    assert_one_line_error(result, "not a Keras model file (xconv loads .keras files, and legacy .h5 ones)")
    assert "Keras 3 only supports" not in result.output


def test_layers_marks_default(model_file):
    result = invoke("layers", "--model", model_file)
    assert result.exit_code == 0
    marked = [line for line in result.output.splitlines() if line.startswith("*")]
    assert len(marked) == 1 and "conv3" in marked[0] and "8x8x16" in marked[0]
    assert "pool1" in result.output


def test_subprocess_explain_end_to_end(model_file, photos, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "xconv.cli", "explain", str(photos), "--model", str(model_file), "--out", str(tmp_path)],
        capture_output=True, text=True, env=env)
    assert result.returncode == 1  # the broken file
    assert "broken.jpg: not an image file" in result.stderr and "Traceback" not in result.stderr
    assert "1 of 3 inputs failed" in result.stderr
    assert len(list(tmp_path.glob("*.png"))) == 2
    # The exit skips Python's final collections (frozen), yet every file is complete.
    assert len((tmp_path / "manifest.jsonl").read_text().splitlines()) == 3
    assert all(Image.open(path).convert("RGB").size[0] > 0 for path in tmp_path.glob("*.png"))


@pytest.fixture(scope="module")
def user_predict(model_file, photos):
    """``xconv predict`` in a new process started as from a user's shell (no TF_CPP_MIN_LOG_LEVEL, no
    XCONV_DEBUG), with an exit handler registered before main() that reports the frozen heap; the start-up
    and the exit tests read the same run (each process costs 10-16 s of TensorFlow start-up)."""
    # atexit runs handlers last-in first-out: one registered before main() runs after main's freeze.
    code = ("import atexit, gc, sys\nfrom xconv.cli import main\n"
            "atexit.register(lambda: print('frozen at exit', gc.get_freeze_count()))\n"
            f"sys.argv = ['xconv', 'predict', {str(photos / 'photo0.png')!r}, '--model', {str(model_file)!r}]\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "print('frozen before exit', gc.get_freeze_count())\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=user_environment())


def user_environment() -> dict:
    return {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", "XCONV_DEBUG")}


def test_commands_freeze_the_heap_at_exit_after_the_other_exit_handlers(user_predict):
    assert user_predict.returncode == 0, user_predict.stderr
    counts = dict(line.rsplit(" ", 1) for line in user_predict.stdout.splitlines() if line.startswith("frozen"))
    assert counts["frozen before exit"] == "0" and int(counts["frozen at exit"]) > 100000, user_predict.stdout


def test_offline_imagenet_weights_name_the_fix(tmp_path, photos, monkeypatch):
    """No cached ImageNet weights and no network: one line naming --weights (skipped if a download works)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    result = invoke("predict", photos / "photo0.png", "--model", "inceptionv3")
    if result.exit_code == 0:
        pytest.skip("this machine can download the ImageNet weights")
    assert_one_line_error(result, "--weights PATH", "keras-home")


def test_long_batches_never_overwrite_outputs_across_chunks(model_file, tmp_path):
    # 16 photos fill the first chunk; b/0.png and b/1.png share names and in-chunk positions with a/0, a/1.
    for folder, count in [("a", 16), ("b", 2)]:
        (tmp_path / folder).mkdir()
        for index, image in enumerate(random_images(count, (32, 32), seed=count)):
            Image.fromarray(image).save(tmp_path / folder / f"{index}.png")
    out = tmp_path / "out"
    result = invoke("explain", tmp_path / "a", tmp_path / "b", "--model", model_file, "--out", out)
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("*.png"))) == 18


def test_folders_are_searched_recursively_in_sorted_order(model_file, tmp_path):
    for split, name in [("validation/dogs", "b.png"), ("validation/cats", "a.png"), ("train/cats", "c.png"),
                        (".hidden", "d.png")]:
        (tmp_path / "data" / split).mkdir(parents=True)
        Image.fromarray(random_images(1, (32, 32))[0]).save(tmp_path / "data" / split / name)
    result = invoke("predict", tmp_path / "data", "--model", model_file, "--json")
    assert result.exit_code == 0, result.output
    found = [Path(json.loads(line)["path"]).relative_to(tmp_path / "data").as_posix()
             for line in result.output.splitlines()]
    assert found == ["train/cats/c.png", "validation/cats/a.png", "validation/dogs/b.png"]
    (tmp_path / "data" / "train" / "cats" / "b_broken.png").write_bytes(b"not a photo")
    result = invoke("predict", tmp_path / "data", "--model", model_file, "--json")
    found = [Path(json.loads(line)["path"]).relative_to(tmp_path / "data").as_posix()
             for line in result.output.splitlines() if line.startswith("{")]  # a failure where its input is
    assert result.exit_code == 1 and found[:2] == ["train/cats/b_broken.png", "train/cats/c.png"], result.output
    result = invoke("explain", tmp_path / "data" / "validation", "--model", model_file, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert len(written) == 2 and written[0].startswith("000_a_gradcam_") and written[1].startswith("001_b_gradcam_")


def test_start_up_is_quiet_and_debug_is_not(model_file, photos, user_predict, tmp_path):
    """No TensorFlow/absl start-up lines on stderr in normal use; --debug lets TensorFlow speak."""
    env = user_environment()
    assert user_predict.returncode == 0 and user_predict.stderr == "", user_predict.stderr
    prediction = [line for line in user_predict.stdout.splitlines() if not line.startswith("frozen")]
    command = [sys.executable, "-m", "xconv.cli", "predict", str(photos / "photo0.png"), "--model", str(model_file)]
    loud = subprocess.run([command[0], "-m", "xconv.cli", "--debug", *command[3:]], capture_output=True, text=True,
                          env=env)
    assert loud.returncode == 0 and loud.stdout.splitlines() == prediction and len(prediction) == 1
    assert "oneDNN" in loud.stderr or "absl" in loud.stderr or "cuda" in loud.stderr.lower()
    # A mistake that train finds after importing Keras: its one line, without TensorFlow's start-up lines.
    for name in ("a", "b"):  # a layout that passes the checks made before TensorFlow starts
        (tmp_path / "train" / name).mkdir(parents=True)
    mistake = subprocess.run([command[0], "-m", "xconv.cli", "train", "--data", str(tmp_path), "--keep", "nosuch"],
                             capture_output=True, text=True, env=env)
    assert mistake.returncode == 1 and mistake.stderr == "xconv: error: --keep must be best or last, got 'nosuch'\n", \
        mistake.stderr


def test_drawing_flags_go_to_the_renderer_not_to_a_method_option_of_the_same_name(photos, tmp_path):
    """--grid once reached rise's grid option too (an int: 'true' refused); rise's is now called cells."""
    result = invoke("explain", photos / "photo0.png", "--method", "rise", "-O", "masks=8", "-O", "cells=3", "--grid",
                    "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "no grid drawn" in result.output  # a pixel-level map has no layer cells to outline
    assert len(list(tmp_path.glob("*_rise_*.png"))) == 1


def test_a_renderer_that_cannot_draw_the_method_is_refused_before_the_model_loads(photos, tmp_path):
    """It was refused only when the first chunk's pictures were drawn, after the model had loaded and
    computed them; the missing model file shows the check now comes first."""
    assert_one_line_error(invoke("explain", photos, "--renderer", "grid", "--model", tmp_path / "absent.keras",
                                 "--out", tmp_path / "out"),
                          "renderer 'grid' cannot draw heatmap explanations; use one of: overlay")
    assert_one_line_error(invoke("explain", photos, "--method", "gradcam,layercam", "--renderer", "grid",
                                 "--model", tmp_path / "absent.keras", "--out", tmp_path / "out"),
                          "renderer 'grid' cannot draw comparison explanations; use one of: compare")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no folder can be made")
def test_an_output_folder_the_system_cannot_create_is_one_line_not_an_internal_error(photos):
    """As root the folder looks writable, and mkdir then failed as 'internal error: FileNotFoundError'."""
    result = invoke("explain", photos / "photo0.png", "--out", "/proc/xconv-out")
    assert_one_line_error(result, "/proc/xconv-out")
    assert result.exit_code == 1 and "internal error" not in result.output
    from xconv.cli_errors import is_users_file_error

    package = Path(xconv.__file__).parent  # beside it, a user's xconv-out folder is still the user's
    assert is_users_file_error(FileNotFoundError(2, "gone", str(package.parent / f"{package.name}-out" / "a.png")))
    assert not is_users_file_error(FileNotFoundError(2, "gone", str(package / "missing.html")))


def test_a_model_file_with_code_loads_only_with_unsafe(photos, tmp_path):
    """A Lambda layer's Python runs at load: refused with safe_mode unless the user says they trust it."""
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(2, 3, name="conv")(x)))
    path = tmp_path / "code.keras"
    keras.Model(inputs, outputs).save(path)
    assert_one_line_error(invoke("predict", photos / "photo0.png", "--model", path), "contains code", "--unsafe")
    trusted = invoke("predict", photos / "photo0.png", "--model", path, "--unsafe")
    assert trusted.exit_code == 0, trusted.output


def test_keras_is_new_enough_for_safe_mode_to_hold():
    """Before Keras 3.11.3 a crafted .keras or .h5 file could switch safe_mode off (CVE-2025-9905/9906)."""
    from importlib.metadata import requires, version

    [requirement] = [line for line in requires("xconv") if line.startswith("keras")]
    def release(text):
        return tuple(int(re.match(r"\d+", part).group()) for part in text.split(".")[:3])

    assert release(requirement.split(">=")[1]) >= (3, 11, 3) and release(version("keras")) >= (3, 11, 3)


@pytest.fixture(scope="module")
def bare_model_file(tmp_path_factory):
    """A classifier that does not rescale its own input (like a keras.applications model saved bare)."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    path = tmp_path_factory.mktemp("bare") / "bare.keras"
    keras.Model(inputs, outputs).save(path)
    return path


def test_a_file_without_preprocessing_says_what_is_assumed(bare_model_file, photos):
    result = invoke("predict", photos / "photo0.png", "--model", bare_model_file)
    assert result.exit_code == 0, result.output
    [warning] = [line for line in result.output.splitlines() if line.startswith("xconv: warning")]
    assert "assuming it takes pixels 0-255 (--preprocess none)" in warning and "tf|torch|caffe" in warning
    stated = invoke("predict", photos / "photo0.png", "--model", bare_model_file, "--preprocess", "tf")
    assert stated.exit_code == 0 and "warning" not in stated.output
    assert one_line_error_of(invoke("predict", photos / "photo0.png", "--model", bare_model_file,
                                    "--preprocess", "inception"), "unknown preprocessing mode 'inception'")


def one_line_error_of(result, needle) -> bool:
    assert_one_line_error(result, needle)
    return True


@pytest.mark.parametrize("mode,expected", [
    ("none", lambda x: x), ("unit", lambda x: x / 255), ("tf", lambda x: x / 127.5 - 1),
    ("torch", lambda x: (x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]),
    ("caffe", lambda x: x[..., ::-1] - [103.939, 116.779, 123.68]),
])
def test_preprocessing_modes_match_keras_applications(bare_model_file, mode, expected):
    import xconv

    batch = random_images(2, (32, 32), seed=7)
    model = xconv.load_model(bare_model_file, preprocess=mode)
    np.testing.assert_allclose(model.preprocess(batch), expected(batch.astype(np.float64)), rtol=1e-5, atol=1e-4)
    if mode == "tf":
        from keras.applications.inception_v3 import preprocess_input

        np.testing.assert_allclose(model.preprocess(batch), preprocess_input(batch.astype(np.float32)), atol=1e-5)
    if mode == "caffe":
        from keras.applications.resnet50 import preprocess_input

        np.testing.assert_allclose(model.preprocess(batch), preprocess_input(batch.astype(np.float32)), atol=1e-4)


def test_recorded_preprocessing_is_used_without_a_warning(bare_model_file, tmp_path, recwarn):
    import shutil

    import xconv

    stated = tmp_path / "stated.keras"
    shutil.copy(bare_model_file, stated)
    write_metadata(stated, {"preprocess": "torch"})
    assert xconv.load_model(stated).preprocess_mode == "torch"
    assert not [w for w in recwarn if issubclass(w.category, xconv.XconvWarning)]


def test_metadata_is_replaced_and_the_weights_stay_stored_as_keras_wrote_them(bare_model_file, tmp_path):
    """Deflating the weights again took 3x as long as Keras's own save, and slowed every load."""
    import shutil

    from xconv.modelfile import read_metadata

    path = tmp_path / "m.keras"
    shutil.copy(bare_model_file, path)
    kept = {info.filename: info.compress_type for info in zipfile.ZipFile(path).infolist()}
    write_metadata(path, {"preprocess": "torch"})
    write_metadata(path, {"preprocess": "tf", "class_names": ["cat", "dog"]})
    assert read_metadata(path) == {"preprocess": "tf", "class_names": ["cat", "dog"]}
    members = zipfile.ZipFile(path).infolist()
    assert [info.filename for info in members].count("xconv.json") == 1
    assert {info.filename: info.compress_type for info in members if info.filename != "xconv.json"} == kept
    assert kept["model.weights.h5"] == zipfile.ZIP_STORED


@pytest.mark.parametrize("command", ["explain", "score"])
def test_an_unusable_output_folder_is_one_line_before_the_model_loads(model_file, photos, tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke(command, photos / "photo0.png", "--model", tmp_path / "not-loaded.keras", "--out", blocker / "out")
    assert result.exit_code == 1
    assert result.output.strip() == f"xconv: error: cannot use {blocker / 'out'} as the output folder: {blocker} is not a folder"


def test_demo_into_a_file_is_the_same_one_line(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    result = invoke("demo", "--out", blocker)  # was "notes.txt: File exists"
    assert result.output.strip() == f"xconv: error: cannot use {blocker} as the output folder: {blocker} is not a folder"


def test_report_folder_checked_first_and_any_file_error_is_one_line_naming_the_file(model_file, photos, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke("report", photos / "photo0.png", "--model", model_file, "--out", blocker / "report.html")
    assert result.output.strip() == f"xconv: error: cannot use {blocker} as the output folder: {blocker} is not a folder"
    import xconv.report as xconv_report

    with pytest.MonkeyPatch.context() as patch:  # an OSError that no check anticipated: still one line
        patch.setattr(xconv_report, "build_report", lambda *a, **k: open(blocker / "x.html", "w"))
        result = invoke("report", photos / "photo0.png", "--model", model_file, "--out", tmp_path / "r.html")
    assert result.exit_code == 1
    assert result.output.strip() == f"xconv: error: {blocker / 'x.html'}: Not a directory"
    with pytest.MonkeyPatch.context() as patch:  # a file of xconv's own missing is a bug, not the user's mistake
        own = Path(xconv.__file__).parent / "missing" / "template.html"
        patch.setattr(xconv_report, "build_report", lambda *a, **k: open(own))
        result = invoke("report", photos / "photo0.png", "--model", model_file, "--out", tmp_path / "r.html")
    assert result.exit_code == 2 and "internal error: FileNotFoundError" in result.output
    with pytest.MonkeyPatch.context() as patch:  # TensorFlow puts whole tensors in messages: thousands of numbers
        patch.setattr(xconv_report, "build_report", lambda *a, **k: (_ for _ in ()).throw(ValueError("1.0\n" * 5000)))
        result = invoke("report", photos / "photo0.png", "--model", model_file, "--out", tmp_path / "r.html")
    [line] = result.output.strip().splitlines()
    assert result.exit_code == 2 and line.startswith("xconv: error: internal error: ValueError: 1.0 1.0")
    assert len(line) < 700 and line.endswith("... (run with --debug for the traceback)")


def test_the_output_folder_is_not_created_by_a_run_that_fails_first(photos, model_file, tmp_path):
    result = invoke("explain", photos / "photo0.png", "--model", tmp_path / "typo.keras", "--out", tmp_path / "new")
    assert result.exit_code == 1 and not (tmp_path / "new").exists()
    # Refused only when drawing (the channel is checked against the layer): no empty folder left either.
    result = invoke("explain", photos / "photo0.png", "--method", "activations", "--layer", "pool1", "--channel",
                    "9999", "--model", model_file, "--out", tmp_path / "drawn")
    assert_one_line_error(result, "--channel 9999")
    assert not (tmp_path / "drawn").exists()


def test_model_files_of_any_size_or_not_rgb_and_weights_for_them_are_one_line(photos, tmp_path):
    import keras

    from xconv.testing import tiny_keras_convnet

    free = tmp_path / "free.keras"
    tiny_keras_convnet((None, None), classes=2).save(free)
    assert_one_line_error(invoke("predict", photos / "photo0.png", "--model", free), "-O image_size=N")
    sized = invoke("predict", photos / "photo0.png", "--model", free, "-O", "image_size=32")
    assert sized.exit_code == 0, sized.output
    assert_one_line_error(invoke("predict", photos / "photo0.png", "--model", free, "-O", "image_size=100000"),
                          "must be at most 4096")  # was a 30 GB allocation failing inside TensorFlow
    gray = tmp_path / "gray.keras"
    inputs = keras.Input((28, 28, 1))
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))).save(gray)
    assert_one_line_error(invoke("predict", photos / "photo0.png", "--model", gray), "takes (28, 28, 1)")
    assert_one_line_error(invoke("predict", photos / "photo0.png", "--model", free, "-w", "none"),
                          "--weights applies to registered models")


def test_an_unreadable_input_is_listed_and_the_others_are_processed(model_file, photos, tmp_path):
    too_long = tmp_path / ("a" * 300 + ".jpg")
    result = invoke("predict", too_long, photos / "photo0.png", "--model", model_file)
    assert result.exit_code == 1 and "photo0.png" in result.output and "File name too long" in result.output
    assert "internal error" not in result.output and "Traceback" not in result.output


def test_python_api_takes_one_path_and_refuses_empty_lists_and_bad_top(model_file, photos):
    import xconv

    model = xconv.load_model(model_file)
    assert xconv.explain(model, photos / "photo0.png").heatmaps.shape[0] == 1
    with pytest.raises(xconv.XconvError, match="no images given"):
        xconv.predict(model, [])
    with pytest.raises(xconv.XconvError, match="top is a whole number of classes, at least 1; got 0"):
        xconv.predict(model, photos / "photo0.png", top=0)


def test_filter_patterns_check_the_output_folder_before_the_work(model_file, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = invoke("explain", "--method", "filters", "--model", model_file, "--out", blocker)
    assert_one_line_error(result, "a-file is not a folder")


def test_a_reader_that_stops_early_ends_the_command_quietly(model_file, tmp_path):
    """`xconv predict DIR --json | head` printed 'internal error: BrokenPipeError' once head had its lines."""
    for index in range(160):
        Image.fromarray(np.full((8, 8, 3), index, np.uint8)).save(tmp_path / f"p{index:03d}.png")
    process = subprocess.Popen([sys.executable, "-m", "xconv.cli", "predict", str(tmp_path), "--model",
                                str(model_file), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert json.loads(process.stdout.readline())["path"].endswith("p000.png")
    process.stdout.close()  # as head does after its lines
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141 and "error" not in stderr, stderr


def test_a_pattern_that_never_activates_its_filter_is_not_counted_as_weak(capsys):
    """'median 0.98, 1 of 2 patterns below 0.5' where the second pattern had no robustness at all."""
    from xconv.cli_output import describe_synthesized

    explanation = xconv.Explanation("filters", "patterns", "m", arrays={"robustness": np.array([0.98, np.nan])},
                                    layer="conv1")
    describe_synthesized(explanation, [], False)
    assert "median 0.98, 0 of 2 patterns below 0.5, 1 that do not activate their filter" in capsys.readouterr().out
