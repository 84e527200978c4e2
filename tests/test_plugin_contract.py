"""The contract a third-party author relies on, driven through the CLI with fake installed distributions:
declared options, layer-less methods, plugin failures as one line, warnings on every command, the clash
rule and the opt-out, and Output records from renderers."""

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

import xconv
from xconv.testing import random_images

PLUGIN = '''
import numpy as np
import xconv


class Occlusion(xconv.Explainer):
    """Layer-less, with a declared option."""
    name = "occlusion-test"
    description = "probability drop when a patch is grayed out"
    kind = "heatmap"
    options = (xconv.Option("patch", int, 16, "patch size in pixels"),)

    def explain(self, images, targets=None):
        inputs = self.model.preprocess(images)
        probabilities = np.asarray(self.model.probabilities(inputs))
        chosen = probabilities.argmax(1) if targets is None else np.asarray(targets)
        maps = np.zeros(images.shape[:3], np.float32)
        maps[:, : self.patch, : self.patch] = 1.0
        return xconv.heatmap_explanation(self, maps, chosen, probabilities, images)


class Legacy(xconv.Explainer):
    """Written before options were declared: no **options in its signature."""
    name = "legacy-test"
    description = "an explainer with a fixed signature"
    kind = "heatmap"

    def __init__(self, model, layer=None):
        super().__init__(model, layer=layer)

    def explain(self, images, targets=None):
        probabilities = self.model.predict(images)
        chosen = probabilities.argmax(1)
        return xconv.heatmap_explanation(self, np.ones(images.shape[:3], np.float32), chosen, probabilities, images)


class Crashing(xconv.Explainer):
    name = "crash-test"
    description = "raises inside explain"
    kind = "heatmap"

    def explain(self, images, targets=None):
        raise ZeroDivisionError("division by zero in the plugin")


class PlainPathRenderer(xconv.Renderer):
    """Returns plain paths, as renderers did before Output records."""
    name = "plain-test"
    description = "writes the heatmap as a gray PNG"
    accepts = ("heatmap",)

    def render(self, explanation, out_dir):
        paths = []
        for index, heatmap in enumerate(explanation.heatmaps):
            paths.append(xconv.save_image(out_dir / f"plain{index}.png",
                                          np.repeat(np.uint8(heatmap * 255)[..., None], 3, axis=-1)))
        return paths


class BrokenRenderer(xconv.Renderer):
    name = "broken-test"
    description = "raises inside render"
    accepts = ("heatmap",)

    def render(self, explanation, out_dir):
        raise KeyError("missing field")


@xconv.hookimpl
def xconv_register_explainers(register):
    register(Occlusion)
    register(Legacy)
    register(Crashing)


@xconv.hookimpl
def xconv_register_renderers(register):
    register(PlainPathRenderer)
    register(BrokenRenderer)
'''

IMPOSTOR = '''
import xconv

class FakeGradCAM(xconv.Explainer):
    name = "gradcam"
    description = "an impostor"
    kind = "heatmap"

class FakeOverlay(xconv.Renderer):
    name = "overlay"
    description = "an impostor"
    accepts = ("heatmap",)

@xconv.hookimpl
def xconv_register_explainers(register):
    register(FakeGradCAM)

@xconv.hookimpl
def xconv_register_renderers(register):
    register(FakeOverlay)
'''

runner = CliRunner()


def invoke(*args, **kwargs):
    from xconv.cli import build_app

    return runner.invoke(build_app(), [str(a) for a in args], **kwargs)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(random_images(1, (40, 48), seed=2)[0]).save(path)
    return path


@pytest.fixture
def plugin(make_plugin_dist):
    make_plugin_dist("xconv-testplug", "fakeplug_contract", PLUGIN)


def one_error_line(result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("xconv: error")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_declared_option_reaches_the_plugin_and_layerless_method_reports(plugin, model_file, photo, tmp_path):
    result = invoke("explain", photo, "--method", "occlusion-test", "--model", model_file, "-O", "patch=4",
                    "--out", tmp_path, "--verbose")
    assert result.exit_code == 0, result.output
    assert "predicted" in result.output and " at " not in result.output.splitlines()[0]  # no layer to name
    [written] = tmp_path.glob("*.png")
    image = xconv.load_image(written)
    assert image.shape == (40, 48, 3)
    result = invoke("explain", photo, "--method", "occlusion-test", "--model", model_file, "--json", "--out", tmp_path)
    record = json.loads(result.output.splitlines()[-1])
    assert record["layer"] is None and record["outputs"] == [str(written)]


def test_list_shows_a_plugins_options(plugin):
    result = invoke("list", "occlusion-test")
    assert result.exit_code == 0, result.output
    assert "xconv-testplug" in result.output and "patch" in result.output and "patch size in pixels" in result.output
    details = json.loads(invoke("list", "occlusion-test", "--json").output)
    assert details[0]["options"][0] == {"name": "patch", "type": "int", "default": 16, "help": "patch size in pixels",
                                         "choices": []}


@pytest.mark.parametrize("args,needles", [
    (["--method", "occlusion-test", "-O", "pach=4"], ["no option 'pach'", "patch=int"]),
    (["--method", "occlusion-test", "-O", "patch=big"], ["option patch of explainer 'occlusion-test' must be int"]),
    (["--method", "occlusion-test", "-O", "patch"], ["NAME=VALUE"]),
    (["--method", "legacy-test", "-O", "steps=5"], ["no option 'steps'"]),
    (["--method", "gradcam", "--filters", "0-3"], ["no option 'filters'"]),
    (["--method", "crash-test"], ["'crash-test' from plugin 'fakeplug_contract' (xconv-testplug) failed in explain",
                                  "ZeroDivisionError: division by zero in the plugin"]),
    (["--renderer", "broken-test"], ["'broken-test' from plugin 'fakeplug_contract' (xconv-testplug) failed in render",
                                     "KeyError"]),
    (["--method", "activations", "--renderer", "overlay"], ["renderer 'overlay' cannot draw activations", "grid"]),
    (["-O", "method.nope=1"], ["explainer 'gradcam' has no option 'nope'"]),
    (["-O", "thing.score=1"], ["the scope must be one of model, method, renderer"]),
    # Bounds the built-ins declare, so a value out of range is refused before the model loads.
    (["--method", "rise", "-O", "keep=1.5"], ["option keep of explainer 'rise' must be at most 1.0"]),
    (["--method", "filters", "-O", "size=8"], ["option size of explainer 'filters' must be at least 16"]),
])
def test_plugin_and_option_mistakes_are_one_line(plugin, model_file, photo, tmp_path, args, needles):
    line = one_error_line(invoke("explain", photo, "--model", model_file, "--out", tmp_path, *args))
    for needle in needles:
        assert needle in line


def test_legacy_explainer_without_options_still_runs(plugin, model_file, photo, tmp_path):
    result = invoke("explain", photo, "--method", "legacy-test", "--model", model_file, "--out", tmp_path)
    assert result.exit_code == 0, result.output


def test_debug_shows_the_plugins_traceback(plugin, model_file, photo, tmp_path, monkeypatch):
    monkeypatch.setenv("XCONV_DEBUG", "1")
    result = invoke("explain", photo, "--method", "crash-test", "--model", model_file, "--out", tmp_path)
    assert result.exit_code == 1
    assert "Traceback" in result.output and "ZeroDivisionError" in result.output and "fakeplug_contract" in result.output


def test_plain_paths_from_a_renderer_are_still_attributed(plugin, model_file, photo, tmp_path):
    result = invoke("explain", photo, "--model", model_file, "--renderer", "plain-test", "--json", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.splitlines()[-1])
    assert record["outputs"] == [str(tmp_path / "plain0.png")]


def test_python_api_validates_options_the_same_way(plugin, model_file, photo):
    model = xconv.load_model(model_file)
    with pytest.raises(xconv.XconvError, match="explainer 'gradcam' has no option 'filtres'; its options: score"):
        xconv.explain(model, [photo], "gradcam", filtres="0-3")
    with pytest.raises(xconv.XconvError, match="option batch_size of explainer 'gradcam' must be int"):
        xconv.explain(model, [photo], "gradcam", batch_size="many")
    with pytest.raises(xconv.PluginError, match="xconv-testplug"):
        xconv.explain(model, [photo], "crash-test")
    explained = xconv.explain(model, [photo], "occlusion-test", patch="4")  # text converts like on the CLI
    assert explained.heatmaps[0, :4, :4].all() and not explained.heatmaps[0, 4:].any()


def test_load_warnings_are_printed_by_every_command(make_plugin_dist, model_file, photo, tmp_path):
    make_plugin_dist("xconv-broken", "fakeplug_loadfail", "raise RuntimeError('boom at import')\n")
    result = invoke("predict", photo, "--model", model_file)
    assert result.exit_code == 0
    warnings = [line for line in result.output.splitlines() if line.startswith("xconv: warning")]
    assert len(warnings) == 1 and "fakeplug_loadfail" in warnings[0] and "boom at import" in warnings[0]
    result = invoke("-p", "no:xconv-broken", "predict", photo, "--model", model_file)
    assert result.exit_code == 0 and "xconv: warning" not in result.output


def test_impostors_of_defaults_do_not_break_the_default_command(make_plugin_dist, model_file, photo, tmp_path):
    make_plugin_dist("xconv-impostor", "fakeplug_impostor2", IMPOSTOR)
    result = invoke("explain", photo, "--model", model_file, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "explained 1 of 1 inputs" in result.output and len(list(tmp_path.glob("photo_gradcam_*.png"))) == 1
    assert result.output.count("xconv: warning") == 2 and "xconv-impostor:gradcam" in result.output
    quiet = invoke("-p", "no:fakeplug_impostor2", "list")
    assert quiet.exit_code == 0 and "warning" not in quiet.output
    usage = invoke("-p", "fakeplug_impostor2", "list")
    assert usage.exit_code == 2 and "write -p no:NAME" in usage.output


def test_a_method_from_a_refused_plugin_says_why(make_plugin_dist, model_file, photo, tmp_path):
    make_plugin_dist("xconv-future", "fakeplug_future2", "xconv_api_version = '2.0'\n" + PLUGIN)
    result = invoke("explain", photo, "--method", "occlusion-test", "--model", model_file, "--out", tmp_path)
    line = one_error_line(result)
    assert "comes from plugin 'fakeplug_future2' (xconv-future), which was not loaded" in line and "API 2.0" in line


def test_the_test_kit_catches_contract_breaks(plugin):
    import fakeplug_contract as plug

    from xconv.testing import check_explainer, check_renderer

    check_explainer(plug.Occlusion, patch=4)
    with pytest.raises(AssertionError, match="TypeError for an unknown option"):
        check_explainer(plug.Legacy)
    with pytest.raises(AssertionError, match="must return xconv.Output"):
        check_renderer(plug.PlainPathRenderer)


def test_the_test_kit_catches_a_second_confidence(plugin):
    """An explainer reporting probabilities without the model's test-time flip disagrees with xconv.predict."""
    import fakeplug_contract as plug
    import numpy as np

    from xconv.testing import check_explainer

    class Unflipped(plug.Occlusion):
        name = "unflipped-test"

        def explain(self, images, targets=None):
            probabilities = np.asarray(self.model.keras_model(self.model.preprocess(images), training=False))
            chosen = probabilities.argmax(1)
            return xconv.heatmap_explanation(self, np.zeros(images.shape[:3], np.float32), chosen, probabilities,
                                             images)

    with pytest.raises(AssertionError, match="one confidence"):
        check_explainer(Unflipped)


EDGE_PLUGIN = '''
import warnings
import xconv


def sizes(value):
    return [int(part) for part in value.split(",")]   # not idempotent: takes text only


class Sizes(xconv.Explainer):
    name = "sizes-test"
    description = "declares an option with a text-only converter"
    kind = "heatmap"
    options = (xconv.Option("sizes", sizes, [1], "comma-separated sizes"),)

    def explain(self, images, targets=None):
        import numpy as np
        warnings.warn("this plugin warns about something the user should see")
        inputs = self.model.preprocess(images)
        chosen, probabilities = self.targets_and_probabilities(inputs, targets)
        maps = np.full(images.shape[:3], float(sum(self.sizes)), np.float32)
        return xconv.heatmap_explanation(self, xconv.unit_maps(maps), chosen, probabilities, images)


class ReturnsNothing(xconv.Renderer):
    name = "nothing-test"
    description = "forgets to return its outputs"
    accepts = ("heatmap",)

    def render(self, explanation, out_dir):
        return None


class Reserved(xconv.Explainer):
    name = "reserved-test"
    description = "declares an option named like the base class's layer"
    kind = "heatmap"
    options = (xconv.Option("layer", str, "x", "hides --layer"),)


@xconv.hookimpl
def xconv_register_explainers(register):
    register(Sizes)
    register(Reserved)


@xconv.hookimpl
def xconv_register_renderers(register):
    register(ReturnsNothing)
'''


@pytest.fixture
def edge_plugin(make_plugin_dist):
    make_plugin_dist("xconv_edge_cases", "fakeplug_edges", EDGE_PLUGIN)


def test_options_are_converted_once_and_plugin_warnings_show(edge_plugin, model_file, photo, tmp_path):
    result = invoke("explain", photo, "--method", "sizes-test", "--model", model_file, "-O", "sizes=1,2",
                    "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "xconv: warning: UserWarning from fakeplug_edges.py" in result.output and "user should see" in result.output
    model = xconv.load_model(model_file)
    assert xconv.explain(model, [photo], "sizes-test", sizes="3,4").heatmaps.max() == 1.0


def test_qualified_names_match_distributions_as_pip_does(edge_plugin, model_file, photo, tmp_path):
    result = invoke("explain", photo, "--method", "xconv-edge-cases:sizes-test", "--model", model_file, "--out",
                    tmp_path)
    assert result.exit_code == 0, result.output


def test_renderer_returning_nothing_is_a_plugin_error(edge_plugin, model_file, photo, tmp_path):
    line = one_error_line(invoke("explain", photo, "--model", model_file, "-r", "nothing-test", "--out", tmp_path))
    assert "'nothing-test' from plugin 'fakeplug_edges' (xconv_edge_cases) failed in render" in line
    assert "returned NoneType" in line


def test_reserved_option_names_are_refused_at_registration(edge_plugin):
    from xconv.registry import get_registry

    registry = get_registry()
    assert "reserved-test" not in registry.names("explainer")
    assert any("reserved-test" in w and "['layer']" in w and "reserved" in w for w in registry.warnings)


def test_a_plugin_named_like_a_builtin_entry_point_does_not_replace_it(make_plugin_dist, model_file, photo, tmp_path):
    make_plugin_dist("xconv-myoverlay", "fakeplug_myoverlay", IMPOSTOR, entry_name="overlay")
    from xconv.registry import get_registry

    registry = get_registry()
    assert registry.entry("renderer", "overlay").distribution == "xconv"
    assert registry.entry("renderer", "xconv-myoverlay:overlay").distribution == "xconv-myoverlay"
    listing = invoke("list", "--json").output
    listed = json.loads(listing[listing.index("["):])  # after the clash warnings
    names = {(row["kind"], row["name"]) for row in listed}
    assert {("renderer", "overlay"), ("renderer", "xconv-myoverlay:overlay"), ("explainer", "gradcam"),
            ("explainer", "xconv-myoverlay:gradcam")} <= names
    result = invoke("explain", photo, "--model", model_file, "--out", tmp_path)
    assert result.exit_code == 0 and len(list(tmp_path.glob("*.png"))) == 1


def test_misspelled_hooks_are_each_reported(make_plugin_dist):
    for index in (1, 2):
        make_plugin_dist(f"xconv-typo{index}", f"fakeplug_typo{index}", """
            import xconv
            @xconv.hookimpl
            def xconv_register_explainer(register):
                pass
        """)
    from xconv.registry import get_registry

    registry = get_registry()
    for index in (1, 2):
        assert any(f"fakeplug_typo{index}" in w and "xconv_register_explainer" in w for w in registry.warnings)
    with pytest.raises(xconv.XconvError, match="fakeplug_typo1.*unknown hook"):
        registry.get("explainer", "fakeplug_typo1")


def test_disabling_on_the_command_line_keeps_the_plugin_from_running(make_plugin_dist, tmp_path):
    import os
    import subprocess
    import sys

    site = make_plugin_dist("xconv-loud", "fakeplug_loud", """
        import typer
        import xconv
        print("fakeplug_loud imported")

        @xconv.hookimpl
        def xconv_register_commands(app):
            @app.command("loud-test")
            def loud():
                typer.echo("loud")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    run = lambda *args: subprocess.run([sys.executable, "-m", "xconv.cli", *args], capture_output=True, text=True,  # noqa: E731
                                       env=env)
    assert "loud" in run("loud-test").stdout
    disabled = run("-p", "no:xconv-loud", "loud-test")
    assert disabled.returncode == 2 and "fakeplug_loud imported" not in disabled.stdout
    typo = run("-p", "no:xconv-lould", "list", "--json")
    assert typo.returncode == 0 and "-p no:xconv-lould: no installed plugin" in typo.stderr


@pytest.mark.parametrize("value,error", [
    (None, "needs a int >= 1 value"), (2.7, "must be int"), (True, "must be int"), ("many", "must be int"),
    (0, "must be at least 1, got 0"),
])
def test_ill_typed_python_values_are_refused(model_file, photo, value, error):
    model = xconv.load_model(model_file)
    with pytest.raises(xconv.XconvError, match=error):
        xconv.explain(model, [photo], "gradcam", batch_size=value)


def test_python_values_that_fit_are_accepted(model_file, photo, tmp_path):
    import numpy as np

    model = xconv.load_model(model_file)
    explained = xconv.explain(model, [photo], "gradcam", batch_size=np.int64(4), score=" logit ")
    [output] = xconv.render(explained, "overlay", tmp_path, grid=np.bool_(True), alpha=np.float32(0.5))
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(output)) == output and copy.deepcopy(output).index == 0


METRIC_PLUGIN = '''
import numpy as np
import xconv


class PeakHeight(xconv.Metric):
    name = "peak-test"
    description = "the map's highest value (a toy metric for the contract test)"
    options = (xconv.Option("scale", float, 1.0, "multiplies the value"),)

    def score(self, images, targets, explanation):
        return xconv.MetricResult(explanation.heatmaps.reshape(len(images), -1).max(axis=1) * self.scale)


@xconv.hookimpl
def xconv_register_metrics(register):
    register(PeakHeight)
'''


def test_a_third_party_metric_registers_and_scores(make_plugin_dist, model_file, photo, tmp_path):
    make_plugin_dist("xconv-peak", "fakeplug_peak", METRIC_PLUGIN)
    from xconv.registry import get_registry
    from xconv.testing import check_metric

    entry = get_registry().entry("metric", "peak-test")
    assert entry.distribution == "xconv-peak"
    check_metric(entry.cls, scale=2.0)
    listed = invoke("list", "peak-test")
    assert listed.exit_code == 0 and "metric peak-test" in listed.output and "scale" in listed.output
    result = invoke("score", photo, "--model", model_file, "--metric", "peak-test", "-O", "peak-test.scale=3",
                    "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    gradcam = next(row for row in report["summary"] if row["method"] == "gradcam")
    assert gradcam["mean"] == pytest.approx(3.0)  # Grad-CAM maps peak at 1


def test_methods_without_a_class_score_do_not_offer_its_option(model_file, photo):
    """Score-CAM weighs channels by probabilities and Eigen-CAM is class-agnostic: -O score would do nothing."""
    from xconv.options import declared_options
    from xconv.registry import get_registry

    registry = get_registry()
    for name in ("scorecam", "eigencam"):
        assert "score" not in declared_options(registry.get("explainer", name))
    assert "score" in declared_options(registry.get("explainer", "ablationcam"))  # a sibling still has it
    model = xconv.load_model(model_file)
    with pytest.raises(xconv.XconvError, match="no option 'score'"):
        xconv.explain(model, [photo], "scorecam", score="logit")
