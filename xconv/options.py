"""Declared plugin options: each model, explainer and renderer states its options once, here is the rest.

A plugin class lists :class:`Option` objects in its ``options`` class attribute; subclasses add to their
parents' list (a subclass may redeclare a name to change its default). From that one declaration come the
CLI's generic ``-O NAME=VALUE``, the option table of ``xconv list NAME``, and the validation of Python
keyword arguments: an unknown or ill-typed option is one line naming the valid ones, never silently dropped.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from xconv.errors import XconvError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")

#: Names the base classes use for themselves; an option may not take them.
RESERVED = frozenset({"model", "layer", "options", "name", "kind", "description", "needs_images", "accepts",
                      "explain", "render", "load", "trainable", "higher_is_better"})

#: Set while xconv constructs a plugin with options it has already converted, so they are not converted twice.
_already_resolved = contextvars.ContextVar("xconv_options_already_resolved", default=False)


@dataclass(frozen=True)
class Option:
    """One option: ``type`` is int, float, bool, str, or a converter ``value -> value`` raising ValueError.

    ``choices`` limits the (converted) value to a fixed set, ``minimum`` and ``maximum`` bound it (a count of
    steps or copies: 0 would be an empty loop or a division by zero deep inside; a blend weight: 0-1); ``default`` is used when the
    option is not given (it is not converted, so ``None`` can mean "decide later").
    """

    name: str
    type: type | Callable[[Any], Any] = str
    default: Any = None
    help: str = ""
    choices: tuple = ()
    minimum: int | float | None = None
    maximum: int | float | None = None

    @property
    def type_name(self) -> str:
        if self.choices:
            return "|".join(map(str, self.choices)) if len(self.choices) <= 4 else "choice"
        name = getattr(self.type, "type_name", None) or getattr(self.type, "__name__", "value")
        if self.minimum is not None and self.maximum is not None:
            return f"{name} {self.minimum}-{self.maximum}"
        return name if self.minimum is None else f"{name} >= {self.minimum}"

    def convert(self, value, owner: str):
        """The value as this option's type; text (from the CLI) is parsed, Python values are checked."""
        if value is None:
            if self.default is None:
                return None
            raise XconvError(f"option {self.name} of {owner} needs a {self.type_name} value (default {self.default})")
        try:
            converted = self._convert(value)
        except (TypeError, ValueError) as error:
            detail = f" ({error})" if str(error) and self.type not in (int, float, bool) else ""
            raise XconvError(f"option {self.name} of {owner} must be {self.type_name}, got {value!r}{detail}") from None
        if self.choices and converted not in self.choices:
            raise XconvError(f"option {self.name} of {owner} must be one of {', '.join(map(str, self.choices))}; "
                             f"got {value!r}")
        if self.minimum is not None and converted < self.minimum:
            raise XconvError(f"option {self.name} of {owner} must be at least {self.minimum}, got {value!r}")
        if self.maximum is not None and converted > self.maximum:
            raise XconvError(f"option {self.name} of {owner} must be at most {self.maximum}, got {value!r}")
        return converted

    def _convert(self, value):
        if isinstance(value, str):
            value = value.strip()
        if self.type is bool:
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            if isinstance(value, str) and value.lower() in TRUE_WORDS + FALSE_WORDS:
                return value.lower() in TRUE_WORDS
            raise ValueError
        if self.type is int:
            if isinstance(value, (bool, np.bool_)):
                raise ValueError
            number = int(value)
            if not isinstance(value, str) and number != value:  # 2.7 is not an int; 2.0 is
                raise ValueError
            return number
        if self.type is float:
            if isinstance(value, (bool, np.bool_)):
                raise ValueError
            number = float(value)
            if not np.isfinite(number):  # NaN passes every bound check, then blanks the result
                raise ValueError
            return number
        if self.type is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        return self.type(value)


def declared_options(cls) -> dict[str, Option]:
    """Every option of a plugin class, parents' first, a subclass's redeclaration winning, less the names a
    class lists in ``dropped_options`` (an inherited option it has no use for: Score-CAM takes no gradient,
    so the class score's convention means nothing to it)."""
    merged: dict[str, Option] = {}
    for klass in reversed(cls.__mro__):
        for option in klass.__dict__.get("options", ()) or ():
            merged[option.name] = option
        for name in klass.__dict__.get("dropped_options", ()) or ():
            merged.pop(name, None)
    return merged


def normalize(name: str) -> str:
    """``step-size`` and ``step_size`` name the same option."""
    return name.strip().replace("-", "_")


def owner_label(cls) -> str:
    kind = next((base.__name__.lower() for base in cls.__mro__ if base.__module__ == "xconv.interfaces"), "plugin")
    return f"{kind} {getattr(cls, 'name', '') or cls.__name__!r}"


def describe_choices(cls) -> str:
    declared = declared_options(cls)
    return ", ".join(f"{o.name}={o.type_name}" for o in declared.values()) if declared else "none"


def resolve_options(cls, given: dict[str, Any]) -> dict[str, Any]:
    """All declared options of ``cls`` with their defaults, overridden by the converted ``given`` values."""
    declared = declared_options(cls)
    owner = owner_label(cls)
    resolved = {name: option.default for name, option in declared.items()}
    trusted = _already_resolved.get()
    for raw_name, value in given.items():
        name = normalize(raw_name)
        if name not in declared:
            raise XconvError(f"{owner} has no option {raw_name!r}; its options: {describe_choices(cls)}")
        resolved[name] = value if trusted else declared[name].convert(value, owner)
    return resolved


@contextlib.contextmanager
def already_resolved():
    """Construct plugins with values :func:`resolve_options` returned: the base classes keep them as they are
    (a converter need not accept its own output)."""
    token = _already_resolved.set(True)
    try:
        yield
    finally:
        _already_resolved.reset(token)


def reserved_names(cls) -> list[str]:
    """Declared option names that would hide what the base classes set (``layer``, ``model``, ...)."""
    return sorted(set(declared_options(cls)) & RESERVED)


def parse_assignments(pairs: list[str] | None) -> list[tuple[str | None, str, str]]:
    """``["renderer.colormap=viridis", "steps=5"]`` -> [(scope or None, name, text value), ...]."""
    parsed = []
    for pair in pairs or []:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise XconvError(f"-O {pair!r}: write options as NAME=VALUE, e.g. -O steps=60")
        scope, dot, bare = name.partition(".")
        parsed.append((scope.strip(), normalize(bare), value) if dot else (None, normalize(name), value))
    return parsed


def route_options(pairs: list[tuple[str | None, str, str]], components: dict[str, type],
                  groups: dict[str, list[str]] | None = None) -> dict[str, dict]:
    """Send each option to the components that declare it.

    ``components`` maps a scope (``"model"``, ``"method"``, ``"renderer"``, or a method's name when several
    run together) to a plugin class; ``groups`` names sets of scopes (``"method"``: every method). An option
    qualified with a scope (``renderer.colormap=...``) goes to that component, or to the members of that
    group that declare it; an unqualified one to every component that declares it. An option nobody
    declares is an error listing every valid name.
    """
    groups = groups or {}
    given: dict[tuple, str] = {}
    for scope, name, value in pairs:  # the same option twice: the last one won without a word
        if given.setdefault((scope, name), value) != value:
            raise XconvError(f"-O {scope + '.' if scope else ''}{name} given twice, as {given[(scope, name)]!r} and "
                             f"{value!r}; give it once")
    routed: dict[str, dict] = {scope: {} for scope in components}
    for scope, name, value in pairs:
        if scope is None:
            targets = [s for s, cls in components.items() if name in declared_options(cls)]
        elif scope in groups:
            targets = [s for s in groups[scope] if name in declared_options(components[s])]
        elif scope in components:
            targets = [scope]
        else:
            raise XconvError(f"-O {scope}.{name}: the scope must be one of {', '.join([*components, *groups])}")
        if not targets:
            valid = "; ".join(f"{owner_label(cls)}: {describe_choices(cls)}" for cls in components.values())
            raise XconvError(f"no option {name!r} here; valid options: {valid}")
        for target in targets:
            routed[target][name] = value
    return routed
