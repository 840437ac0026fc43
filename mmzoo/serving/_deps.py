"""Optional packages of the serving extras (``serving``: faiss, pyarrow; ``serve``: FastAPI, uvicorn; ``ray``),
imported on first use through :func:`mmzoo._optional.require`, whose error names the extra to install."""

from __future__ import annotations

from types import ModuleType

from mmzoo._optional import require as _require
from mmzoo.errors import MissingDependencyError

#: the serving modules' name for the one missing-dependency error (kept for their callers).
MissingExtraError = MissingDependencyError


def require(module: str, extra: str) -> ModuleType:
    """``import module``, or a :class:`~mmzoo.errors.MissingDependencyError` saying ``pip install "mmzoo[extra]"``."""
    return _require(module, extra=extra, purpose="Serving an index")


__all__ = ["MissingExtraError", "require"]
