"""Name -> class lookups for models, explainers and renderers, with clear errors for unknown names.

Two plugins claiming one name is an error naming both; it is raised when that name is used, so the
other names keep working, and ``xconv list`` shows it as a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from xconv.errors import UnknownNameError, XconvError
from xconv.plugins import LoadedPlugins, call_each, load_plugins
from xconv.types import Explainer, Model, Renderer

KINDS = {"model": Model, "explainer": Explainer, "renderer": Renderer}


@dataclass(frozen=True)
class Entry:
    cls: type
    plugin: str
    distribution: str

    @property
    def description(self) -> str:
        return self.cls.description


class Registry:
    def __init__(self, loaded: LoadedPlugins):
        self.loaded = loaded
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.clashes: dict[tuple[str, str], list[Entry]] = {}
        for kind in KINDS:
            call_each(loaded, f"xconv_register_{kind}s",
                      lambda plugin, dist, kind=kind: {"register": self._registrar(kind, plugin, dist)})

    @property
    def warnings(self) -> list[str]:
        clash_lines = [
            f"{kind} name {name!r} is claimed by more than one plugin: "
            + " and ".join(f"{e.plugin} ({e.distribution})" for e in entries)
            for (kind, name), entries in self.clashes.items()
        ]
        return self.loaded.warnings + clash_lines

    def _registrar(self, kind: str, plugin: str, distribution: str):
        base = KINDS[kind]

        def register(cls):
            if not (isinstance(cls, type) and issubclass(cls, base)) or not getattr(cls, "name", ""):
                raise TypeError(f"register() takes a {base.__name__} subclass with a name, got {cls!r}")
            entry = Entry(cls, plugin, distribution)
            existing = self.entries[kind].get(cls.name)
            if existing is not None and existing.cls is not cls:
                self.clashes.setdefault((kind, cls.name), [existing]).append(entry)
            else:
                self.entries[kind][cls.name] = entry

        return register

    def get(self, kind: str, name: str) -> type:
        if (kind, name) in self.clashes:
            entries = self.clashes[(kind, name)]
            raise XconvError(
                f"{kind} name {name!r} is claimed by more than one plugin: "
                + " and ".join(f"{e.plugin} ({e.distribution})" for e in entries)
                + "; uninstall one, or limit plugins with XCONV_LOAD_PLUGINS"
            )
        try:
            return self.entries[kind][name].cls
        except KeyError:
            raise UnknownNameError(kind, name, sorted(self.entries[kind])) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    return Registry(load_plugins())


def reset_registry() -> None:
    """Forget loaded plugins (tests that install plugins at run time call this)."""
    get_registry.cache_clear()
