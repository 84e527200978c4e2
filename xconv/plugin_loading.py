"""Plugin manager: loads every plugin of the ``xconv`` entry-point group, built-ins included.

Each entry point is imported and registered on its own, so a plugin that fails to import, declares an
incompatible API version or raises inside a hook costs only itself: it becomes a one-line warning and
everything else keeps working. The failure is remembered, so asking for a name such a plugin provides
says why it is missing. ``XCONV_LOAD_PLUGINS=dist1,dist2`` limits loading to those distributions (for
tests and debugging; an empty value loads none); ``XCONV_DISABLE_PLUGINS=name,...`` (or the CLI's
``-p no:NAME``) skips plugins by entry-point or distribution name.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from dataclasses import dataclass, field

import pluggy

from xconv import hookspecs
from xconv.errors import one_line

ENTRY_POINT_GROUP = "xconv"
BUILTIN_DISTRIBUTION = "xconv"
KIND_HOOKS = {"model": "xconv_register_models", "explainer": "xconv_register_explainers",
              "renderer": "xconv_register_renderers", "metric": "xconv_register_metrics"}


@dataclass
class Failure:
    """A plugin that did not load, why, and (when it could still be asked) the names it would provide."""

    plugin: str
    distribution: str
    reason: str
    provides: dict[str, set[str]] = field(default_factory=dict)

    def offers(self, kind: str, name: str) -> bool:
        return name in self.provides.get(kind, ()) or (not self.provides and name == self.plugin)


@dataclass
class LoadedPlugins:
    manager: pluggy.PluginManager
    distributions: dict[str, str] = field(default_factory=dict)  # plugin name -> distribution name
    warnings: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    disabled: list[tuple[str, str]] = field(default_factory=list)  # (plugin, distribution) skipped on request

    def fail(self, plugin: str, distribution: str, reason: str, message: str, provides=None) -> None:
        self.failures.append(Failure(plugin, distribution, reason, provides or {}))
        self.warnings.append(message)


def new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("xconv")
    manager.add_hookspecs(hookspecs)
    return manager


def names_from_env(variable: str) -> set[str] | None:
    if variable not in os.environ:
        return None
    return {name.strip() for name in os.environ[variable].split(",") if name.strip()}


def canonical(name: str) -> str:
    """Distribution names compare as pip compares them: case and -, _, . do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def load_plugins(allowed: set[str] | None = None, disabled: set[str] | None = None) -> LoadedPlugins:
    """Import and register every ``xconv`` entry point, built-ins first, isolating failures."""
    allowed = allowed if allowed is not None else names_from_env("XCONV_LOAD_PLUGINS")
    disabled = {canonical(n) for n in (disabled or set()) | (names_from_env("XCONV_DISABLE_PLUGINS") or set())}
    loaded = LoadedPlugins(new_manager())
    seen: set[tuple[str, str]] = set()
    for entry_point in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                              key=lambda e: (distribution_of(e) != BUILTIN_DISTRIBUTION, e.name)):
        distribution = distribution_of(entry_point)
        if allowed is not None and canonical(distribution) not in {canonical(a) for a in allowed}:
            continue
        if canonical(entry_point.name) in disabled or canonical(distribution) in disabled:
            loaded.disabled.append((entry_point.name, distribution))
            continue
        if (entry_point.name, distribution) in seen:
            continue  # the same distribution seen twice on sys.path
        seen.add((entry_point.name, distribution))
        # Another distribution's entry point of the same name must not replace this one: qualify it.
        name = entry_point.name
        if loaded.manager.has_plugin(name):
            name = f"{distribution}:{name}"
        register_entry_point(loaded, entry_point, distribution, name)
    check_hook_names(loaded)
    return loaded


def distribution_of(entry_point) -> str:
    return entry_point.dist.name if entry_point.dist else entry_point.value.split(":")[0]


def check_hook_names(loaded: LoadedPlugins) -> None:
    """Every plugin with a misspelled or unknown ``xconv_`` hook is refused and reported, not only the first."""
    while True:
        try:
            loaded.manager.check_pending()
            return
        except pluggy.PluginValidationError as error:
            plugin = error.plugin
            name = loaded.manager.get_name(plugin)
            distribution = loaded.distributions.pop(name, name)
            loaded.manager.unregister(plugin)
            loaded.fail(name, distribution, f"unknown hook: {one_line(error)}",
                        f"plugin {name!r} from {distribution} was not loaded: it has a hook xconv does not know: "
                        f"{one_line(error)}")


def register_entry_point(loaded: LoadedPlugins, entry_point, distribution: str, name: str) -> None:
    try:
        plugin = entry_point.load()
    except Exception as error:  # noqa: BLE001 - any failure of third-party code must stay contained
        loaded.fail(name, distribution, f"import failed: {one_line(error)}",
                    f"plugin {name!r} from {distribution} was not loaded: {one_line(error)}")
        return
    refusal = api_version_refusal(plugin)
    if refusal:
        loaded.fail(name, distribution, refusal, f"plugin {name!r} from {distribution} was not loaded: {refusal}",
                    provides=names_offered(plugin))
        return
    try:
        loaded.manager.register(plugin, name=name)
        loaded.distributions[name] = distribution
    except Exception as error:  # noqa: BLE001 - pluggy validates hook signatures here
        loaded.fail(name, distribution, f"invalid hook: {one_line(error)}",
                    f"plugin {name!r} from {distribution} was not loaded: {one_line(error)}")


def api_version_refusal(plugin) -> str | None:
    declared = getattr(plugin, "xconv_api_version", None)
    if declared is None or str(declared).split(".")[0] == hookspecs.API_VERSION.split(".")[0]:
        return None
    return (f"it targets xconv plugin API {declared}, this xconv provides {hookspecs.API_VERSION}; "
            f"upgrade the plugin or xconv")


def names_offered(plugin) -> dict[str, set[str]]:
    """The names a refused plugin's register hooks would claim, so a request for one can say why it is missing."""
    offered: dict[str, set[str]] = {}
    for kind, hook in KIND_HOOKS.items():
        function = getattr(plugin, hook, None)
        if not callable(function):
            continue
        names = offered.setdefault(kind, set())
        try:
            function(register=lambda cls, names=names: names.add(getattr(cls, "name", "")))
        except Exception:  # noqa: BLE001 - best effort: the plugin is refused anyway
            pass
    return offered


def call_each(loaded: LoadedPlugins, hook_name: str, make_kwargs) -> None:
    """Call one hook plugin by plugin with ``make_kwargs(plugin_name, distribution)``; failures become warnings."""
    caller = getattr(loaded.manager.hook, hook_name)
    for impl in caller.get_hookimpls():
        distribution = loaded.distributions.get(impl.plugin_name, impl.plugin_name)
        try:
            impl.function(**make_kwargs(impl.plugin_name, distribution))
        except Exception as error:  # noqa: BLE001
            loaded.fail(impl.plugin_name, distribution, f"{hook_name} failed: {one_line(error)}",
                        f"plugin {impl.plugin_name!r} from {distribution} failed in {hook_name}: {one_line(error)}")
