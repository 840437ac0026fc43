"""Lazy faces: a package's public names resolved on first use, and renamed ones kept for a release with a warning.

``import mmzoo`` and the ``mmzoo`` command's parser stay free of torch this way (``mmzoo --version`` prints in
a fraction of a second); the first use of a name imports the floor it lives on. Python calls a module's
``__getattr__`` only for names it does not have (PEP 562), so a resolved name is stored on the module and costs
nothing the second time. Deprecated names are resolved on every use, so each use site gets its warning once.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_face(
    module_name: str,
    namespace: dict[str, Any],
    exports: Mapping[str, str],
    deprecated: Mapping[str, str] | None = None,
    submodules: Iterable[str] = (),
    package: bool = False,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a face module.

    Args:
        module_name: the face's own name (``"mmzoo"``), for messages.
        namespace: the face's ``globals()``; resolved public names are stored there.
        exports: public name -> the module that defines it (``"create_model": "mmzoo.factory"``).
        deprecated: old name -> its new home (``"Fragments": "mmzoo.plugin"``); the object is taken from there,
            with a ``DeprecationWarning`` naming the new spelling.
        submodules: sub-packages reachable as attributes (``mmzoo.scoring``), imported on first use, and listed by
            ``dir``.
        package: the face is a package: any of its modules is reachable as an attribute, listed or not.
    """
    deprecated = dict(deprecated or {})
    submodules = frozenset(submodules)

    def is_submodule(name: str) -> bool:
        if name in submodules:
            return True
        return package and not name.startswith("__") and importlib.util.find_spec(f"{module_name}.{name}") is not None

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            namespace[name] = value
            return value
        if name in deprecated:
            home = deprecated[name]
            warnings.warn(
                f"{module_name}.{name} is deprecated and will be removed in the next release; use {home}.{name}.",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(importlib.import_module(home), name)
        if is_submodule(name):
            return importlib.import_module(f"{module_name}.{name}")
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports) | submodules)

    return __getattr__, __dir__


__all__ = ["lazy_face"]
