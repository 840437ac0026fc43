"""One generic :class:`Registry` type and one instance per kind of component.

The module itself is what plugins receive in their hook, so registering reads naturally::

    @mmzoo.hookimpl
    def mmzoo_register(registry):
        registry.fusion.register("my-fusion", MyFusion)

Registries fill lazily: the first lookup loads the installed plugins (see :mod:`mmzoo.plugins`).
"""

from __future__ import annotations

import contextvars
import difflib
import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mmzoo.config import Recipe
from mmzoo.contracts import Component, ComponentConfig, FusionBlock, Loss, TextEncoder, VisualEncoder
from mmzoo.errors import PluginError, UnknownComponentError

T = TypeVar("T")

#: name of the plugin whose hook is running, so that each entry knows where it came from.
current_plugin: contextvars.ContextVar[str | None] = contextvars.ContextVar("mmzoo_current_plugin", default=None)


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``model2`` before ``model10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object and the plugin that registered it (None: user code in this process)."""

    name: str
    obj: T
    plugin: str | None


class Registry(Generic[T]):
    """Name -> object map for one kind, with validation, attribution, glob listing and helpful misses."""

    def __init__(self, kind: str, validate: Callable[[str, Any], T]) -> None:
        self.kind = kind
        self._validate = validate
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, obj: Any = None, *, override: bool = False) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator.

        Raises:
            PluginError: the name is taken and ``override`` is False, or ``obj`` is not of this kind.
        """
        if obj is None:
            return lambda o: self.register(name, o, override=override) or o
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
            raise PluginError(f"Invalid {self.kind} name {name!r}: use letters, digits, '-', '_' and '.'.")
        if current_plugin.get() is None:
            _ensure_plugins()  # user code: surface a clash with an installed plugin now, not later
        if name in self._entries and not override:
            owner = self._entries[name].plugin or "user code"
            raise PluginError(
                f"{self.kind} {name!r} is already registered (by {owner}). "
                "Choose another name, or pass override=True to replace it on purpose."
            )
        self._entries[name] = Entry(name, self._validate(name, obj), current_plugin.get())
        return self._entries[name].obj

    def unregister(self, name: str) -> None:
        """Remove ``name``; unknown names raise :class:`UnknownComponentError`."""
        self.entry(name)
        del self._entries[name]

    def entry(self, name: str) -> Entry[T]:
        """The entry for ``name``, with the plugin that registered it."""
        _ensure_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self._missing_message(name)) from None

    def get(self, name: str) -> T:
        """The object registered under ``name``."""
        return self.entry(name).obj

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a case-insensitive glob, in natural order."""
        _ensure_plugins()
        pattern = pattern.lower()
        return sorted((n for n in self._entries if fnmatch.fnmatchcase(n.lower(), pattern)), key=natural_key)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        _ensure_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        _ensure_plugins()
        return len(self._entries)

    def _drop_plugin(self, plugin: str) -> None:
        for name in [n for n, e in self._entries.items() if e.plugin == plugin]:
            del self._entries[name]

    def _missing_message(self, name: str) -> str:
        from mmzoo import plugins

        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        loaded = [r.name for r in plugins.plugin_records() if r.status == "loaded"]
        failed = [f"{r.name} ({r.error})" for r in plugins.plugin_records() if r.status == "failed"]
        msg = f"No {self.kind} named {name!r}.{hint} Known: {', '.join(self.names()) or 'none'}."
        msg += f" Installed plugins: {', '.join(loaded) or 'none'}."
        if failed:
            msg += f" Plugins that failed to load: {'; '.join(failed)}."
        return msg + " Run `mmzoo plugins` to inspect them."


def _component_validator(base: type[Component]) -> Callable[[str, Any], type[Component]]:
    def validate(name: str, obj: Any) -> type[Component]:
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise PluginError(f"{name!r} must be a subclass of mmzoo.{base.__name__}; got {obj!r}.")
        if not (isinstance(obj.Config, type) and issubclass(obj.Config, ComponentConfig)):
            raise PluginError(f"{obj.__name__}.Config must subclass mmzoo.ComponentConfig.")
        return obj

    return validate


def _recipe_validator(name: str, obj: Any) -> Recipe:
    if isinstance(obj, dict):
        obj = Recipe(config=obj)
    if not isinstance(obj, Recipe):
        raise PluginError(f"model {name!r} must be a mmzoo.Recipe or a config dict; got {type(obj).__name__}.")
    return obj


visual_encoder: Registry[type[VisualEncoder]] = Registry("visual_encoder", _component_validator(VisualEncoder))
text_encoder: Registry[type[TextEncoder]] = Registry("text_encoder", _component_validator(TextEncoder))
fusion: Registry[type[FusionBlock]] = Registry("fusion", _component_validator(FusionBlock))
loss: Registry[type[Loss]] = Registry("loss", _component_validator(Loss))
model: Registry[Recipe] = Registry("model", _recipe_validator)

#: kind name -> registry, in the order the config sections use.
KINDS: dict[str, Registry[Any]] = {
    "visual_encoder": visual_encoder,
    "text_encoder": text_encoder,
    "fusion": fusion,
    "loss": loss,
    "model": model,
}


def get_registry(kind: str) -> Registry[Any]:
    """The registry of ``kind`` (one of ``KINDS``)."""
    try:
        return KINDS[kind]
    except KeyError:
        raise UnknownComponentError(f"No component kind {kind!r}; kinds are {', '.join(KINDS)}.") from None


def _ensure_plugins() -> None:
    from mmzoo import plugins

    plugins.load_plugins()
