"""Plugin loading through the real entry-point path: built-ins, a broken plugin, a name clash, API versions."""

import pytest

import xconv
from xconv.errors import UnknownNameError, XconvError
from xconv.registry import get_registry, reset_registry

EXPLAINER_PLUGIN = """
import xconv

class Echo(xconv.Explainer):
    name = "{name}"
    description = "test explainer"
    kind = "heatmap"

@xconv.hookimpl
def xconv_register_explainers(register):
    register(Echo)
"""


def test_builtins_register_through_entry_points(fresh_registry):
    registry = get_registry()
    assert {"catsdogs", "inceptionv3"} <= set(registry.names("model"))
    assert "gradcam" in registry.names("explainer")
    assert "overlay" in registry.names("renderer")
    assert registry.entries["explainer"]["gradcam"].distribution == "xconv"
    assert registry.warnings == []


def test_third_party_plugin_is_found_with_its_distribution(make_plugin_dist):
    make_plugin_dist("xconv-echo", "fakeplug_echo", EXPLAINER_PLUGIN.format(name="echo"))
    entry = get_registry().entries["explainer"]["echo"]
    assert entry.distribution == "xconv-echo"
    assert entry.cls.description == "test explainer"


def test_broken_plugin_is_one_warning_and_others_still_work(make_plugin_dist):
    make_plugin_dist("xconv-broken", "fakeplug_broken", "raise RuntimeError('boom at import')\n")
    make_plugin_dist("xconv-echo", "fakeplug_echo2", EXPLAINER_PLUGIN.format(name="echo2"))
    registry = get_registry()
    assert "echo2" in registry.names("explainer")
    assert "gradcam" in registry.names("explainer")
    [warning] = [w for w in registry.warnings if "fakeplug_broken" in w]
    assert "xconv-broken" in warning and "boom at import" in warning and "\n" not in warning


def test_plugin_failing_inside_its_hook_is_isolated(make_plugin_dist):
    make_plugin_dist("xconv-badhook", "fakeplug_badhook", """
        import xconv
        @xconv.hookimpl
        def xconv_register_models(register):
            raise ValueError("cannot build")
    """)
    registry = get_registry()
    assert "catsdogs" in registry.names("model")
    assert any("fakeplug_badhook" in w and "cannot build" in w for w in registry.warnings)


def test_name_clash_is_an_error_naming_both(make_plugin_dist):
    make_plugin_dist("xconv-one", "fakeplug_one", EXPLAINER_PLUGIN.format(name="samename"))
    make_plugin_dist("xconv-two", "fakeplug_two", EXPLAINER_PLUGIN.format(name="samename"))
    registry = get_registry()
    with pytest.raises(XconvError) as caught:
        registry.get("explainer", "samename")
    assert "xconv-one" in str(caught.value) and "xconv-two" in str(caught.value)
    assert any("samename" in w for w in registry.warnings)
    assert registry.get("explainer", "gradcam").name == "gradcam"  # other names keep working


def test_clash_with_a_builtin_keeps_the_builtin_and_reports_it(make_plugin_dist):
    make_plugin_dist("xconv-impostor", "fakeplug_impostor", EXPLAINER_PLUGIN.format(name="gradcam"))
    registry = get_registry()
    assert registry.entry("explainer", "gradcam").distribution == "xconv"
    impostor = registry.get("explainer", "xconv-impostor:gradcam")
    assert impostor.description == "test explainer"
    assert registry.get("explainer", "fakeplug_impostor:gradcam") is impostor
    [warning] = [w for w in registry.warnings if "gradcam" in w]
    assert "xconv-impostor:gradcam" in warning and "built-in is used" in warning


def test_third_party_clash_is_reachable_by_qualified_name(make_plugin_dist):
    make_plugin_dist("xconv-one", "fakeplug_q1", EXPLAINER_PLUGIN.format(name="twin"))
    make_plugin_dist("xconv-two", "fakeplug_q2", EXPLAINER_PLUGIN.format(name="twin"))
    registry = get_registry()
    with pytest.raises(XconvError, match="xconv-one:twin"):
        registry.get("explainer", "twin")
    assert registry.entry("explainer", "xconv-two:twin").distribution == "xconv-two"


def test_disabled_plugin_is_not_loaded_and_resolves_a_clash(make_plugin_dist, monkeypatch):
    make_plugin_dist("xconv-one", "fakeplug_d1", EXPLAINER_PLUGIN.format(name="twin2"))
    make_plugin_dist("xconv-two", "fakeplug_d2", EXPLAINER_PLUGIN.format(name="twin2"))
    monkeypatch.setenv("XCONV_DISABLE_PLUGINS", "xconv-one")
    registry = get_registry()
    assert registry.entry("explainer", "twin2").distribution == "xconv-two"
    assert registry.warnings == []
    monkeypatch.setenv("XCONV_DISABLE_PLUGINS", "gradcam")  # an entry-point name works too
    reset_registry()
    with pytest.raises(UnknownNameError, match="disabled"):
        get_registry().get("explainer", "gradcam")


def test_a_name_from_a_refused_plugin_says_why(make_plugin_dist):
    make_plugin_dist("xconv-future", "fakeplug_why", "xconv_api_version = '2.0'\n" + EXPLAINER_PLUGIN.format(name="future2"))
    with pytest.raises(XconvError) as caught:
        get_registry().get("explainer", "future2")
    message = str(caught.value)
    assert "fakeplug_why" in message and "xconv-future" in message and "API 2.0" in message


def test_a_name_from_a_plugin_that_failed_to_import_mentions_the_failure(make_plugin_dist):
    make_plugin_dist("xconv-crash", "fakeplug_crash", "raise ImportError('needs torch')\n")
    with pytest.raises(UnknownNameError) as caught:
        get_registry().get("explainer", "crashy")
    assert "fakeplug_crash" in str(caught.value) and "needs torch" in str(caught.value)


def test_hook_validation_error_keeps_pluggys_whole_reason_on_one_line(make_plugin_dist):
    make_plugin_dist("xconv-sig", "fakeplug_sig", """
        import xconv
        @xconv.hookimpl
        def xconv_register_explainers(register, extra):
            pass
    """)
    [warning] = [w for w in get_registry().warnings if "fakeplug_sig" in w]
    assert "\n" not in warning and "extra" in warning and "xconv-sig" in warning


def test_incompatible_api_version_is_refused_with_a_message(make_plugin_dist):
    make_plugin_dist("xconv-future", "fakeplug_future",
                     "xconv_api_version = '2.0'\n" + EXPLAINER_PLUGIN.format(name="future"))
    registry = get_registry()
    assert "future" not in registry.names("explainer")
    assert any("xconv-future" in w and "2.0" in w and xconv.API_VERSION in w for w in registry.warnings)


def test_compatible_api_version_loads(make_plugin_dist):
    make_plugin_dist("xconv-now", "fakeplug_now", "xconv_api_version = '1.3'\n" + EXPLAINER_PLUGIN.format(name="now"))
    assert "now" in get_registry().names("explainer")


def test_load_plugins_env_limits_distributions(make_plugin_dist, monkeypatch):
    make_plugin_dist("xconv-echo", "fakeplug_echo3", EXPLAINER_PLUGIN.format(name="echo3"))
    monkeypatch.setenv("XCONV_LOAD_PLUGINS", "xconv-echo")
    registry = get_registry()
    assert registry.names("explainer") == ["echo3"]
    assert registry.names("model") == []


def test_unknown_names_list_the_choices(fresh_registry):
    with pytest.raises(UnknownNameError) as caught:
        get_registry().get("explainer", "nope")
    assert "gradcam" in str(caught.value)


def test_register_rejects_non_subclasses(make_plugin_dist):
    make_plugin_dist("xconv-wrong", "fakeplug_wrong", """
        import xconv
        @xconv.hookimpl
        def xconv_register_renderers(register):
            register(object)
    """)
    assert any("fakeplug_wrong" in w and "Renderer subclass" in w for w in get_registry().warnings)


def test_plugin_adds_a_cli_command(make_plugin_dist):
    from typer.testing import CliRunner

    from xconv.cli import build_app

    make_plugin_dist("xconv-hello", "fakeplug_hello", """
        import typer
        import xconv

        @xconv.hookimpl
        def xconv_register_commands(app):
            @app.command("hello-plugin")
            def hello(name: str = typer.Option("world")):
                typer.echo(f"hello {name} from a plugin")
    """)
    result = CliRunner().invoke(build_app(), ["hello-plugin", "--name", "xconv"])
    assert result.exit_code == 0 and "hello xconv from a plugin" in result.output
