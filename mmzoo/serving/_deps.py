"""Optional packages of the serving extras, imported on first use with an error that names the extra to install.

(A project-wide ``mmzoo._optional.require`` is on its way; this is the same idea, local until it lands.)
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mmzoo.errors import MMZooError


class MissingExtraError(MMZooError, ImportError):
    """An optional package is not installed; the message names the ``pip install 'mmzoo[EXTRA]'`` that brings it."""


def require(module: str, extra: str) -> ModuleType:
    """``import module``, or a :class:`MissingExtraError` saying ``pip install 'mmzoo[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module} is needed here but is not installed ({exc}); install it with: pip install 'mmzoo[{extra}]'"
        ) from None


__all__ = ["MissingExtraError", "require"]
