"""The one door to optional dependencies: ``require("transformers", extra="mmca")``.

mmzoo's core installs with torch, numpy, pydantic, pluggy, huggingface_hub and safetensors; the model families
and features that need more (transformers, timm, Pillow, h5py, faiss, ...) live behind *extras*. Every optional
import goes through :func:`require`, so a missing package is one :class:`~mmzoo.errors.MissingDependencyError`
that names the package and the exact ``pip install "mmzoo[EXTRA]"`` line, never a raw ``ModuleNotFoundError``
from deep inside a call. Plugins reach it as ``mmzoo.plugin.require``.

Example:
    >>> np = require("numpy", extra="core")  # an installed module comes back as imported
    >>> require("no_such_module_xyz", extra="vision", purpose="reading images")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    mmzoo.errors.MissingDependencyError: reading images needs the Python package no_such_module_xyz, ...
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mmzoo.errors import MissingDependencyError

#: import name -> the name pip installs it under, where they differ.
PIP_NAMES = {
    "PIL": "pillow",
    "faiss": "faiss-cpu",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "yaml": "pyyaml",
}


def install_hint(extra: str, package: str | None = None) -> str:
    """``pip install "mmzoo[EXTRA]"`` (plus the bare package, for those who install by hand)."""
    hint = f'pip install "mmzoo[{extra}]"'
    return f"{hint} (or pip install {package})" if package else hint


def require(module: str, *, extra: str, purpose: str | None = None, package: str | None = None) -> ModuleType:
    """Import ``module`` (``"PIL.Image"`` works too) or raise :class:`MissingDependencyError` naming its extra.

    Args:
        module: the import name, dotted names allowed.
        extra: the mmzoo extra that installs it (``mmca``, ``vision``, ``features``, ``plot``, ...).
        purpose: what needs it, for the message ("create_model('mmca')", "mmzoo search"); optional.
        package: the pip name when it differs from the import name and is not in :data:`PIP_NAMES`.

    Only a module that is *absent* becomes a ``MissingDependencyError``; a package that is installed but fails
    while importing (a broken install, a missing shared library) also does, with the original reason appended, so
    the user learns both what broke and how to reinstall it.
    """
    top = module.split(".")[0]
    pip_name = package or PIP_NAMES.get(top, top)
    try:
        importlib.import_module(top)  # the package first: a cached submodule must not hide an absent package
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        what = f"{purpose} needs" if purpose else "This needs"
        if missing is not None and (missing in (top, module) or missing.startswith(f"{top}.")):
            reason = "which is not installed"
        else:  # installed but broken: say why
            reason = f"which failed to import ({type(exc).__name__}: {exc})"
        raise MissingDependencyError(
            f"{what} the Python package {pip_name}, {reason}: {install_hint(extra, pip_name)}.",
            name=top,
            extra=extra,
        ) from None


__all__ = ["PIP_NAMES", "install_hint", "require"]
