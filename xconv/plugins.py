"""Plugin manager: loads every plugin of the ``xconv`` entry-point group, built-ins included.

Each entry point is imported and registered on its own, so a plugin that fails to import, declares an
incompatible API version or raises inside a hook costs only itself: it becomes a one-line warning and
everything else keeps working. ``XCONV_LOAD_PLUGINS=dist1,dist2`` limits loading to those
distributions (for tests and debugging); an empty value loads none.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, field

import pluggy

from xconv import hookspecs

ENTRY_POINT_GROUP = "xconv"


@dataclass
class LoadedPlugins:
    manager: pluggy.PluginManager
    distributions: dict[str, str] = field(default_factory=dict)  # plugin name -> distribution name
    warnings: list[str] = field(default_factory=list)


def new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("xconv")
    manager.add_hookspecs(hookspecs)
    return manager


def load_plugins(allowed: set[str] | None = None) -> LoadedPlugins:
    """Import and register every ``xconv`` entry point, isolating failures."""
    if allowed is None and "XCONV_LOAD_PLUGINS" in os.environ:
        allowed = {name.strip() for name in os.environ["XCONV_LOAD_PLUGINS"].split(",") if name.strip()}
    loaded = LoadedPlugins(new_manager())
    for entry_point in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        distribution = entry_point.dist.name if entry_point.dist else entry_point.value.split(":")[0]
        if allowed is not None and distribution not in allowed:
            continue
        if loaded.manager.has_plugin(entry_point.name):
            continue  # the same distribution seen twice on sys.path
        try:
            plugin = entry_point.load()
            check_api_version(plugin, entry_point.name)
            loaded.manager.register(plugin, name=entry_point.name)
            loaded.distributions[entry_point.name] = distribution
        except Exception as error:  # noqa: BLE001 - any failure of third-party code must stay contained
            loaded.warnings.append(f"plugin {entry_point.name!r} from {distribution} was not loaded: {one_line(error)}")
    try:
        loaded.manager.check_pending()
    except pluggy.PluginValidationError as error:
        loaded.warnings.append(f"plugin hook not recognized: {one_line(error)}")
    return loaded


def check_api_version(plugin, name: str) -> None:
    declared = getattr(plugin, "xconv_api_version", None)
    if declared is None:
        return
    if str(declared).split(".")[0] != hookspecs.API_VERSION.split(".")[0]:
        raise ImportError(
            f"it targets xconv plugin API {declared}, this xconv provides {hookspecs.API_VERSION}; "
            f"upgrade the plugin or xconv"
        )


def call_each(loaded: LoadedPlugins, hook_name: str, make_kwargs) -> None:
    """Call one hook plugin by plugin with ``make_kwargs(plugin_name, distribution)``; failures become warnings."""
    caller = getattr(loaded.manager.hook, hook_name)
    for impl in caller.get_hookimpls():
        distribution = loaded.distributions.get(impl.plugin_name, impl.plugin_name)
        try:
            impl.function(**make_kwargs(impl.plugin_name, distribution))
        except Exception as error:  # noqa: BLE001
            loaded.warnings.append(f"plugin {impl.plugin_name!r} from {distribution} failed in {hook_name}: {one_line(error)}")


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__

