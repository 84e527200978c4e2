"""Training on a tiny generated dataset: checkpoint, history, curves, resume, skipped files, transfer model."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import xconv
from xconv.cli import build_app
from xconv.modelfile import read_metadata
from xconv.image_folders import ImageFolder, split_validation
from xconv.training import TrainConfig, augmentation, recalibrate_batch_norms

runner = CliRunner()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Reddish 'cats' and bluish 'dogs', 32x40 photos, plus one corrupt file in the training folders."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, count in [("train", 10), ("validation", 4)]:
        for name, color in [("cats", (200, 60, 60)), ("dogs", (60, 60, 200))]:
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = np.clip(rng.normal(color, 40, (32, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}{index}.jpg")
    (root / "train" / "cats" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


def history_rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def trained_past_corrupt(result) -> bool:
    """A finished run on ``dataset``: its one corrupt photo is listed and makes the exit code 1."""
    return (result.exit_code == 1 and "skipped" in result.output and "corrupt.jpg" in result.output
            and "xconv: 1 files could not be read" in result.output and "Traceback" not in result.output)


def train(*args):
    return runner.invoke(build_app(), ["train", *map(str, args)])


QUICK_MODEL = """
    import xconv

    class Quick(xconv.Model):
        name = "quick"
        description = "a small trainable convnet for the tests of training's bookkeeping"
        trainable = True
        default_image_size = (48, 48)

        @classmethod
        def build_for_training(cls, class_names, image_size=(48, 48), weights=None):
            import keras
            from keras import layers

            inputs = keras.Input((*image_size, 3), name="image")
            x = layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(inputs)
            x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv1")(x)
            x = layers.BatchNormalization(name="bn1")(x)
            x = layers.Activation("relu", name="relu1")(x)
            x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
            x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
            x = layers.Dropout(0.2, name="dropout")(x)
            outputs = layers.Dense(len(class_names), activation="softmax", name="predictions")(x)
            return keras.Model(inputs, outputs, name="quick")

    @xconv.hookimpl
    def xconv_register_models(register):
        register(Quick)
"""


@pytest.fixture(scope="module", autouse=True)
def quick_model(tmp_path_factory):
    """``--model quick``: a small trainable net, installed as a third-party plugin would be, for the tests of
    what training writes, resumes, resizes and stops (checkpoints, history, strips, progressive phases,
    Ctrl-C), which hold for any net. Tracing the catsdogs net's training step made each of those runs about
    4x longer (18 s against 5 s on 2 cores); catsdogs itself trains in the docs' examples (README.md and
    docs/training.md: the recipe, progressive resizing included, and the explained run)."""
    from conftest import write_plugin_dist
    from xconv.registry import reset_registry

    site = tmp_path_factory.mktemp("site")
    write_plugin_dist(site, "xconv-quick", "fakeplug_quick", QUICK_MODEL)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        reset_registry()
        yield "quick"
    reset_registry()
    sys.modules.pop("fakeplug_quick", None)


def train_quick(*args):
    return train("--model", "quick", *args)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """One 2-epoch run shared by every test that reads or continues a trained model (training is most of
    their time); a test that continues it works on a copy (``copy_run``)."""
    out = tmp_path_factory.mktemp("trained") / "tiny.keras"
    result = train_quick("--data", dataset, "--epochs", "2", "--image-size", "32", "--batch-size", "8", "--out", out)
    assert trained_past_corrupt(result), result.output
    return out, result.output


def copy_run(out: Path, folder: Path) -> Path:
    """The checkpoint, history and curves of a run, copied into ``folder``; returns the copy's checkpoint."""
    import shutil

    for path in out.parent.glob(out.stem + ".*"):
        shutil.copy2(path, folder / path.name)
    return folder / out.name


def test_train_writes_checkpoint_history_curves_and_skips_corrupt(dataset, trained, tmp_path):
    out, output = trained
    assert "skipped" in output and "corrupt.jpg" in output
    assert out.is_file() and (out.parent / "tiny.curves.png").is_file()
    rows = history_rows(out.parent / "tiny.history.csv")
    assert len(rows) == 2 and {"accuracy", "val_accuracy", "loss", "val_loss"} <= set(rows[0])
    assert read_metadata(out)["class_names"] == ["cats", "dogs"]
    model = xconv.load_model(out)
    assert model.class_names == ["cats", "dogs"] and model.input_size == (32, 32)

    out = copy_run(out, tmp_path)
    # No --image-size: a resumed run takes its checkpoint's (32), not the model's default (48).
    resumed = train_quick("--data", dataset, "--epochs", "3", "--batch-size", "8", "--out", out, "--resume")
    assert trained_past_corrupt(resumed), resumed.output
    assert "resuming" in resumed.output and "size 32x32" in resumed.output
    assert len(history_rows(tmp_path / "tiny.history.csv")) == 3
    again = train_quick("--data", dataset, "--epochs", "3", "--batch-size", "8", "--out", out, "--resume", "--keep", "last")
    assert "after 3 epochs (none run now: the checkpoint holds them; raise --epochs above 3" in again.output
    assert "nan" not in again.output, again.output  # was "(nan s/epoch, nan images/s)"


def test_resume_refuses_other_classes_or_another_size_before_touching_the_run(dataset, trained, tmp_path):
    """Other class names would relabel the checkpoint's outputs (cats called dogs); another size failed inside
    Keras after the history had been cut."""
    import shutil

    out = copy_run(trained[0], tmp_path)
    history = (tmp_path / "tiny.history.csv").read_text()
    other = tmp_path / "other"
    shutil.copytree(dataset, other)
    for split in ("train", "validation"):
        (other / split / "cats").rename(other / split / "zebras")
    relabelled = train_quick("--data", other, "--epochs", "5", "--batch-size", "8", "--out", out, "--resume")
    assert relabelled.exit_code == 1 and "Traceback" not in relabelled.output
    assert "trained on classes ['cats', 'dogs']" in relabelled.output and "['dogs', 'zebras']" in relabelled.output
    resized = train_quick("--data", dataset, "--epochs", "5", "--image-size", "48", "--out", out, "--resume")
    assert resized.exit_code == 1 and "pass --image-size 32" in resized.output
    # --model and --weights cannot change a resumed network (they were ignored without a word).
    renamed = train("--data", dataset, "--epochs", "5", "--out", out, "--resume", "--model", "catsdogs")
    assert renamed.exit_code == 1 and "was trained as quick, not catsdogs; drop --model" in renamed.output
    reweighted = train_quick("--data", dataset, "--epochs", "5", "--out", out, "--resume", "--weights", "none")
    assert reweighted.exit_code == 1 and "--resume continues the checkpoint's own" in reweighted.output
    assert read_metadata(out)["class_names"] == ["cats", "dogs"]
    assert (tmp_path / "tiny.history.csv").read_text() == history


def test_a_class_without_readable_training_photos_is_refused_and_validation_gaps_are_said(dataset, tmp_path):
    """A two-class model trained on cats alone ran without a word; so did a validation folder of a class the
    training data lacks."""
    import shutil

    from xconv.training import check_splits

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    for photo in (data / "train" / "dogs").iterdir():
        photo.write_bytes(b"not a photo")
    result = train_quick("--data", data, "--epochs", "1", "--image-size", "32", "--out", tmp_path / "m.keras")
    assert result.exit_code == 1 and "no readable images for classes ['dogs']" in result.output
    assert not (tmp_path / "m.keras").exists()
    merged = train_quick("--data", data, "--epochs", "1", "--image-size", "32", "--batch-size", "8",
                         "--merge-validation", "0.5", "--out", tmp_path / "m.keras")  # validation's dogs fill the class
    assert merged.exit_code == 1 and "moved 50% of the validation photos" in merged.output, merged.output
    assert "xconv: 11 files could not be read" in merged.output and (tmp_path / "m.keras").is_file()

    def folder(labels):
        return ImageFolder(np.zeros((len(labels), 4, 4, 3), np.uint8), np.array(labels), ["cats", "dogs"], [], [])

    (data / "validation" / "horses").mkdir()
    said = []
    check_splits(data, folder([0, 1]), folder([0, 0]), said.append)
    assert len(said) == 2 and "class 'dogs'" in said[0] and "horses is not a training class" in said[1]


def test_resume_continues_from_the_kept_epoch_and_never_replaces_a_better_checkpoint(dataset, trained, tmp_path,
                                                                                     monkeypatch):
    """keep=best: the file holds the best epoch, so a resumed run starts from that epoch (the history's best
    row) and may replace the file only with a better epoch than any already logged; the model it leaves in
    memory (for fine-tuning) is that file's, not the best of the resumed epochs."""
    import keras

    import xconv.training

    left, real_fit = [], xconv.training.fit
    monkeypatch.setattr(xconv.training, "fit", lambda model, *a, **k: (real_fit(model, *a, **k),
                                                                        left.append(model.get_weights()))[0])
    out = copy_run(trained[0], tmp_path)
    kept_epoch = 1
    history = tmp_path / "tiny.history.csv"
    rows = history_rows(history)
    rows[0]["val_accuracy"] = "2.0"  # the first epoch made the best, one no later one can beat
    with history.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = keras.saving.load_model(out, compile=False).get_weights()
    resumed = train_quick("--data", dataset, "--image-size", "32", "--batch-size", "8", "--out", out, "--epochs", "3",
                    "--resume")
    assert trained_past_corrupt(resumed), resumed.output
    assert f"after {kept_epoch} epochs" in resumed.output
    after = keras.saving.load_model(out, compile=False).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))  # no epoch beat the best logged one
    assert all(np.array_equal(a, b) for a, b in zip(after, left[0]))
    assert [r["epoch"] for r in history_rows(history)] == ["0", "1", "2"]  # epoch 1's row gone, then 1 and 2 again


def test_resume_without_a_history_measures_the_checkpoint_before_it_may_replace_it(dataset, trained, tmp_path):
    """With the history gone, no bar was set: the first resumed epoch replaced a better checkpoint."""
    import re

    out = copy_run(trained[0], tmp_path)
    (tmp_path / "tiny.history.csv").unlink()
    before = out.read_bytes()
    resumed = train_quick("--data", dataset, "--batch-size", "8", "--out", out, "--epochs", "2", "--resume")
    assert trained_past_corrupt(resumed), resumed.output
    measured = float(re.search(r"no history beside tiny.keras: its val_accuracy, measured now, is ([\d.]+)",
                               resumed.output)[1])
    assert measured * 8 == round(measured * 8)  # a share of the 8 validation photos
    rows = history_rows(tmp_path / "tiny.history.csv")
    beaten = any(float(row["val_accuracy"]) > measured for row in rows)
    assert (out.read_bytes() != before) == beaten, (measured, rows)
    best = max([measured] + [float(row["val_accuracy"]) for row in rows])
    assert f"best val_accuracy {best:.4f}" in resumed.output  # the kept checkpoint's, not the run's best epoch


def test_a_continuing_optimizer_schedules_only_the_epochs_it_runs():
    """Fine-tuning compiles a new optimizer after the first run: its cosine must end with its own epochs."""
    from xconv.testing import tiny_keras_convnet
    from xconv.training import compile_for_training

    model = tiny_keras_convnet((32, 32), classes=2)
    compile_for_training(model, TrainConfig(epochs=90, warmup_epochs=0), steps_per_epoch=10, epochs=30)
    schedule = model.optimizer.learning_rate if callable(model.optimizer.learning_rate) else None
    schedule = schedule or model.optimizer._learning_rate
    assert schedule.decay_steps == 300


def test_resume_without_checkpoint_is_an_error(dataset, tmp_path):
    result = train("--data", dataset, "--out", tmp_path / "none.keras", "--resume")
    assert result.exit_code != 0 and "no checkpoint" in result.output


def test_resume_refuses_another_networks_file_before_training(dataset, tmp_path):
    """A .keras file of another network at --out (no metadata to compare) failed in the first training
    step as 'internal error: ValueError: ... Invalid input shape'."""
    import keras

    other = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3, activation="softmax")])
    other.compile(optimizer="adam", loss="categorical_crossentropy")
    other.save(tmp_path / "other.keras")
    result = train_quick("--data", dataset, "--out", tmp_path / "other.keras", "--resume", "--image-size", "32")
    assert result.exit_code == 1 and "internal error" not in result.output, result.output
    assert "is not a checkpoint of this training: it takes inputs of shape (8,) and gives 3 outputs" in result.output


def test_missing_data_folder_is_an_error(tmp_path):
    result = train("--data", tmp_path / "nope", "--out", tmp_path / "m.keras")
    assert result.exit_code != 0 and "no such folder" in result.output and "Traceback" not in result.output


def test_augmentation_is_random_in_training_and_identity_at_inference():
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    augment = augmentation(seed=3)
    np.testing.assert_array_equal(np.asarray(augment(images, training=False)), images)
    assert not np.allclose(np.asarray(augment(images, training=True)), images)


def test_trained_model_is_deterministic_at_inference(trained):
    model = xconv.load_model(trained[0])
    batch = np.random.default_rng(2).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(model.predict(batch), model.predict(batch))


def test_transfer_model_base_is_frozen_and_explainable_by_path(dataset, tmp_path):
    out = tmp_path / "transfer.keras"
    result = train("--data", dataset, "--model", "inceptionv3-transfer", "--weights", "none", "--epochs", "1",
                   "--image-size", "75", "--out", out)
    assert trained_past_corrupt(result), result.output
    model = xconv.load_model(out)
    trainable = sum(int(np.prod(w.shape)) for w in model.keras_model.trainable_weights)
    assert trainable == 2048 * 2 + 2  # only the new dense head was trained, and the file keeps the base frozen
    assert model.default_layer == "inception_v3/mixed10"
    photos = sorted((dataset / "validation" / "cats").glob("*.jpg"))[:2]
    explained = xconv.explain(model, photos, target="cats")
    assert explained.layer == "inception_v3/mixed10" and explained.heatmaps.shape == (2, 1, 1)


def test_evaluate_reports_metrics_and_confusion_png(dataset, trained, tmp_path):
    out = trained[0]
    result = runner.invoke(build_app(), ["evaluate", "--data", str(dataset), "--model", str(out), "--json",
                                         "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    matrix = np.array(report["confusion_matrix"])
    assert matrix.sum() == 8 == report["images"]  # the validation split: 4 + 4
    assert report["accuracy"] == pytest.approx(np.trace(matrix) / 8)
    assert set(report["per_class"]) == {"cats", "dogs"}
    assert Path(report["confusion_png"]).is_file()
    assert len(report["most_confident_errors"]) == 8 - np.trace(matrix)
    low, high = report["accuracy_ci95"]
    assert 0 <= low <= report["accuracy"] <= high <= 1 and high - low > 0.3  # 8 photos: a wide interval
    text = runner.invoke(build_app(), ["evaluate", "--data", str(dataset), "--model", str(out),
                                       "--out", str(tmp_path / "report")])
    assert text.exit_code == 0 and "is the validation split" in text.output  # it chose the checkpoint there
    corrupt = runner.invoke(build_app(), ["evaluate", "--data", str(dataset / "train"), "--model", str(out),
                                          "--out", str(tmp_path / "report")])
    assert corrupt.exit_code == 1 and "skipped" in corrupt.output and "corrupt.jpg" in corrupt.output
    assert "the other 20 were evaluated" in corrupt.output and "validation split" not in corrupt.output


def color_classifier():
    """Reddish 'cats', bluish 'dogs', decisively (logits about 10 apart): no answer near 0.5 that rounding
    in a batch of another size could flip."""
    import keras

    from xconv.testing import TinyModel

    inputs = keras.Input((32, 32, 3))
    red_minus_blue = keras.layers.Conv2D(2, 1, use_bias=False)
    outputs = keras.layers.Softmax()(keras.layers.GlobalAveragePooling2D()(red_minus_blue(
        keras.layers.Rescaling(1 / 255)(inputs))))
    red_minus_blue.set_weights([np.array([[[[20.0, -20.0], [0.0, 0.0], [-20.0, 20.0]]]], np.float32)])
    return TinyModel(keras.Model(inputs, outputs), ["cats", "dogs"])


def test_evaluate_streams_in_chunks_and_ignores_hidden_folders(dataset, tmp_path, monkeypatch):
    """Photos are no longer decoded into one array (a large test set ran out of memory); a notebook's
    .ipynb_checkpoints folder beside the class folders is not a class ("unknown class" before)."""
    import shutil

    import xconv.evaluation as evaluation

    folder = tmp_path / "test"
    shutil.copytree(dataset / "train", folder)  # 10 + 10 photos and one corrupt file
    (folder / ".ipynb_checkpoints").mkdir()
    monkeypatch.setattr(evaluation, "CHUNK", 3)  # 7 chunks, the corrupt file in the first
    result = evaluation.evaluate(color_classifier(), folder)
    assert result.images == 20 and len(result.skipped) == 1 and "corrupt.jpg" in result.skipped[0]
    np.testing.assert_array_equal(result.confusion, [[10, 0], [0, 10]])  # labels stay with their photos


def test_a_class_without_photos_has_no_recall_and_is_named(dataset, tmp_path):
    """An empty cats/ folder printed 'recall 0.0000 (0 images)' beside an accuracy of 1.0: a failure that
    was never measured. Its precision and recall are now undefined, and a warning names the class."""
    import shutil

    import xconv.evaluation as evaluation

    folder = tmp_path / "test"
    shutil.copytree(dataset / "train" / "dogs", folder / "dogs")
    (folder / "cats").mkdir()
    result = evaluation.evaluate(color_classifier(), folder)
    rows = result.per_class()
    assert rows["cats"]["support"] == 0 and rows["cats"]["recall"] is None and rows["dogs"]["recall"] == 1.0
    assert "no readable photo of 'cats'" in evaluation.missing_classes_note(result)
    assert evaluation.share_text(None).strip() == "-" and json.dumps(result.as_dict())  # valid JSON: no NaN


def test_accuracy_interval_is_wilsons():
    from xconv.evaluation import Evaluation

    evaluation = Evaluation(["a", "b"], np.array([[454, 46], [47, 453]]), [], [], 1000)
    assert evaluation.accuracy_interval() == pytest.approx((0.8874, 0.9235), abs=1e-4)  # 907 of 1,000
    perfect = Evaluation(["a", "b"], np.array([[10, 0], [0, 10]]), [], [], 20)
    assert perfect.accuracy_interval()[1] == pytest.approx(1.0) and perfect.accuracy_interval()[0] < 0.9


def test_recalibrated_norms_hold_the_average_statistics_of_the_given_images():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    features = layers.Conv2D(4, 3)(inputs)
    norm = layers.BatchNormalization(momentum=0.99)
    frozen = layers.BatchNormalization()
    model = keras.Model(inputs, frozen(layers.Conv2D(2, 1)(norm(features))))
    frozen.trainable = False
    frozen_statistics = [np.array(frozen.moving_mean), np.array(frozen.moving_variance)]
    images = np.random.default_rng(1).normal(3, 2, (40, 8, 8, 3)).astype(np.float32)

    assert recalibrate_batch_norms(model, images, batch_size=16) == 1  # batches of 16, 16 and 8 images
    maps = np.asarray(keras.Model(inputs, features)(images)).reshape(40, 6 * 6, 4)
    batches = [maps[0:16], maps[16:32], maps[32:40]]
    weights = np.array([16, 16, 8]) / 40
    np.testing.assert_allclose(norm.moving_mean, maps.mean(axis=(0, 1)), rtol=1e-4, atol=1e-5)
    expected_variance = sum(w * b.reshape(-1, 4).var(axis=0) for w, b in zip(weights, batches))
    np.testing.assert_allclose(norm.moving_variance, expected_variance, rtol=1e-3)
    assert norm.momentum == 0.99  # restored
    np.testing.assert_array_equal(frozen.moving_mean, frozen_statistics[0])  # a frozen norm keeps its own
    np.testing.assert_array_equal(frozen.moving_variance, frozen_statistics[1])


def test_export_rebuilds_at_another_size_recalibrates_and_stamps_metadata(tmp_path):
    from xconv.modelfile import export_for_inference, load_model_file
    from xconv_plugins.catsdogs import build_catsdogs

    checkpoint, bundle = tmp_path / "checkpoint.keras", tmp_path / "bundle.keras"
    trained = build_catsdogs(2, (32, 32))
    trained.save(checkpoint)
    photos = np.random.default_rng(0).uniform(0, 255, (8, 48, 48, 3)).astype(np.float32)
    export_for_inference(checkpoint, bundle, {"class_names": ["cat", "dog"], "name": "small"},
                         rebuild=lambda: build_catsdogs(2, (48, 48)),
                         finish=lambda keras_model: recalibrate_batch_norms(keras_model, photos))
    model = load_model_file(bundle)
    assert model.input_size == (48, 48) and model.class_names == ["cat", "dog"] and model.display_name == "small"
    stem = model.keras_model.get_layer("stem_bn")
    assert not np.allclose(stem.moving_mean, 0)  # fresh statistics are 0; recalibrated ones are the photos'
    np.testing.assert_array_equal(model.keras_model.get_layer("stem_conv").get_weights()[0],
                                  trained.get_layer("stem_conv").get_weights()[0])


def test_explain_every_writes_strips_a_gif_and_tensorboard_images(dataset, tmp_path):
    import tensorflow as tf

    out = tmp_path / "watched.keras"
    photos = [dataset / "validation" / "cats" / "cats0.jpg", dataset / "validation" / "dogs" / "dogs1.jpg"]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a photo")
    result = train_quick("--data", dataset, "--epochs", "3", "--image-size", "32", "--batch-size", "8", "--out", out,
                   "--explain-every", "1", "--explain-images", photos[0], "--explain-images", photos[1],
                   "--explain-images", broken, "--tensorboard", tmp_path / "tb")
    assert trained_past_corrupt(result), result.output
    assert f"xconv: warning: explaining while training without {broken}: not an image file" in result.output
    folder = tmp_path / "watched.explanations"
    strips = sorted(folder.glob("epoch_*.png"))
    assert [p.name for p in strips] == ["epoch_001.png", "epoch_002.png", "epoch_003.png"]
    first, last = (np.asarray(Image.open(p)) for p in (strips[0], strips[-1]))
    assert first.shape == last.shape and first.shape[1] >= 2 * 160  # both photos side by side
    assert not np.array_equal(first, last)  # the weights moved, so the heatmaps and captions did
    with Image.open(folder / "attention.gif") as gif:
        assert gif.n_frames == 3
    tags = {}
    for event_file in (tmp_path / "tb").rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    assert tags["gradcam heatmaps"] == [1, 2, 3] and tags["val_accuracy"] == [1, 2, 3]
    assert "confusion matrix (validation)" in tags


def test_explain_callback_keeps_each_readable_photos_own_target(dataset, tmp_path):
    """An unreadable photo is left out; the targets given per photo must follow, or 3 targets met 2 photos."""
    from xconv.callbacks import ExplainCallback

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    photos = [dataset / "validation" / "cats" / "cats0.jpg", broken, dataset / "validation" / "dogs" / "dogs1.jpg"]
    with pytest.warns(xconv.XconvWarning, match="broken.jpg"):
        callback = ExplainCallback(photos, tmp_path / "out", ["cats", "dogs"], target=["cats", "dogs", "dogs"])
    assert callback.sources == ["cats0.jpg", "dogs1.jpg"] and callback.target == ["cats", "dogs"]


@pytest.mark.parametrize("method, message", [("nosuch", "unknown explainer 'nosuch'"),
                                             ("filters", "needs a heatmap method")])
def test_a_wrong_explain_method_is_refused_before_the_first_epoch(dataset, tmp_path, method, message):
    out = tmp_path / "watched.keras"
    result = train_quick("--data", dataset, "--epochs", "1", "--image-size", "32", "--out", out, "--explain-every", "1",
                   "--explain-images", dataset / "validation" / "cats" / "cats0.jpg", "--explain-method", method)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not out.exists() and not out.with_suffix(".history.csv").exists()  # no epoch ran


def test_an_interrupted_one_phase_run_still_writes_the_gif_of_its_finished_epochs(dataset, tmp_path, monkeypatch):
    """Ctrl-C inside fit skips on_train_end: the run's end-of-run work (GIF, confusion matrix) must still happen."""
    from xconv.callbacks import ExplainCallback

    explain_strip = ExplainCallback.explain_strip

    def interrupted_at_epoch_three(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return explain_strip(self, epoch)

    monkeypatch.setattr(ExplainCallback, "explain_strip", interrupted_at_epoch_three)
    out = tmp_path / "stopped.keras"
    photo = dataset / "validation" / "cats" / "cats0.jpg"
    stopped = train_quick("--data", dataset, "--epochs", "5", "--image-size", "32", "--batch-size", "8", "--out", out,
                    "--explain-every", "1", "--explain-images", photo)
    folder = tmp_path / "stopped.explanations"
    assert [p.name for p in sorted(folder.glob("epoch_*.png"))] == ["epoch_001.png", "epoch_002.png"]
    assert stopped.exit_code == 130 and "interrupted: the best checkpoint so far is kept" in stopped.output
    with Image.open(folder / "attention.gif") as gif:
        assert gif.n_frames == 2


def test_a_run_stopped_in_its_first_epoch_claims_no_files_and_exits_130(dataset, trained, tmp_path, monkeypatch):
    """It printed 'best val_accuracy nan' and 'wrote' three files that did not exist, then exited 0; over an
    earlier run's files it named them as its own, and stamped its classes into that run's checkpoint."""
    import shutil

    from xconv.training_log import EpochTimer

    def stopped(self, epoch, logs=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(EpochTimer, "on_epoch_begin", stopped)
    fresh, earlier = tmp_path / "fresh", tmp_path / "earlier"
    fresh.mkdir(), earlier.mkdir()
    result = train_quick("--data", dataset, "--epochs", "2", "--image-size", "32", "--out", fresh / "early.keras")
    assert result.exit_code == 130 and "no checkpoint was written" in result.output, result.output
    assert "wrote" not in result.output and "nan" not in result.output
    assert list(fresh.iterdir()) == []

    out = copy_run(trained[0], earlier)
    checkpoint = out.read_bytes()
    other = tmp_path / "other"
    shutil.copytree(dataset, other)
    for split in ("train", "validation"):
        (other / split / "cats").rename(other / split / "zebras")
    result = train_quick("--data", other, "--epochs", "2", "--image-size", "32", "--out", out)
    assert result.exit_code == 1 and "exists: --resume continues it" in result.output, result.output
    assert out.read_bytes() == checkpoint and read_metadata(out)["class_names"] == ["cats", "dogs"]
    # Over another run's history and curves only (its checkpoint gone), a stopped run claims none of them.
    out.unlink()
    result = train_quick("--data", other, "--epochs", "2", "--image-size", "32", "--out", out)
    assert result.exit_code == 130 and "wrote" not in result.output, result.output


@pytest.mark.parametrize("settings, message", [
    ({"target": "horse"}, "unknown class 'horse'"),
    ({"target": ["a"]}, "targets"),  # one target for two photos
    ({"layer": "nope"}, "unknown layer 'nope'"),
    ({"layer": "predictions", "method": "gradcam"}, "spatial"),
    ({"layer": "conv2", "method": "saliency"}, "takes no layer"),
    ({"layer": ["conv2", "conv3"]}, "one layer at a time"),
])
def test_explain_callback_mistakes_are_found_before_the_first_epoch(tmp_path, settings, message):
    """They surfaced after a whole epoch of training."""
    from xconv.callbacks import ExplainCallback
    from xconv.testing import tiny_keras_convnet

    model = tiny_keras_convnet((32, 32), classes=2, seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    images = np.zeros((2, 32, 32, 3), np.uint8)
    callback = ExplainCallback(images, tmp_path / "strips", ["a", "b"], **settings)
    epochs = []
    watcher = keras_callback(on_epoch_begin=lambda epoch, logs=None: epochs.append(epoch))
    with pytest.raises(xconv.XconvError, match=message):
        model.fit(images.astype("float32"), np.array([0, 1]), epochs=1, verbose=0, callbacks=[callback, watcher])
    assert epochs == []


def test_explain_callback_takes_a_layer_as_a_list_of_one_as_explain_does(tmp_path):
    from xconv.callbacks import ExplainCallback
    from xconv.testing import tiny_keras_convnet

    model = tiny_keras_convnet((32, 32), classes=2, seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    images = np.zeros((2, 32, 32, 3), np.uint8)
    callback = ExplainCallback(images, tmp_path / "strips", ["a", "b"], layer=["conv2"])
    model.fit(images.astype("float32"), np.array([0, 1]), epochs=1, verbose=0, callbacks=[callback])
    assert [p.name for p in callback.strips] == ["epoch_001.png"]


def keras_callback(**methods):
    import keras

    return keras.callbacks.LambdaCallback(**methods)


def test_explain_callback_costs_one_compiled_call_per_epoch(dataset, tmp_path):
    """After the first epoch no new trace: the callback reuses the explainer's compiled function."""
    import keras

    from xconv.callbacks import ExplainCallback
    from xconv.testing import tiny_keras_convnet

    model = tiny_keras_convnet((32, 32), classes=2, seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    images = (np.random.default_rng(0).random((8, 32, 32, 3)) * 255).astype(np.uint8)
    callback = ExplainCallback(images[:2], tmp_path / "strips", ["a", "b"], every=2)
    model.fit(images.astype("float32"), np.array([0, 1] * 4), epochs=4, verbose=0, callbacks=[callback])
    assert [p.name for p in callback.strips] == ["epoch_002.png", "epoch_004.png"]
    step = next(value for key, value in callback.wrapped_model().__dict__["_cache"].items() if "gradcam" in str(key))
    traces = getattr(step, "experimental_get_tracing_count", lambda: None)()
    assert traces in (None, 1)
    assert isinstance(keras.callbacks.Callback, type) and len(callback.seconds) == 2


def test_explain_callback_strips_follow_the_weights_of_their_epoch():
    """The callback keeps one xconv.Model, whose Grad-CAM and predict run batch-norm-folded copies: those
    froze at the first strip and later strips mixed live weights with the first epoch's."""
    from fakeplug_quick import Quick  # a convolution and its batch norm, folded for Grad-CAM

    from xconv.callbacks import ExplainCallback

    model = Quick.build_for_training(["a", "b"], (32, 32))
    model.compile("adam", "sparse_categorical_crossentropy")
    images = (np.random.default_rng(0).random((8, 32, 32, 3)) * 255).astype(np.uint8)
    callback = ExplainCallback(images[:2], Path("unused"), ["a", "b"])
    callback.set_model(model)
    callback.explain_strip(1)  # builds and folds the copies
    model.fit(images.astype("float32"), np.array([0, 1] * 4), epochs=2, verbose=0)
    fresh = ExplainCallback(images[:2], Path("unused"), ["a", "b"])
    fresh.set_model(model)
    np.testing.assert_array_equal(callback.explain_strip(3), fresh.explain_strip(3))


def test_the_final_confusion_matrix_comes_from_the_restored_weights(tmp_path, monkeypatch):
    """Early stopping restores the best epoch with set_weights, which no optimizer step reports: the
    confusion matrix came from folded convolutions of the last epoch and dense layers of the best."""
    from fakeplug_quick import Quick

    import xconv.evaluation
    from xconv.callbacks import ExplainCallback

    model = Quick.build_for_training(["a", "b"], (32, 32))
    images = (np.random.default_rng(0).random((8, 32, 32, 3)) * 255).astype(np.uint8)
    callback = ExplainCallback(images[:2], tmp_path / "strips", ["a", "b"], validation=(images, np.array([0, 1] * 4)),
                               tensorboard_dir=tmp_path / "tb")
    callback.set_model(model)
    callback.on_train_begin()
    callback.explain_strip(1)  # builds and folds the copies
    restored = Quick.build_for_training(["a", "b"], (32, 32))  # other random weights: the best epoch's
    model.set_weights(restored.get_weights())
    seen = []
    real = xconv.evaluation.predict_batches
    monkeypatch.setattr(xconv.evaluation, "predict_batches", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    callback.finish()
    expected = xconv.Model(restored, ["a", "b"], image_size=(32, 32)).predict(images)
    np.testing.assert_allclose(seen[0], expected, atol=1e-5)


def test_two_replicas_reach_the_loss_of_one_at_the_same_global_batch(tmp_path):
    """MirroredStrategy on two logical CPU devices (set up in a fresh process, before TensorFlow starts)."""
    import subprocess
    import sys

    from conftest import REPO

    result = subprocess.run([sys.executable, str(REPO / "tests" / "scripts" / "two_replicas.py"), str(tmp_path)],
                            capture_output=True, text=True, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    assert runs["one"]["replicas"] == 1 and runs["two"]["replicas"] == 2
    assert runs["one"]["global_batch"] == runs["two"]["global_batch"] == 16
    assert runs["two"]["loss"] == pytest.approx(runs["one"]["loss"], rel=0.05)
    assert runs["two"]["val_loss"] == pytest.approx(runs["one"]["val_loss"], rel=0.05)


def test_strategy_scales_batch_and_learning_rate_and_rejects_unknown_names():
    from xconv.distribute import Distribution, make_distribution

    two = Distribution(strategy=None, replicas=2)
    assert two.global_batch(32) == 64 and two.learning_rate(1e-3) == 2e-3 and two.learning_rate(1e-3, False) == 1e-3
    assert make_distribution("default").replicas == 1
    with pytest.raises(xconv.XconvError, match="--strategy must be one of"):
        make_distribution("parameter-server")


def test_split_validation_moves_an_even_share_of_each_class_and_holds_out_the_rest():
    labels = np.array([0] * 6 + [1] * 4, np.int32)
    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    validation = ImageFolder(images, labels, ["cats", "dogs"], paths=[Path(f"v{i}.jpg") for i in range(10)])
    train_split = ImageFolder(images[:3] + 100, np.array([0, 1, 1], np.int32), ["cats", "dogs"],
                              paths=[Path(f"t{i}.jpg") for i in range(3)])
    merged, held_out = split_validation(train_split, validation, 0.5)
    moved = merged.images[3:, 0, 0, 0].tolist()
    assert moved == [1, 3, 5, 7, 9] and held_out.images[:, 0, 0, 0].tolist() == [0, 2, 4, 6, 8]
    assert np.bincount(held_out.labels).tolist() == [3, 2]  # half of each class
    assert [p.name for p in merged.paths] == ["t0.jpg", "t1.jpg", "t2.jpg", "v1.jpg", "v3.jpg", "v5.jpg", "v7.jpg", "v9.jpg"]
    assert merged.labels.tolist() == [0, 1, 1, 0, 0, 0, 1, 1]
    assert split_validation(train_split, validation, 0.0)[1].images.shape[0] == 10
    with pytest.raises(xconv.XconvError, match="merge-validation"):
        split_validation(train_split, validation, 1.0)


def test_progressive_phases_cover_every_epoch_once():
    assert TrainConfig(epochs=10).phases() == [(None, 0, 10)]
    assert TrainConfig(epochs=10, small_size=64, small_epochs=4).phases() == [(64, 0, 4), (None, 4, 10)]
    assert TrainConfig(epochs=3, small_size=64, small_epochs=5).phases() == [(64, 0, 3)]


def test_progressive_cutmix_run_keeps_the_last_epoch_at_the_full_size(dataset, tmp_path, monkeypatch):
    import xconv.training

    out = tmp_path / "recipe.keras"
    photo = dataset / "validation" / "cats" / "cats0.jpg"
    traces = []  # the training step's Python body runs once per trace

    def counting_fit(model, *args, **kwargs):
        step = model.train_step
        model.train_step = lambda data: traces.append(data[0].shape) or step(data)
        return real_fit(model, *args, **kwargs)

    real_fit = xconv.training.fit
    monkeypatch.setattr(xconv.training, "fit", counting_fit)
    result = train_quick("--data", dataset, "--epochs", "3", "--image-size", "32", "--batch-size", "8", "--out", out,
                         "--small-size", "16", "--small-epochs", "2", "--mixing", "cutmix", "--mixing-probability", "1",
                         "--keep", "last", "--merge-validation", "0.5", "--explain-every", "1", "--explain-images",
                         photo)
    assert trained_past_corrupt(result), result.output
    assert "4 held out" in result.output and "24 training and 4 validation images" in result.output
    assert "epochs 1-2 at 16x16" in result.output and "last val_accuracy" in result.output
    # One traced training step for both sizes (the batches declare no height and width).
    assert [shape.as_list() for shape in traces] == [[None, None, None, 3]]
    rows = history_rows(tmp_path / "recipe.history.csv")
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    model = xconv.load_model(out)
    assert model.input_size == (32, 32)  # the any-size training net is saved at the training size
    assert read_metadata(out)["image_size"] == [32, 32]
    assert len(list((tmp_path / "recipe.explanations").glob("epoch_*.png"))) == 3  # the 16 px epochs too
    # The checkpoint is the last epoch's: its accuracy on the held-out photos is the last row's.
    held_out = [p for name in ("cats", "dogs") for p in sorted((dataset / "validation" / name).iterdir())][::2]
    truth = np.array([0 if p.parent.name == "cats" else 1 for p in held_out])
    batch = np.stack([xconv.images.resize(xconv.images.load_image(p), (32, 32)) for p in held_out])
    accuracy = float((model.predict(batch, flip_average=False).argmax(axis=1) == truth).mean())
    assert accuracy == pytest.approx(float(rows[-1]["val_accuracy"]))

    # A finished progressive run has no optimizer state left; --resume extends it with a fresh one.
    resumed = train_quick("--data", dataset, "--epochs", "4", "--image-size", "32", "--batch-size", "8", "--out", out,
                          "--small-size", "16", "--small-epochs", "2", "--keep", "last", "--merge-validation", "0.5",
                          "--resume")
    assert trained_past_corrupt(resumed), resumed.output
    assert "fresh optimizer" in resumed.output
    assert len(history_rows(tmp_path / "recipe.history.csv")) == 4
    assert xconv.load_model(out).input_size == (32, 32)


@pytest.mark.parametrize("arguments, message", [
    (["--mixing", "blend"], "unknown --mixing 'blend'"),
    (["--keep", "first"], "--keep must be best or last"),
    (["--small-size", "16"], "needs both --small-size and --small-epochs"),
    (["--model", "inceptionv3-transfer", "--weights", "none", "--small-size", "16", "--small-epochs", "1",
      "--image-size", "75"], "--small-size 16 is too small for inceptionv3-transfer"),
    (["--learning-rate", "-1"], "--learning-rate must be above 0"),
    (["--image-size", "-5"], "Invalid value for '--image-size'"),  # was OpenCV's assertion, exit 2
])
def test_recipe_options_reject_bad_values_in_one_line(dataset, tmp_path, arguments, message):
    result = train("--data", dataset, "--out", tmp_path / "m.keras", *arguments)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_paths_and_strategy_mistakes_are_refused_before_training(dataset, tmp_path):
    """Each of these failed late: after every photo was decoded, after a whole epoch, or as a traceback."""
    (tmp_path / "folder.keras").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "logs").write_text("a file, not a folder")
    photo = dataset / "validation" / "cats" / "cats0.jpg"
    cases = [
        (["--out", tmp_path / "folder.keras"], "is a folder"),
        (["--out", tmp_path / "m.keras", "--explain-images", tmp_path / "empty"], "empty: no images there"),
        (["--out", tmp_path / "m.keras", "--explain-images", photo, "--tensorboard", tmp_path / "logs"],
         "logs is not a folder"),
        (["--out", tmp_path / "m.keras", "--strategy", "nope"], "--strategy must be one of"),
        (["--out", tmp_path / "m.keras", "--strategy", "multi-worker"], "Keras 3's model.fit fails under TensorFlow's "
         "MultiWorkerMirroredStrategy"),  # tried with two worker processes: every step failed, internal error
    ]
    for arguments, message in cases:
        result = train("--data", dataset, "--image-size", "32", *arguments)
        assert result.exit_code == 1 and message in result.output, (arguments, result.output)
        assert "decoded" not in result.output and "training and" not in result.output  # nothing read yet
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "folder.keras", "logs"]


def test_an_any_size_checkpoint_predicts_at_its_recorded_training_size(dataset, tmp_path):
    """An interrupted progressive run leaves a net that takes any size; its metadata says which to use."""
    from xconv.modelfile import write_metadata
    from xconv_plugins.catsdogs import build_catsdogs

    path = tmp_path / "any.keras"
    build_catsdogs(2, (None, None)).save(path)
    write_metadata(path, {"class_names": ["cats", "dogs"], "preprocess": "none", "image_size": [32, 32]})
    model = xconv.load_model(path)
    assert model.input_size == (32, 32)
    label, score = xconv.predict(model, [dataset / "validation" / "cats" / "cats0.jpg"])[0][0]
    assert label in ("cats", "dogs") and 0 <= score <= 1


def test_a_save_interrupted_midway_keeps_the_last_good_checkpoint(tmp_path):
    """Ctrl-C during an epoch-end save: the previous checkpoint stays whole, no partial file is left."""
    from xconv.training_log import BestCheckpoint

    class HalfSaving:
        def save(self, path):
            Path(path).write_bytes(b"half a model")
            raise KeyboardInterrupt

    good = tmp_path / "model.keras"
    good.write_bytes(b"the last good checkpoint")
    checkpoint = BestCheckpoint(good, keep_best=True, best=0.5)
    checkpoint.set_model(HalfSaving())
    checkpoint.on_epoch_end(0, {"val_accuracy": 0.4})  # not better: no save at all
    with pytest.raises(KeyboardInterrupt):
        checkpoint.on_epoch_end(1, {"val_accuracy": 0.6})
    assert good.read_bytes() == b"the last good checkpoint" and sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_a_save_that_fails_midway_leaves_the_previous_model_whole(tmp_path):
    """Exporting over the checkpoint (and stamping metadata) wrote in place: a crash destroyed the model."""
    from xconv.modelfile import save_keras_file
    from xconv.testing import tiny_keras_convnet

    path = tmp_path / "model.keras"
    save_keras_file(tiny_keras_convnet((32, 32), classes=2, seed=0), path, {"classes": ["a", "b"]})
    before = path.read_bytes()

    class Crashing:
        def save(self, target):
            Path(target).write_bytes(b"PK half a zip")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_keras_file(Crashing(), path, {"classes": ["x", "y"]})
    assert path.read_bytes() == before and read_metadata(path) == {"classes": ["a", "b"]}
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]  # no temporary left behind


def test_a_resumed_runs_gif_keeps_the_epochs_before_it(tmp_path):
    """The callback only knew its own strips: after --resume at epoch 3 the GIF lost epochs 1 and 2."""
    from PIL import Image

    from xconv.callbacks import ExplainCallback

    for epoch, value in ((1, 10), (2, 20), (3, 30), (7, 70)):  # 3 and 7: the resumed run's (7 is stale)
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(tmp_path / f"epoch_{epoch:03d}.png")
    def frames(resumed_after):
        callback = ExplainCallback(np.zeros((1, 8, 8, 3), np.uint8), tmp_path, ["a", "b"], resumed_after=resumed_after)
        callback.strips = [tmp_path / "epoch_003.png"]
        callback.finish()
        with Image.open(tmp_path / "attention.gif") as gif:
            values = []
            for index in range(gif.n_frames):
                gif.seek(index)
                values.append(int(np.asarray(gif.convert("RGB"))[0, 0, 0]))
        return values

    assert frames(resumed_after=2) == [10, 20, 30]
    assert frames(resumed_after=0) == [30]  # a fresh run into an old folder: the old strips are not its own
