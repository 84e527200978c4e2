"""Name -> class lookups for models, explainers and renderers, with clear errors for unknown names.

The clash rule: when several plugins register the same name, the built-in one (distribution ``xconv``)
keeps the bare name, so default commands never break because of an installed package; between third-party
plugins the bare name is refused, with an error naming both, until one is disabled or uninstalled. Every
entry is also reachable by a qualified name, ``DISTRIBUTION:name`` or ``PLUGIN:name``, so a clashing
plugin stays usable. Clashes are reported as warnings by every command.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from xconv.cancel import Cancelled
from xconv.errors import PluginError, UnknownNameError, XconvError, one_line
from xconv.interfaces import Explainer, Metric, Model, Renderer
from xconv.options import reserved_names
from xconv.plugin_loading import BUILTIN_DISTRIBUTION, KIND_HOOKS, LoadedPlugins, call_each, canonical, load_plugins

KINDS = {"model": Model, "explainer": Explainer, "renderer": Renderer, "metric": Metric}


@dataclass(frozen=True)
class Entry:
    cls: type
    plugin: str
    distribution: str

    @property
    def description(self) -> str:
        return self.cls.description

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION

    def qualified(self, kind_name: str) -> str:
        return f"{self.distribution}:{kind_name}"

    @contextmanager
    def guarded(self, action: str):
        """Run plugin code: an exception that is not an XconvError becomes a one-line PluginError naming
        this plugin and its distribution (the original stays as ``__cause__`` for ``--debug``)."""
        try:
            yield
        except (XconvError, Cancelled):  # Cancelled: the caller abandoned the work, the plugin did not fail
            raise
        except Exception as error:  # noqa: BLE001 - third-party code may raise anything
            raise PluginError(f"{self.cls.name!r} from plugin {self.plugin!r} ({self.distribution}) failed in "
                              f"{action}: {one_line(error)}") from error


class Registry:
    def __init__(self, loaded: LoadedPlugins):
        self.loaded = loaded
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.claims: dict[str, dict[str, list[Entry]]] = {kind: {} for kind in KINDS}
        for kind, hook in KIND_HOOKS.items():
            call_each(loaded, hook, lambda plugin, dist, kind=kind: {"register": self._registrar(kind, plugin, dist)})
        self._settle_clashes()

    def _registrar(self, kind: str, plugin: str, distribution: str):
        base = KINDS[kind]

        def register(cls):
            if not (isinstance(cls, type) and issubclass(cls, base)) or not getattr(cls, "name", ""):
                raise TypeError(f"register() takes a {base.__name__} subclass with a name, got {cls!r}")
            if reserved_names(cls):
                raise TypeError(f"{cls.name}: option names {reserved_names(cls)} are reserved for the base class")
            claimants = self.claims[kind].setdefault(cls.name, [])
            if all(entry.cls is not cls for entry in claimants):
                claimants.append(Entry(cls, plugin, distribution))

        return register

    def _settle_clashes(self) -> None:
        """Bare names: the only claimant, else the built-in one; a third-party tie is left unresolved."""
        for kind, claims in self.claims.items():
            for name, claimants in claims.items():
                builtins = [entry for entry in claimants if entry.builtin]
                if len(claimants) == 1 or len(builtins) == 1:
                    self.entries[kind][name] = (builtins or claimants)[0]

    def clashes(self) -> dict[tuple[str, str], list[Entry]]:
        return {(kind, name): claimants for kind, claims in self.claims.items()
                for name, claimants in claims.items() if len(claimants) > 1}

    @property
    def warnings(self) -> list[str]:
        lines = list(self.loaded.warnings)
        for (kind, name), claimants in self.clashes().items():
            others = [entry for entry in claimants if entry is not self.entries[kind].get(name)]
            reach = ", ".join(entry.qualified(name) for entry in others)
            if name in self.entries[kind]:
                lines.append(f"{kind} name {name!r} is claimed by {', '.join(e.distribution for e in others)} too; "
                             f"the built-in is used, the other is reachable as {reach}")
            else:
                lines.append(f"{kind} name {name!r} is claimed by more than one plugin ({reach}); use a qualified "
                             f"name, or disable one with -p no:NAME or XCONV_DISABLE_PLUGINS")
        return lines

    def entry(self, kind: str, name: str) -> Entry:
        if not isinstance(name, str):
            raise XconvError(f"{kind} names are strings (see xconv list); got {name!r}")
        if ":" in name:
            return self._qualified(kind, name)
        if name in self.entries[kind]:
            return self.entries[kind][name]
        claimants = self.claims[kind].get(name)
        if claimants:
            raise XconvError(
                f"{kind} name {name!r} is claimed by more than one plugin: "
                + " and ".join(f"{e.plugin} ({e.distribution})" for e in claimants)
                + f"; use one of {', '.join(e.qualified(name) for e in claimants)}, or disable one with "
                  f"-p no:NAME (XCONV_DISABLE_PLUGINS=NAME)"
            )
        raise self._unknown(kind, name)

    def _qualified(self, kind: str, qualified: str) -> Entry:
        owner, _, name = qualified.rpartition(":")
        for entry in self.claims[kind].get(name, []):
            if canonical(owner) in (canonical(entry.distribution), canonical(entry.plugin)):
                return entry
        raise self._unknown(kind, qualified)

    def _unknown(self, kind: str, name: str) -> XconvError:
        bare = name.rpartition(":")[2]
        for failure in self.loaded.failures:
            if failure.offers(kind, bare):
                return XconvError(f"{kind} {bare!r} comes from plugin {failure.plugin!r} ({failure.distribution}), "
                                  f"which was not loaded: {failure.reason}")
        notes = [f"plugin {f.plugin!r} ({f.distribution}) failed to load: {f.reason}" for f in self.loaded.failures]
        notes += [f"plugin {plugin!r} ({dist}) is disabled" for plugin, dist in self.loaded.disabled
                  if plugin == bare or not self.loaded.failures]
        return UnknownNameError(kind, name, self.names(kind), note="; ".join(notes[:3]))

    def get(self, kind: str, name: str) -> type:
        return self.entry(kind, name).cls

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def default_renderer(self, kind: str) -> str:
        """The first renderer accepting ``kind``: built-ins first, so an installed plugin never changes the default."""
        names = sorted(self.names("renderer"), key=lambda n: (not self.entry("renderer", n).builtin, n))
        for name in names:
            if kind in self.get("renderer", name).accepts:
                return name
        raise XconvError(f"no installed renderer can draw {kind!r} explanations")

    def find(self, name: str) -> list[tuple[str, Entry]]:
        """Every (kind, entry) registered under ``name`` (bare or qualified), for ``xconv list NAME``."""
        found = []
        for kind in KINDS:
            try:
                found.append((kind, self.entry(kind, name)))
            except XconvError:
                continue
        return found


_disabled: frozenset[str] = frozenset()


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    return Registry(load_plugins(disabled=set(_disabled)))


def disable_plugins(names) -> None:
    """Skip these plugins (entry-point or distribution names) from now on, besides XCONV_DISABLE_PLUGINS."""
    global _disabled
    if frozenset(names) != _disabled:
        _disabled = frozenset(names)
        reset_registry()


def reset_registry() -> None:
    """Forget loaded plugins (tests that install plugins at run time call this)."""
    get_registry.cache_clear()
