"""Faithfulness metrics on a model whose answer depends on a known region, against plain loops."""

import json
import os
import re
from pathlib import Path

import keras
import numpy as np
import pytest

import xconv
from xconv.faithfulness import area_under, map_ranks, maps_at_input_size, pixel_ranks
from xconv.registry import get_registry
from xconv.scoring import ScoreTable
from xconv.testing import TinyModel, random_images, tiny_convnet

REGION = (slice(12, 20), slice(12, 20))  # 64 of the 1,024 pixels


class RegionScore(keras.layers.Layer):
    """Two logits: 0 and a steep function of the region's mean brightness (1 for white, 0 for black)."""

    def call(self, inputs):
        mean = keras.ops.mean(inputs[:, REGION[0], REGION[1], :], axis=(1, 2, 3))
        return keras.ops.stack([keras.ops.zeros_like(mean), 40.0 * (mean - 0.5)], axis=1)


@pytest.fixture(scope="module")
def region_model():
    inputs = keras.Input((32, 32, 3))
    logits = RegionScore()(keras.layers.Rescaling(1 / 255)(inputs))
    return TinyModel(keras.Model(inputs, keras.layers.Activation("softmax")(logits)), ["off", "on"])


def white(count=2):
    return np.full((count, 32, 32, 3), 255, np.uint8)


def region_map(inverse=False, count=2):
    maps = np.zeros((count, 32, 32), np.float32)
    maps[:, REGION[0], REGION[1]] = 1.0
    return 1.0 - maps if inverse else maps


def explanation_of(maps, images, method="handmade"):
    return xconv.Explanation(method, "heatmap", "region", arrays={"heatmaps": maps}, images=images,
                             targets=[1] * len(images), target_names=["on"] * len(images))


def metric(model, name, **options):
    return get_registry().get("metric", name)(model, **options)


def test_the_right_region_wins_deletion_and_insertion(region_model):
    images, targets = white(), np.array([1, 1])
    deletion = metric(region_model, "deletion", baseline="black")
    insertion = metric(region_model, "insertion", baseline="black")
    exact, inverse = explanation_of(region_map(), images), explanation_of(region_map(True), images)
    noise = explanation_of(np.random.default_rng(0).random((2, 32, 32)).astype(np.float32), images)
    assert (deletion.score(images, targets, exact).values < 0.06).all()
    assert (insertion.score(images, targets, exact).values > 0.94).all()
    assert (deletion.score(images, targets, inverse).values > 0.9).all()
    assert (insertion.score(images, targets, inverse).values < 0.1).all()
    for value in (deletion.score(images, targets, noise).values, insertion.score(images, targets, noise).values):
        assert ((0.2 < value) & (value < 0.8)).all()
    curves = deletion.score(images, targets, exact).curves
    assert curves.shape == (2, 21) and curves[0, 0] > 0.99 and curves[0, -1] < 0.01


def test_auc_agrees_with_a_plain_per_step_loop(region_model):
    """Pixels removed one step at a time in numpy, each copy through the Keras model, the area by hand."""
    images = random_images(3, (32, 32), seed=4)
    maps = random_images(3, (8, 8), seed=5)[..., 0].astype(np.float32) / 255
    targets = np.array([1, 0, 1])
    ranks = pixel_ranks(maps_at_input_size(maps, (32, 32)))
    steps = 10
    expected = []
    for image, rank, target in zip(images, ranks, targets):
        curve = []
        for step in range(steps + 1):
            removed = rank < round(step * 1024 / steps)
            copy = np.where(removed[..., None], 0, image).astype(np.float32)
            curve.append(float(region_model.keras_model(copy[None], training=False)[0, target]))
        expected.append(sum((a + b) / 2 for a, b in zip(curve, curve[1:])) / steps)
    result = metric(region_model, "deletion", baseline="black", steps=steps).score(images, targets,
                                                                                 explanation_of(maps, images))
    np.testing.assert_allclose(result.values, expected, atol=0.02)
    np.testing.assert_allclose(area_under(result.curves), result.values)


def test_pixel_ranks_order_by_value_then_one_fixed_random_order():
    rng = np.random.default_rng(1)
    maps = (rng.standard_normal((6, 12, 10)) * 1e-3).astype(np.float32)
    maps[:2] = np.maximum(maps[:2], 0)  # ReLU zeros: many ties
    maps[2], maps[3, :4] = 0.5, -0.0  # a flat map; -0.0 ties with 0.0
    ranks = pixel_ranks(maps)
    flat = maps.reshape(6, -1)
    tie_break = np.random.default_rng(0).permutation(120)
    expected = np.argsort(np.lexsort((np.broadcast_to(tie_break, flat.shape), -flat), axis=-1), axis=-1)
    np.testing.assert_array_equal(ranks.reshape(6, -1), expected)
    assert sorted(ranks[2].ravel()) == list(range(120)) and ranks[2].ravel()[:12].max() > 60  # flat: not by row


def test_curves_of_one_batch_share_their_ends(region_model, monkeypatch):
    """The ends of every curve (the image, the baseline) do not depend on the map: several methods' curves on
    one batch pass them through the model once; a changed image, even in place, is passed again."""
    import xconv.faithfulness as faithfulness

    calls = []
    real = faithfulness.target_probabilities
    monkeypatch.setattr(faithfulness, "target_probabilities", lambda *a, **k: calls.append(1) or real(*a, **k))
    images, targets = white(), np.array([1, 1])
    deletion = metric(region_model, "deletion", baseline="black", steps=4)
    insertion = metric(region_model, "insertion", baseline="black", steps=4)
    first = deletion.score(images, targets, explanation_of(region_map(), images)).curves
    assert len(calls) == 2 and first[0, 0] > 0.99 and first[0, -1] < 0.01
    other = insertion.score(images, targets, explanation_of(region_map(True), images)).curves
    assert len(calls) == 2  # another map and metric, same batch: the ends are reused
    np.testing.assert_array_equal(other[:, [0, -1]], first[:, [-1, 0]])
    drop = metric(region_model, "average-drop").score(images, targets, explanation_of(region_map(True), images))
    assert len(calls) == 3 and (drop.values > 0.99).all()  # the images' probabilities are known: masked ones pass
    images[:] = 0  # the same array, now black: the image end is the baseline's
    again = deletion.score(images, targets, explanation_of(region_map(), images)).curves
    assert len(calls) == 5 and again[0, 0] < 0.01


def forget_played_games(model):
    """A batch's curves are remembered: clear them so the next score plays its game again."""
    model.memo("deletion_game_setup").clear()


def test_insertion_reads_the_reverse_deletion_backwards(region_model, monkeypatch):
    """Insertion on 1 - m shows the copies deletion on m shows, in reverse: on one batch the game is played
    once, and the curve read backwards equals the one a fresh insertion game plays."""
    import xconv.faithfulness as faithfulness

    images, targets = random_images(3, (32, 32), seed=8), np.array([1, 0, 1])
    rng = np.random.default_rng(9)
    noise = np.stack([rng.permutation(1024).reshape(32, 32) / np.float32(1023) for _ in range(3)])  # no ties
    deletion, insertion = metric(region_model, "deletion", steps=5), metric(region_model, "insertion", steps=5)
    forget_played_games(region_model)
    fresh = insertion.score(images, targets, explanation_of(1 - noise, images)).curves
    forget_played_games(region_model)
    played, real = [], faithfulness.play_game
    monkeypatch.setattr(faithfulness, "play_game", lambda model, inputs, *rest: played.append(len(inputs))
                        or real(model, inputs, *rest))
    deleted = deletion.score(images, targets, explanation_of(noise, images)).curves
    inserted = insertion.score(images, targets, explanation_of(1 - noise, images))
    assert played == [3]
    np.testing.assert_array_equal(inserted.curves, deleted[:, ::-1])
    np.testing.assert_allclose(inserted.curves, fresh, atol=1e-6)
    np.testing.assert_allclose(inserted.values, area_under(fresh), atol=1e-6)
    insertion.score(images, targets, explanation_of(noise, images))  # the same order: a game of its own
    assert played == [3, 3]
    mixed = np.concatenate([1 - noise[:1], noise[1:, ::-1]])  # image 0 as played, 1 and 2 new orders
    curves = insertion.score(images, targets, explanation_of(mixed, images)).curves
    assert played == [3, 3, 2]
    np.testing.assert_array_equal(curves[0], deleted[0, ::-1])
    forget_played_games(region_model)
    np.testing.assert_allclose(curves, insertion.score(images, targets, explanation_of(mixed, images)).curves,
                               atol=1e-6)


@pytest.mark.parametrize("pixels, steps", [(1024, 5), (89401, 20), (7, 2), (10, 3)])  # 89401: 299 x 299
def test_insertion_in_reverse_order_gets_the_name_of_deletion(pixels, steps):
    """Whatever the pixel count (odd ones put k / S of it between two pixels), insertion in the reverse
    order shows deletion's copies: baseline exactly where deletion has removed, step by step mirrored."""
    from xconv.faithfulness import removal_steps, step_counts

    ranks = np.random.default_rng(pixels).permutation(pixels).reshape(1, 1, pixels).astype(np.int32)
    deletion, insertion = step_counts(pixels, steps, False), step_counts(pixels, steps, True)
    np.testing.assert_array_equal(removal_steps(ranks, deletion, False),
                                  removal_steps(pixels - 1 - ranks, insertion, True))
    for step in range(steps + 1):
        removed = ranks < deletion[steps - step]
        on_baseline = ~(pixels - 1 - ranks < insertion[step])  # insertion shows its top counts[step]
        np.testing.assert_array_equal(on_baseline, removed)
    assert insertion[0] == 0 and insertion[-1] == pixels and (np.diff(insertion) >= 0).all()


def test_map_ranks_equal_pixel_ranks_and_skip_the_sorts_they_can(monkeypatch):
    """The reference rows' maps are ranked without sorting them again, to exactly pixel_ranks' result."""
    import xconv.faithfulness as faithfulness
    from xconv.scoring import reference_maps

    size = (40, 30)
    rng = np.random.default_rng(2)
    random_maps = reference_maps("random", 3, seed=5, input_size=size)
    center_maps = maps_at_input_size(reference_maps("center", 3), size)
    smooth = maps_at_input_size(rng.random((3, 5, 4)).astype(np.float32), size)
    smooth[0, :10] = 0  # ReLU-like ties
    evenly_spaced_with_ties = np.repeat(np.linspace(0, 1, 600, dtype=np.float32), 2).reshape(1, *size)
    batches = [random_maps, 1 - random_maps, center_maps, smooth, evenly_spaced_with_ties,
               np.concatenate([random_maps[:1], smooth[:1], 1 - random_maps[1:2]])]
    sorted_maps = []
    real_pixel_ranks = faithfulness.pixel_ranks
    monkeypatch.setattr(faithfulness, "pixel_ranks", lambda maps: sorted_maps.append(len(maps)) or real_pixel_ranks(maps))
    for maps in batches:
        np.testing.assert_array_equal(map_ranks(maps), real_pixel_ranks(maps))
    # random and 1 - random: no sort; center: one map sorted; smooth: all three; ties: sorted; the mix: 1
    assert sorted_maps == [1, 3, 1, 1]


def test_random_reference_orders_every_pixel_and_its_complement_reverses_it():
    from xconv.scoring import reference_maps

    maps = reference_maps("random", 2, seed=3, input_size=(40, 30))
    assert maps.shape == (2, 40, 30) and maps.dtype == np.float32 and maps.min() == 0 and maps.max() == 1
    assert all(len(np.unique(m)) == m.size for m in maps)  # no ties
    np.testing.assert_array_equal(pixel_ranks(1 - maps), 40 * 30 - 1 - pixel_ranks(maps))
    smooth = maps_at_input_size(reference_maps("random", 2, seed=3), (40, 30)).reshape(2, -1)
    in_map_order = np.take_along_axis(smooth, np.argsort(-maps.reshape(2, -1), axis=1), axis=1)
    assert (np.diff(in_map_order, axis=1) <= 0).all()  # the smoothed noise's order, its ties broken


def test_scores_do_not_depend_on_the_batch_size(region_model):
    images, maps = random_images(5, (32, 32), seed=6), random_images(5, (8, 8), seed=7)[..., 0] / 255.0
    explanation = explanation_of(maps.astype(np.float32), images)
    for name in ("deletion", "insertion"):
        curves = []
        for batch_size in (5, 2, 16):  # 16: 3 steps' copies per pass
            forget_played_games(region_model)
            curves.append(metric(region_model, name, batch_size=batch_size).score(images, np.ones(5, int),
                                                                                  explanation).curves)
        whole, small, several_steps = curves
        np.testing.assert_allclose(whole, small, atol=1e-6)
        np.testing.assert_allclose(whole, several_steps, atol=1e-6)  # 3 steps' copies per pass


def test_average_drop_and_increase_in_confidence(region_model):
    images, targets = white(), np.array([1, 1])
    drop = metric(region_model, "average-drop").score(images, targets, explanation_of(region_map(), images)).values
    assert (drop < 0.01).all()  # the map keeps the whole region: no confidence lost
    lost = metric(region_model, "average-drop").score(images, targets, explanation_of(region_map(True), images))
    assert (lost.values > 0.99).all()  # the map blacks the region out
    increase = metric(region_model, "increase-in-confidence")
    blacked_out = explanation_of(region_map(True), images)
    # Blacking the region out makes the model sure it is "off": more confident in "off", less in "on".
    assert increase.score(images, np.array([0, 0]), blacked_out).values.tolist() == [1.0, 1.0]
    assert increase.score(images, targets, blacked_out).values.tolist() == [0.0, 0.0]


def test_pointing_against_hand_made_boxes(tmp_path, region_model):
    maps = np.zeros((3, 4, 4), np.float32)
    maps[0, 0, 0] = maps[1, 3, 3] = maps[2, 1, 2] = 1  # peaks near the top left, bottom right, centre right
    originals = [np.zeros((40, 40, 3), np.uint8)] * 3
    boxes = [{"image": "a.png", "class": "on", "x0": 0, "y0": 0, "x1": 8, "y1": 8},
             {"image": "b.png", "class": "on", "x0": 0, "y0": 0, "x1": 8, "y1": 8},
             {"image": "c.png", "class": "off", "x0": 0, "y0": 0, "x1": 40, "y1": 40}]
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    explanation = explanation_of(maps, white(3))
    explanation.sources, explanation.originals = ["dir/a.png", "b.png", "c.png"], originals
    pointing = metric(region_model, "pointing", boxes=str(tmp_path / "boxes.json"), tolerance=0)
    values = pointing.score(white(3), np.array([1, 1, 1]), explanation).values
    assert values[0] == 1 and values[1] == 0 and np.isnan(values[2])  # c.png has a box for 'off' only
    generous = metric(region_model, "pointing", boxes=str(tmp_path / "boxes.json"), tolerance=40)
    assert generous.score(white(3), np.array([1, 1, 1]), explanation).values[1] == 1
    from xconv_plugins.pointing import distance_to_box

    # The tolerance is a distance: 10 px right and 10 px below a corner is 14.1 px away, not 10.
    assert distance_to_box(18, 18, (0, 0, 8, 8)) == pytest.approx(200 ** 0.5) and distance_to_box(4, 4, (0, 0, 8, 8)) == 0
    (tmp_path / "boxes.csv").write_text("image,class,x0,y0,x1,y1\na.png,on,0,0,8,8\n")
    csv_values = metric(region_model, "pointing", boxes=str(tmp_path / "boxes.csv")).score(
        white(1), np.array([1]), explanation_of(maps[:1], white(1)))
    assert np.isnan(csv_values.values[0])  # no sources: nothing to match
    with pytest.raises(xconv.XconvError, match="needs boxes"):
        metric(region_model, "pointing")
    # Boxes that could only ever miss are refused, naming the record.
    for row, message in [("a.png,on,0,0,nan,8", "record 1 (a.png): corners must be numbers"),
                         ("a.png,on,9,0,1,8", "x0 <= x1 and y0 <= y1, got 9, 0, 1, 8"),
                         ("a.png,onn,0,0,8,8", "no record names a class of the model: unknown class 'onn'"),
                         ("", "each record needs image, class, x0, y0, x1, y1 (it holds no record)")]:
        (tmp_path / "bad.csv").write_text(f"image,class,x0,y0,x1,y1\n{row}\n")
        with pytest.raises(xconv.XconvError, match=re.escape(message)):
            metric(region_model, "pointing", boxes=str(tmp_path / "bad.csv"))
    from xconv_plugins.pointing import names_the_image

    # A name or relative path names the inputs whose path ends with it; an absolute path, that file only.
    assert names_the_image("1.jpg", "../data/cats/1.jpg") and names_the_image("1.jpg", "dogs/1.jpg")
    assert names_the_image("cats/1.jpg", "../data/cats/1.jpg") and not names_the_image("cats/1.jpg", "dogs/1.jpg")
    assert not names_the_image("s/1.jpg", "cats/1.jpg") and not names_the_image("b.png", "a.png")
    assert names_the_image(str(tmp_path / "x" / "1.jpg"), os.path.relpath(tmp_path / "x" / "1.jpg"))
    assert not names_the_image(str(tmp_path / "x" / "1.jpg"), "y/1.jpg")
    (tmp_path / "strings.json").write_text('["a.png", "b.png"]')  # was "(string indices must be integers)"
    with pytest.raises(xconv.XconvError, match=re.escape("(a JSON file holds a list of objects, one per box)")):
        metric(region_model, "pointing", boxes=str(tmp_path / "strings.json"))
    (tmp_path / "mixed.csv").write_text("image,class,x0,y0,x1,y1\na.png,on,0,0,8,8\na.png,person,0,0,40,40\n")
    with pytest.warns(xconv.XconvWarning, match="records of 'person' left out"):  # boxes of other objects
        mixed = metric(region_model, "pointing", boxes=str(tmp_path / "mixed.csv"), tolerance=0)
    assert mixed.score(white(3), np.array([1, 1, 1]), explanation).values[0] == 1
    with pytest.raises(xconv.XconvError, match="tolerance"):  # a negative one made every map miss
        metric(region_model, "pointing", boxes=str(tmp_path / "boxes.json"), tolerance=-5)
    (tmp_path / "far.csv").write_text("image,class,x0,y0,x1,y1\na.png,on,5000,5000,6000,6000\n")
    far = metric(region_model, "pointing", boxes=str(tmp_path / "far.csv"))
    with pytest.warns(xconv.XconvWarning, match=r"a box of a.png lies outside its 40x40 pixels \(5000, 5000"):
        assert far.score(white(3), np.array([1, 1, 1]), explanation).values[0] == 0
    flat = explanation_of(np.zeros((3, 4, 4), np.float32), white(3))  # no maximum: argmax said (0, 0), a hit
    flat.sources, flat.originals = explanation.sources, originals
    assert pointing.score(white(3), np.array([1, 1, 1]), flat).values[0] == 0
    assert pointing.annotated_targets("x/c.png") == [0] and pointing.annotated_targets("d.png") == []


def test_annotated_targets_score_each_boxed_class_and_pointing_averages_over_classes(tmp_path):
    """Zhang et al. cue the game with the true class and report the mean of the categories' accuracies.
    With the predicted class, a photo the model got wrong had no box for it and was left out."""
    from PIL import Image

    model = tiny_convnet(classes=2)
    for name in ("a", "b", "c"):
        Image.fromarray(random_images(1, (40, 40), seed=ord(name))[0]).save(tmp_path / f"{name}.png")
    (tmp_path / "boxes.csv").write_text("image,class,x0,y0,x1,y1\na.png,class_0,0,0,40,40\na.png,class_1,0,0,40,40\n"
                                        "b.png,class_1,0,0,40,40\n")
    table = ScoreTable()
    paths = [tmp_path / f"{name}.png" for name in "abc"]
    xconv.score(model, paths, ["gradcam"], ["pointing"], target="annotated", table=table,
                metric_options={"pointing": {"boxes": str(tmp_path / "boxes.csv")}})
    scored = sorted((Path(r["image"]).name, r["target"]) for r in table.rows if r["method"] == "gradcam")
    assert scored == [("a.png", "class_0"), ("a.png", "class_1"), ("b.png", "class_1")]
    assert table.unannotated == [paths[2]]
    assert all(r["value"] == 1 for r in table.rows if r["method"] == "gradcam")  # every box is the whole photo
    with pytest.raises(xconv.XconvError, match="score it with a metric that has some"):
        xconv.score(model, paths, ["gradcam"], ["deletion"], target="annotated")
    # One dog hit three times, one cat missed once: over images 0.75, over classes (Zhang et al.) 0.5.
    table = ScoreTable(averaged_over={"pointing": "classes"})
    table.rows = [{"image": str(i), "target": target, "method": "m", "metric": "pointing", "value": value}
                  for i, (target, value) in enumerate([("dog", 1.0)] * 3 + [("cat", 0.0), ("cat", float("nan"))])]
    [row] = table.summary()
    assert row["mean"] == 0.5 and row["images"] == 4 and np.isnan(row["ci95"])  # one cat value: no interval


def test_the_reference_rows_that_no_method_beats_are_named():
    """A lone method was marked best even where the center map scored higher."""
    table = ScoreTable(higher_is_better={"pointing": True, "deletion": False})
    means = {("m", "pointing"): 0.6, ("center", "pointing"): 0.8, ("random", "pointing"): 0.5,
             ("m", "deletion"): 0.2, ("center", "deletion"): 0.2, ("random", "deletion"): 0.4}
    table.rows = [{"image": "a", "target": "t", "method": method, "metric": metric, "value": value}
                  for (method, metric), value in means.items()]
    assert table.best() == {"pointing": "m", "deletion": "m"}
    assert table.unbeaten() == {"pointing": ["center"], "deletion": ["center"]}  # a tie is not beating it


def test_rows_of_an_array_are_named_by_their_position_in_it():
    rows = xconv.score(tiny_convnet(), random_images(5, (32, 32)), ["gradcam"], ["average-drop"], batch_size=2)
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    assert sorted({r["image"] for r in rows}) == [f"image {i}" for i in range(5)]  # each batch restarted at 0


def test_cascading_randomization_changes_a_copy_only():
    model = tiny_convnet(classes=3)
    before = [w.copy() for w in model.keras_model.get_weights()]
    randomization = metric(model, "randomization", layers=2)

    def weights_at_each_step(randomization):
        """The copy's kernels after each step (one copy, changed in place from step to step)."""
        seen = []
        for name, copied in randomization.randomized_steps():
            assert copied.keras_model is not model.keras_model
            seen.append((name, {layer: copied.keras_model.get_layer(layer).get_weights()[0]
                                for layer in ("predictions", "conv3", "conv1")}))
        return seen

    steps = weights_at_each_step(randomization)
    assert [name for name, _ in steps] == ["predictions", "conv3"]
    original = {layer: model.keras_model.get_layer(layer).get_weights()[0] for layer in ("predictions", "conv3", "conv1")}
    first, last = steps[0][1], steps[1][1]
    assert not np.allclose(last["predictions"], original["predictions"])
    assert not np.allclose(last["conv3"], original["conv3"])
    np.testing.assert_array_equal(last["conv1"], original["conv1"])
    # Cascading: step 1 changed the output layer only, with step 2's draw.
    np.testing.assert_array_equal(first["predictions"], last["predictions"])
    np.testing.assert_array_equal(first["conv3"], original["conv3"])
    again = weights_at_each_step(randomization)  # the next method or batch: the same steps on the same copy
    for (_, earlier), (_, now) in zip(steps, again):
        for layer in earlier:
            np.testing.assert_array_equal(earlier[layer], now[layer])
    # The new weights are the initializers' draws from the metric's seed, not from Keras's global state: the
    # same seed builds the same copies again (runs repeat), another seed other ones.
    np.testing.assert_array_equal(weights_at_each_step(metric(model, "randomization", layers=2))[-1][1]["conv3"],
                                  last["conv3"])
    other = weights_at_each_step(metric(model, "randomization", layers=2, seed=1))[-1][1]
    assert not np.allclose(other["conv3"], last["conv3"])
    for original_weights, now in zip(before, model.keras_model.get_weights()):
        np.testing.assert_array_equal(original_weights, now)
    images = random_images(2, (32, 32), seed=3)
    explanation = xconv.explain(model, images, "gradcam")
    result = randomization.score(images, np.asarray(explanation.targets), explanation)
    assert result.curves.shape == (2, 2) and np.all(np.abs(result.values) <= 1)
    assert result.extra["randomization-ssim"].shape == (2,)
    ssim_steps = result.extra_curves["randomization-ssim"]  # SSIM after every step, the last one the value
    assert ssim_steps.shape == (2, 2) and np.array_equal(ssim_steps[:, -1], result.extra["randomization-ssim"])


def test_randomization_explains_again_with_the_method_options(monkeypatch):
    """Only the model may change between the original maps and the randomized ones, not the settings."""
    model = tiny_convnet(classes=3)
    images = random_images(2, (32, 32), seed=3)
    explanation = xconv.explain(model, images, "smoothgrad", samples=3, noise=0.05)
    seen = []
    real = xconv.explain
    monkeypatch.setattr(xconv, "explain", lambda *args, **kwargs: seen.append(kwargs) or real(*args, **kwargs))
    metric(model, "randomization", layers=1).score(images, np.asarray(explanation.targets), explanation)
    assert seen and all(kwargs["samples"] == 3 and kwargs["noise"] == 0.05 for kwargs in seen)


def test_randomization_draws_average_independent_seeds():
    model = tiny_convnet(classes=3)
    images = random_images(3, (32, 32), seed=5)
    explanation = xconv.explain(model, images, "gradcam")
    targets = np.asarray(explanation.targets)
    single = [metric(model, "randomization", layers=2, seed=seed).score(images, targets, explanation)
              for seed in (4, 5)]
    both = metric(model, "randomization", layers=2, seed=4, draws=2).score(images, targets, explanation)
    assert not np.allclose(single[0].curves, single[1].curves)  # the draws differ, so the mean means something
    np.testing.assert_allclose(both.curves, (single[0].curves + single[1].curves) / 2, atol=1e-6)
    np.testing.assert_allclose(both.extra["randomization-ssim"],
                               (single[0].extra["randomization-ssim"] + single[1].extra["randomization-ssim"]) / 2,
                               atol=1e-6)
    with pytest.raises(xconv.XconvError, match="at least 1"):
        metric(model, "randomization", draws=0)


def test_rank_correlation_gives_tied_values_their_mean_rank():
    from scipy.stats import spearmanr

    from xconv_plugins.randomization import rank_correlation

    # Zero on the left half of the first map, on the right half of the second: ranked by position (as
    # before), the two zero blocks were ordered alike and the maps correlated at -0.51; as ties, -0.86.
    first = np.zeros((4, 4))
    first[:, 2:] = np.arange(8).reshape(4, 2) + 1
    second = np.zeros((4, 4))
    second[:, :2] = np.arange(8).reshape(4, 2) + 1
    assert rank_correlation(first, second) == pytest.approx(spearmanr(first.ravel(), second.ravel()).statistic)
    assert rank_correlation(first, second) == pytest.approx(-0.8591, abs=1e-4)
    assert rank_correlation(first, first) == pytest.approx(1.0)
    assert np.isnan(rank_correlation(first, np.zeros((4, 4))))


def test_score_reports_references_and_writes_files(tmp_path):
    from typer.testing import CliRunner
    from PIL import Image

    from xconv.cli import build_app

    model_path = tmp_path / "tiny.keras"
    from xconv.testing import tiny_keras_convnet

    tiny_keras_convnet((32, 32), classes=2).save(model_path)
    xconv.write_metadata(model_path, {"class_names": ["cat", "dog"]})
    for index, image in enumerate(random_images(3, (40, 40), seed=2)):
        Image.fromarray(image).save(tmp_path / f"{index}.png")
    (tmp_path / "bad.png").write_text("not an image")
    result = CliRunner().invoke(build_app(), [
        "score", str(tmp_path), "--model", str(model_path), "--method", "gradcam,saliency", "--metric",
        "deletion,insertion,average-drop", "-O", "metric.steps=4", "--batch-size", "2", "--out", str(tmp_path / "out"),
        "--json"])
    assert result.exit_code == 1 and "bad.png" in result.output  # the bad file is listed, the rest scored
    report = json.loads(result.output[result.output.index("{"):result.output.rindex("}") + 1])
    methods = {row["method"] for row in report["summary"]}
    assert methods == {"gradcam", "saliency", "random", "center"}
    assert all(row["images"] == 3 for row in report["summary"])
    assert set(report["best"]) == {"deletion", "insertion", "average-drop"}
    assert report["best"]["deletion"] in ("gradcam", "saliency")
    rows = (tmp_path / "out" / "score.csv").read_text().splitlines()
    assert rows[0] == "image,target,method,metric,value" and len(rows) == 1 + 3 * 4 * 3
    assert (tmp_path / "out" / "score.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "out" / "score.json").read_text())
    curve = next(c for c in saved["curves"] if c["method"] == "gradcam" and c["metric"] == "deletion")
    assert curve["x"] == [0.0, 0.25, 0.5, 0.75, 1.0] and len(curve["mean"]) == 5

    def score(*args):
        return CliRunner().invoke(build_app(), ["score", *map(str, args), "--model", str(model_path), "--out",
                                                str(tmp_path / "out2"), "-O", "metric.steps=2"])

    one = score(tmp_path / "0.png", "--json")  # one image: no interval, written as null, never as NaN
    assert one.exit_code == 0 and "NaN" not in one.output and '"ci95": null' in one.output
    (tmp_path / "boxes.csv").write_text("image,class,x0,y0,x1,y1\nelsewhere.png,cat,0,0,10,10\n")
    boxed = score(tmp_path / "0.png", "--metric", "deletion", "--boxes", tmp_path / "boxes.csv")
    assert boxed.exit_code == 1 and "none of the 1 inputs is named by an annotation" in boxed.output
    boxed = score(tmp_path / "0.png", "--metric", "deletion", "--boxes", tmp_path / "boxes.csv", "-t", "predicted")
    assert boxed.exit_code == 0 and "warning: pointing gave no value for any image" in boxed.output
    alone = CliRunner().invoke(build_app(), ["score", str(tmp_path / "0.png"), "--model", str(model_path), "--metric",
                                             "pointing", "--boxes", str(tmp_path / "boxes.csv"), "-t", "predicted",
                                             "--out", str(tmp_path / "out3")])
    assert alone.exit_code == 1 and "no metric gave a value for any input" in alone.output  # a table of dashes
    twice = score(tmp_path / "0.png", "--boxes", tmp_path / "boxes.csv", "-O", "pointing.boxes=other.csv")
    assert twice.exit_code == 1 and "boxes given twice" in twice.output  # --boxes won without a word
    folder = score(tmp_path / "0.png", "--boxes", tmp_path)
    assert folder.exit_code == 1 and "is a folder; give the JSON or CSV file" in folder.output
    every = score(tmp_path / "0.png", "--metric", "all", "-O", f"pointing.boxes={tmp_path / 'boxes.csv'}",
                  "--target", "predicted")
    assert every.exit_code == 0 and "pointing" in every.output, every.output  # boxes by -O count too
    (tmp_path / "boxes.csv").write_text("image,class,x0,y0,x1,y1\n0.png,dog,0,0,10,10\n")
    annotated = score(tmp_path / "0.png", tmp_path / "1.png", "--metric", "deletion", "--boxes", tmp_path / "boxes.csv",
                      "--json")
    assert annotated.exit_code == 0 and "note: 1 of 2 inputs have no box and were not scored" in annotated.output
    assert '"images": 1' in annotated.output
    nothing = score(tmp_path / "bad.png")
    assert nothing.exit_code == 1 and "none of the 1 inputs could be scored" in nothing.output
    assert "Traceback" not in nothing.output and "internal error" not in nothing.output
    assert "needs at least one metric" in score(tmp_path / "0.png", "--metric", ",").output


def test_python_score_lists_files_it_could_not_decode(tmp_path):
    from PIL import Image

    Image.fromarray(random_images(1, (32, 32))[0]).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_text("not an image")
    table = ScoreTable()
    rows = xconv.score(tiny_convnet(), [tmp_path / "good.png", tmp_path / "bad.png"], ["gradcam"], ["deletion"],
                       table=table, metric_options={"deletion": {"steps": 2}})
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else rows  # a DataFrame when pandas is there
    assert {row["image"] for row in rows} == {str(tmp_path / "good.png")}
    assert [error.path for error in table.skipped] == [str(tmp_path / "bad.png")]
    # Without a table to read them from, the left-out files are said; none decoded is an error, not an empty table.
    with pytest.warns(xconv.XconvWarning, match=r"1 of 2 inputs could not be decoded and are left out, e.g. .*bad.png"):
        xconv.score(tiny_convnet(), [tmp_path / "good.png", tmp_path / "bad.png"], ["gradcam"], ["deletion"],
                    metric_options={"deletion": {"steps": 2}})
    with pytest.raises(xconv.XconvError, match="none of the 1 inputs could be decoded: .*nosuch.jpg: no such file"):
        xconv.score(tiny_convnet(), [tmp_path / "nosuch.jpg"])
    with pytest.raises(xconv.XconvError, match="score needs at least one method"):  # was a TypeError
        xconv.score(tiny_convnet(), [tmp_path / "good.png"], methods=None)
    with pytest.raises(xconv.XconvError, match="metric_options maps each metric to its options"):
        xconv.score(tiny_convnet(), [tmp_path / "good.png"], metric_options={"steps": 0})


def test_python_score_returns_rows_and_fills_the_table():
    model = tiny_convnet()
    table = ScoreTable()
    rows = xconv.score(model, random_images(3, (32, 32)), ["gradcam"], ["deletion"], table=table, batch_size=2,
                       metric_options={"deletion": {"steps": 4}})
    assert len(rows) == 3 * 3  # gradcam, random, center
    assert table.mean_curve("gradcam", "deletion").shape == (5,)
    table = ScoreTable()
    xconv.score(model, random_images(3, (32, 32)), ["gradcam"], ["deletion", "insertion"], table=table,
                metric_options={"deletion": {"steps": 4}, "insertion": {"steps": 4}})
    values = {(row["metric"], row["method"]): row["value"] for row in table.rows if row["image"] == "image 1"}
    assert values["deletion", "random"] == pytest.approx(values["insertion", "random"], abs=1e-12)  # one order
    assert values["deletion", "center"] != values["insertion", "center"]
    with pytest.raises(xconv.XconvError, match="only heatmap methods"):
        xconv.score(model, random_images(1, (32, 32)), ["activations"], ["deletion"])
    by_text = xconv.score(model, random_images(1, (32, 32)), "gradcam", "deletion", metric_options={"deletion": {"steps": 2}})
    assert len(by_text) == 3  # "gradcam" is one method, not seven letters
    with pytest.raises(xconv.XconvError, match="at least one method and one metric"):
        xconv.score(model, random_images(1, (32, 32)), [], ["deletion"])
    with pytest.raises(xconv.XconvError, match="has no option 'stepz'"):
        xconv.score(model, random_images(1, (32, 32)), ["gradcam"], ["deletion"], metric_options={"deletion": {"stepz": 2}})


def test_summary_uses_students_t_and_best_respects_the_direction():
    table = ScoreTable()
    for method, values in (("a", [1.0, 2.0, 3.0]), ("b", [2.0, 3.0, 4.0]), ("random", [0.0, 0.0, 0.0])):
        for value in values:
            for name in ("loss", "gain"):
                table.rows.append({"image": "i", "target": "t", "method": method, "metric": name, "value": value})
    table.higher_is_better.update(loss=False, gain=True)
    row = next(r for r in table.summary() if r["method"] == "a" and r["metric"] == "loss")
    assert row["mean"] == 2.0 and row["ci95"] == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-5)  # t(0.975, 2 dof)
    assert table.best() == {"loss": "a", "gain": "b"}  # the random row, lowest of all, is a reference


def test_mean_curve_skips_an_image_whose_step_is_undefined():
    table = ScoreTable()
    table.curves[("gradcam", "randomization")] = [np.array([[1.0, 0.5, np.nan], [0.0, np.nan, np.nan]])]
    np.testing.assert_array_equal(table.mean_curve("gradcam", "randomization"), [0.5, 0.5, np.nan])


def test_score_table_shows_a_dash_where_a_metric_does_not_apply(capsys):
    from xconv.cli_output import show_score_table

    nan = float("nan")
    summary = [{"method": "gradcam", "metric": "randomization", "mean": 0.25, "ci95": 0.02, "images": 8},
               {"method": "random", "metric": "randomization", "mean": nan, "ci95": nan, "images": 0},
               {"method": "center", "metric": "randomization", "mean": 0.5, "ci95": nan, "images": 1}]
    show_score_table(summary, {"randomization": "gradcam"}, ["gradcam", "random", "center"], ["randomization"],
                     {"randomization": False})
    lines = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in capsys.readouterr().out.splitlines()
             if line.count("│") == 3}
    assert lines == {"gradcam": "0.250 ± 0.020 *", "random": "-", "center": "0.500"}
