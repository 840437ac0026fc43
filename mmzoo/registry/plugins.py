"""Plugin discovery with pluggy, each plugin's failure isolated from the others and from the built-ins.

Installed plugins declare an entry point in the group ``mmzoo`` whose module implements
``mmzoo_register(registry)``; mmzoo's own families are registered the same way, first.

Loading happens once, on the first registry lookup. A plugin that fails to import or to register is rolled
back exactly (every registry is restored to what it held before the plugin ran, overridden entries
included), reported with a warning and listed by ``mmzoo plugins``; every other plugin still loads.
``MMZOO_STRICT_PLUGINS=1`` turns such a failure into a :class:`~mmzoo.errors.PluginError` and leaves nothing
half-loaded. ``MMZOO_DISABLE_PLUGINS=a,b`` skips plugins by entry-point name, distribution name, or
``distribution:entry-point`` for one plugin precisely; a name that matches nothing is warned about.

Two entry points may share a name (a third-party plugin called ``mmca``): both are recorded and loaded, the
later one under the id ``distribution:name``.
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

from mmzoo.errors import MMZooWarning, PluginError
from mmzoo.registry import hookspecs, kinds
from mmzoo.registry.registry import current_plugin, hooks, natural_key

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mmzoo"
BUILTIN_DISTRIBUTION = "mmzoo"


class PluginWarning(MMZooWarning):
    """A plugin failed to load and was skipped, or a plugin setting names nothing."""


@dataclass
class PluginRecord:
    """What ``mmzoo plugins`` shows about one plugin."""

    name: str  # the plugin's id: its entry-point name, or ``distribution:name`` when another plugin has that name
    distribution: str | None
    version: str | None
    status: str  # "loaded", "failed" or "disabled"
    error: str | None = None
    components: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    hooks: list[str] = field(default_factory=list)
    module: str | None = None  # the entry point's module


_manager = pluggy.PluginManager("mmzoo")
_manager.add_hookspecs(hookspecs)
_records: dict[str, PluginRecord] = {}
_loaded = False  # set only once loading has finished: a lookup that sees it reads complete registries
_loading = False  # inside the discovery: only the loading thread (holding the lock) can see it set
_lock = threading.RLock()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _disabled_tokens() -> set[str]:
    return {n.strip() for n in os.environ.get("MMZOO_DISABLE_PLUGINS", "").split(",") if n.strip()}


def _snapshot() -> dict[str, Any]:
    return {kind: reg.snapshot() for kind, reg in kinds.KINDS.items()}


def _restore(snapshot: dict[str, Any]) -> None:
    for kind, reg in kinds.KINDS.items():
        reg.restore(snapshot[kind])


def load_plugins() -> None:
    """Discover and register the installed plugins (once per process; later calls return at once).

    Another thread's lookup during the loading waits for the lock until every plugin is in; the loading
    thread's own lookups (registering triggers some) re-enter the lock and return at once.
    """
    global _loaded, _loading
    if _loaded:
        return
    with _lock:
        if _loaded or _loading:
            return
        _loading = True
        before = _snapshot()
        try:
            _discover()
        except PluginError:  # strict mode: leave nothing half-loaded, and fail again on the next lookup
            _restore(before)
            _records.clear()
            for plugin in list(_manager.get_plugins()):
                _manager.unregister(plugin)
            raise
        except BaseException:
            _loaded = True  # anything else keeps what registered, as before: no second discovery on top of it
            raise
        finally:
            _loading = False
        _loaded = True


def _discover() -> None:
    disabled = _disabled_tokens()
    used: set[str] = set()
    # mmzoo's own families first, so a third-party plugin cannot take a built-in name from under them
    points = sorted(
        metadata.entry_points(group=ENTRY_POINT_GROUP),
        key=lambda e: (not (e.dist and e.dist.name == BUILTIN_DISTRIBUTION), e.dist.name if e.dist else "", e.name),
    )
    for ep in points:
        dist = ep.dist.name if ep.dist else None
        version = ep.dist.version if ep.dist else None
        plugin_id = ep.name if ep.name not in _records else f"{dist}:{ep.name}"
        matches = {ep.name, plugin_id, f"{dist}:{ep.name}"} | ({dist} if dist else set())
        if matches & disabled:
            used |= matches & disabled
            _records[plugin_id] = PluginRecord(plugin_id, dist, version, "disabled", module=ep.value)
            logger.info("plugin %s disabled by MMZOO_DISABLE_PLUGINS", plugin_id)
            continue
        try:
            module = ep.load()
        except Exception as exc:
            _fail(PluginRecord(plugin_id, dist, version, "failed", module=ep.value), exc, "import")
            continue
        _register(module, plugin_id, dist, version, ep.value)
    unknown = sorted(disabled - used)
    if unknown:
        known = ", ".join(
            sorted({r.name for r in _records.values()} | {r.distribution or "" for r in _records.values()})
        )
        warnings.warn(
            f"MMZOO_DISABLE_PLUGINS names {', '.join(map(repr, unknown))}, which match no installed plugin "
            f"(plugins and distributions: {known}). Check the spelling.",
            PluginWarning,
            stacklevel=4,
        )


def register_plugin(plugin: Any, name: str | None = None) -> PluginRecord:
    """Register an in-process plugin object or module (no packaging needed), like pytest's conftest.

    Examples:
        >>> class MyPlugin:
        ...     @mmzoo.plugin.hookimpl
        ...     def mmzoo_register(self, registry):
        ...         registry.fusion.register("my-fusion", MyFusion)
        >>> mmzoo.plugin.register_plugin(MyPlugin(), name="my-plugin")  # doctest: +SKIP
    """
    load_plugins()
    name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    if name in _records and _records[name].status == "loaded":
        raise PluginError(f"A plugin named {name!r} is already loaded; pick another name.")
    return _register(plugin, name, None, None, getattr(plugin, "__name__", type(plugin).__module__))


def _register(plugin: Any, name: str, dist: str | None, version: str | None, module: str | None) -> PluginRecord:
    record = PluginRecord(name, dist, version, "loaded", module=module)
    before = _snapshot()
    token = current_plugin.set(name)
    try:
        _manager.register(plugin, name=name)
        impls = [i for i in _manager.hook.mmzoo_register.get_hookimpls() if i.plugin is plugin]
        if not impls:
            raise PluginError(f"plugin {name!r} implements no mmzoo hook (did you forget @mmzoo.plugin.hookimpl?)")
        record.hooks = ["mmzoo_register"]
        for impl in impls:
            impl.function(**{arg: kinds for arg in impl.argnames})
    except Exception as exc:
        _restore(before)  # exactly what was there: overridden entries come back
        if _manager.is_registered(plugin):
            _manager.unregister(plugin)
        return _fail(record, exc, "register")
    finally:
        current_plugin.reset(token)
    record.components = [
        (kind, e.name) for kind, reg in kinds.KINDS.items() for e in reg.snapshot().values() if e.plugin == name
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
    warnings.warn(message + ". Run `mmzoo plugins` for details.", PluginWarning, stacklevel=4)
    return record


def plugin_records() -> list[PluginRecord]:
    """Every plugin seen, loaded or not, sorted by name."""
    load_plugins()
    return [_records[n] for n in sorted(_records, key=natural_key)]


def plugin_for(kind: str, name: str) -> PluginRecord | None:
    """The plugin that registered ``name`` in ``kind`` (None for entries registered by user code)."""
    plugin = kinds.get_registry(kind).entry(name).plugin
    return _records.get(plugin) if plugin else None


def describe_plugins() -> str:
    """The loaded, failed and disabled plugins, for messages about a name nobody registered."""
    records = [_records[n] for n in sorted(_records, key=natural_key)]
    loaded = [r.name for r in records if r.status == "loaded"]
    failed = [f"{r.name} ({r.error})" for r in records if r.status == "failed"]
    disabled = [r.name for r in records if r.status == "disabled"]
    msg = f" Installed plugins: {', '.join(loaded) or 'none'}."
    if failed:
        msg += f" Plugins that failed to load: {'; '.join(failed)}."
    if disabled:
        msg += f" Plugins disabled by MMZOO_DISABLE_PLUGINS: {', '.join(disabled)}."
    return msg + " Run `mmzoo plugins` to inspect them."


def _reset_for_tests() -> None:
    """Forget every plugin and registration so the next lookup loads afresh (tests only)."""
    global _loaded, _loading
    with _lock:
        for reg in kinds.KINDS.values():
            reg.restore({})
        for plugin in list(_manager.get_plugins()):
            _manager.unregister(plugin)
        _records.clear()
        _loaded = _loading = False


hooks.load = load_plugins
hooks.describe = describe_plugins

__all__ = [
    "PluginRecord",
    "PluginWarning",
    "describe_plugins",
    "load_plugins",
    "plugin_for",
    "plugin_records",
    "register_plugin",
]
