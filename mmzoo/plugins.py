"""Plugin discovery with pluggy, one plugin's failure isolated from the others.

Installed plugins declare an entry point in the group ``mmzoo`` whose module implements
``mmzoo_register(registry)``. mmzoo's own families (MMCA, VSE++) are registered the same way.

Loading happens once, on the first registry lookup. A plugin that fails to import or to register
is rolled back (none of its components stay registered), reported with a warning and listed by
``mmzoo plugins``; every other plugin still loads. ``MMZOO_STRICT_PLUGINS=1`` turns such a failure
into a :class:`~mmzoo.errors.PluginError`; ``MMZOO_DISABLE_PLUGINS=a,b`` skips plugins by entry-point
or distribution name.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from mmzoo import hookspecs, registry
from mmzoo.errors import PluginError

logger = logging.getLogger("mmzoo.plugins")

ENTRY_POINT_GROUP = "mmzoo"


class PluginWarning(UserWarning):
    """A plugin failed to load and was skipped."""


@dataclass
class PluginRecord:
    """What ``mmzoo plugins`` shows about one plugin."""

    name: str
    distribution: str | None
    version: str | None
    status: str  # "loaded", "failed" or "disabled"
    error: str | None = None
    components: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    hooks: list[str] = field(default_factory=list)


_manager = pluggy.PluginManager("mmzoo")
_manager.add_hookspecs(hookspecs)
_records: dict[str, PluginRecord] = {}
_loaded = False
_lock = threading.RLock()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def load_plugins() -> None:
    """Discover and register the installed plugins (once per process; later calls return at once)."""
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        _loaded = True  # set first: registering triggers lookups that must not recurse
        disabled = {n.strip() for n in os.environ.get("MMZOO_DISABLE_PLUGINS", "").split(",") if n.strip()}
        # mmzoo's own families first, so a third-party plugin cannot take a built-in name from under them
        builtin_first = sorted(
            metadata.entry_points(group=ENTRY_POINT_GROUP),
            key=lambda e: (not (e.dist and e.dist.name == "mmzoo"), e.name),
        )
        for ep in builtin_first:
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            if ep.name in disabled or (dist and dist in disabled):
                _records[ep.name] = PluginRecord(ep.name, dist, version, "disabled")
                logger.info("plugin %s disabled by MMZOO_DISABLE_PLUGINS", ep.name)
                continue
            if ep.name in _records:
                continue  # registered in-process before discovery ran
            try:
                module = ep.load()
            except Exception as exc:
                _fail(PluginRecord(ep.name, dist, version, "failed"), exc, "import")
                continue
            _register(module, ep.name, dist, version)


def register_plugin(plugin: Any, name: str | None = None) -> PluginRecord:
    """Register an in-process plugin object or module (no packaging needed), like pytest's conftest.

    Example:
        >>> class MyPlugin:
        ...     @mmzoo.hookimpl
        ...     def mmzoo_register(self, registry):
        ...         registry.fusion.register("my-fusion", MyFusion)
        >>> mmzoo.register_plugin(MyPlugin(), name="my-plugin")  # doctest: +SKIP
    """
    load_plugins()
    name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    if name in _records and _records[name].status == "loaded":
        raise PluginError(f"A plugin named {name!r} is already loaded; pick another name.")
    return _register(plugin, name, None, None)


def _register(plugin: Any, name: str, dist: str | None, version: str | None) -> PluginRecord:
    record = PluginRecord(name, dist, version, "loaded")
    token = registry.current_plugin.set(name)
    try:
        _manager.register(plugin, name=name)
        impls = [i for i in _manager.hook.mmzoo_register.get_hookimpls() if i.plugin is plugin]
        if not impls:
            raise PluginError(f"plugin {name!r} implements no mmzoo hook (did you forget @mmzoo.hookimpl?)")
        record.hooks = ["mmzoo_register"]
        for impl in impls:
            impl.function(**{arg: registry for arg in impl.argnames})
    except Exception as exc:
        for reg in registry.KINDS.values():
            reg._drop_plugin(name)
        if _manager.is_registered(plugin):
            _manager.unregister(plugin)
        return _fail(record, exc, "register")
    finally:
        registry.current_plugin.reset(token)
    record.components = [
        (kind, e.name) for kind, reg in registry.KINDS.items() for e in reg.entries() if e.plugin == name
    ]
    _records[name] = record
    logger.debug("plugin %s loaded: %s", name, record.components)
    return record


def _fail(record: PluginRecord, exc: BaseException, stage: str) -> PluginRecord:
    record.status = "failed"
    record.error = f"{type(exc).__name__}: {exc}"
    _records[record.name] = record
    message = f"mmzoo plugin {record.name!r} failed to {stage} and was skipped: {record.error}"
    if _flag("MMZOO_STRICT_PLUGINS"):
        raise PluginError(message + " (MMZOO_STRICT_PLUGINS=1 makes this an error)") from exc
    logger.debug("".join(traceback.format_exception(exc)))
    warnings.warn(message + ". Run `mmzoo plugins` for details.", PluginWarning, stacklevel=3)
    return record


def plugin_records() -> list[PluginRecord]:
    """Every plugin seen, loaded or not, sorted by name."""
    load_plugins()
    return [_records[n] for n in sorted(_records, key=registry.natural_key)]


def plugin_for(kind: str, name: str) -> PluginRecord | None:
    """The plugin that registered ``name`` in ``kind`` (None for components registered by user code)."""
    plugin = registry.get_registry(kind).entry(name).plugin
    return _records.get(plugin) if plugin else None


def _reset_for_tests() -> None:
    """Forget every plugin and registration so the next lookup loads afresh (tests only)."""
    global _loaded
    with _lock:
        for reg in registry.KINDS.values():
            reg._entries.clear()
        for plugin in list(_manager.get_plugins()):
            _manager.unregister(plugin)
        _records.clear()
        _loaded = False


__all__ = ["PluginRecord", "PluginWarning", "load_plugins", "plugin_for", "plugin_records", "register_plugin"]
