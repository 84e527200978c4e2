"""The Python API meets a user's mistakes with one XconvError naming the problem, never a deep traceback
or a silently wrong result (each case here once did one or the other)."""

import os

import numpy as np
import pytest
from PIL import Image

import xconv
from xconv.scoring import ScoreTable
from xconv.testing import random_images, tiny_convnet


@pytest.fixture(scope="module")
def tiny():
    return tiny_convnet(classes=3)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for index, image in enumerate(random_images(5, (40, 48), seed=11)):
        paths.append(folder / f"p{index}.png")
        Image.fromarray(image).save(paths[-1])
    (folder / "broken.png").write_bytes(b"not a png")
    return paths, folder / "broken.png"


def test_score_keeps_each_images_target_across_chunks_and_skipped_files(tiny, photos):
    """Per-image targets went whole to every chunk: 'got 17 targets for 16 images' past one batch."""
    paths, broken = photos
    given = [paths[0], broken, paths[1], paths[2], paths[3], paths[4]]
    targets = ["class_2", "class_0", "class_1", "class_0", "class_2", "class_1"]
    table = ScoreTable()
    rows = xconv.score(tiny, given, methods=["gradcam"], metrics=["average-drop"], target=targets, batch_size=2,
                       table=table)
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    scored = {(row["image"], row["target"]) for row in rows if row["method"] == "gradcam"}
    expected = {(str(path), target) for path, target in zip(given, targets) if path != broken}
    assert scored == expected and [error.path for error in table.skipped] == [str(broken)]
    with pytest.raises(xconv.XconvError, match="got 2 targets for 6 images"):
        xconv.score(tiny, given, metrics=["average-drop"], target=["class_0", "class_1"])


def test_per_image_arguments_must_match_the_images(tiny):
    images = random_images(3, (32, 32), seed=1)
    photo = images[0]
    for arguments, message in [({"originals": [photo]}, "got 1 originals for 3 images"),  # drew 1 file of 3
                               ({"originals": [photo / 255.0] * 3}, "originals are the photos as uint8"),
                               ({"sources": ["a.png"]}, "got 1 sources for 3 images"),
                               ({"index_offset": [5]}, "got 1 index_offset values for 3 images")]:
        with pytest.raises(xconv.XconvError, match=message):
            xconv.explain(tiny, images, **arguments)


@pytest.mark.parametrize("call, message", [
    (lambda m, x: xconv.explain(m, x, "smoothgrad", noise=float("nan")), "option noise of explainer 'smoothgrad' must be"),
    (lambda m, x: xconv.explain(m, x, target=1.0), "a target is a class name or index; got 1.0"),
    (lambda m, x: xconv.explain(m, x, target=[None, 0]), "a target is a class name or index; got None"),
    (lambda m, x: xconv.explain(m, x, method=None), "explainer names are strings"),
    (lambda m, x: xconv.predict(m, x, top="2"), "top is a whole number of classes"),
    (lambda m, x: xconv.predict(m, x[:0]), "no images given"),
    (lambda m, x: xconv.predict(m.keras_model, x), "expected an xconv.Model, got Functional"),
    (lambda m, x: xconv.explain("catsdogs", x), "expected an xconv.Model, got str"),
    (lambda m, x: xconv.predict(m, list(x)), r"got ndarray in a list \(stack arrays into one uint8"),
    (lambda m, x: xconv.score(m, x, batch_size=0), "batch_size is a whole number of images"),
    (lambda m, x: xconv.score(m, x[0]), r"images must be uint8 \(N, H, W, 3\); got uint8 \(32, 32, 3\)"),
    (lambda m, x: xconv.compare(m, x, "gradcam,saliency", options={"occlusion": {"patch": 8}}),
     "options given for method 'occlusion', which is not run"),
    (lambda m, x: xconv.score(m, x, metrics=["deletion"], metric_options={"insertion": {"steps": 4}}),
     "options given for metric 'insertion', which is not run"),
    (lambda m, x: xconv.render(None, "overlay"), "render takes an xconv.Explanation"),
    (lambda m, x: xconv.load_model(os.path.dirname(xconv.__file__)), "is a folder, not a model"),  # "no such model file"
    (lambda m, x: xconv.explain(m, None, "filters", layer="conv3", filters="0-9999"),
     r"filters \[16, 17, 18, 19, 20, 21, 22, 23, ... \(9984 in all\)\] out of range"),
])
def test_mistakes_are_one_xconv_error(tiny, call, message):
    with pytest.raises(xconv.XconvError, match=message) as raised:
        call(tiny, random_images(2, (32, 32), seed=2))
    assert len(str(raised.value)) < 400 and "\n" not in str(raised.value)


def test_what_the_api_takes_besides_lists_and_arrays(tiny, photos, tmp_path, monkeypatch):
    paths, _ = photos
    monkeypatch.chdir(tmp_path)
    (tmp_path / "catsdogs").mkdir()  # a folder named like the model: the name still means the model
    random = xconv.load_model("catsdogs", weights="none")  # as the CLI and its messages spell it: was refused
    assert random.class_names == ["cat", "dog"]
    one = xconv.explain(tiny, paths[0])
    np.testing.assert_array_equal(xconv.explain(tiny, (p for p in paths[:1])).heatmaps, one.heatmaps)  # a generator
    for given in (str(paths[0]), paths[0]):  # one path: was a list of its characters, or "not iterable"
        batch, _, good, errors = xconv.load_images(given, tiny)
        assert len(batch) == 1 and good == [paths[0]] and not errors
    targets = xconv.explain(tiny, paths[:2], target=np.array([2, 0])).targets
    assert list(targets) == [2, 0]
    rows = xconv.score(tiny, random_images(2, (32, 32), seed=3), metrics=["average-drop"], target=np.array(1))
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    assert {row["target"] for row in rows} == {"class_1"}  # a 0-d array is one target for all
    compared = xconv.compare(tiny, paths[:1], "gradcam,saliency")  # one string, as score takes it
    assert compared.metadata["methods"] == ["gradcam", "saliency"]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(xconv.XconvError, match="is not a folder"):
        xconv.render(one, "overlay", blocker / "out")
    assert not (blocker.parent / "out").exists()
