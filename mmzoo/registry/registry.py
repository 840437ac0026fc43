"""One generic :class:`Registry` type: name -> object for one kind, with attribution and helpful misses.

Registries fill lazily: the first lookup runs the loader that :mod:`mmzoo.registry.plugins` installs (the
installed plugins' hooks). This module knows nothing about plugins beyond that callback.
"""

from __future__ import annotations

import contextvars
import difflib
import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mmzoo.errors import PluginError, UnknownComponentError

T = TypeVar("T")

#: name of the plugin whose hook is running, so that each entry knows where it came from.
current_plugin: contextvars.ContextVar[str | None] = contextvars.ContextVar("mmzoo_current_plugin", default=None)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``model2`` before ``model10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object and the plugin that registered it (None: user code in this process)."""

    name: str
    obj: T
    plugin: str | None


class _Hooks:
    """What the plugin layer plugs in: the loader run before the first lookup, and a description of the
    plugins for messages about names that are not registered."""

    load: Callable[[], None] = staticmethod(lambda: None)
    describe: Callable[[], str] = staticmethod(lambda: "")


hooks = _Hooks()


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
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise PluginError(f"Invalid {self.kind} name {name!r}: use letters, digits, '-', '_' and '.'.")
        if current_plugin.get() is None:
            hooks.load()  # user code: surface a clash with an installed plugin now, not later
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
        hooks.load()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self._missing_message(name)) from None

    def get(self, name: str) -> T:
        """The object registered under ``name``."""
        return self.entry(name).obj

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a case-insensitive glob, in natural order."""
        hooks.load()
        pattern = pattern.lower()
        return sorted((n for n in self._entries if fnmatch.fnmatchcase(n.lower(), pattern)), key=natural_key)

    def entries(self, pattern: str = "*") -> list[Entry[T]]:
        return [self._entries[n] for n in self.names(pattern)]

    def __contains__(self, name: object) -> bool:
        hooks.load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        hooks.load()
        return len(self._entries)

    # -- for the plugin layer: exact snapshots, so a failing plugin leaves everything as it found it ----
    def snapshot(self) -> dict[str, Entry[T]]:
        return dict(self._entries)

    def restore(self, snapshot: dict[str, Entry[T]]) -> None:
        self._entries = dict(snapshot)

    def _missing_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        msg = f"No {self.kind} named {name!r}.{hint} Known: {', '.join(self.names()) or 'none'}."
        return msg + hooks.describe()


__all__ = ["Entry", "Registry", "current_plugin", "hooks", "natural_key"]
