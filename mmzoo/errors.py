"""The mmzoo exception hierarchy.

Every error mmzoo raises on purpose derives from :class:`MMZooError`, so callers can catch one type.
Each child also derives from the builtin it refines (``ValueError``, ``LookupError``, ...), so code
written against the builtins keeps working. Messages say what went wrong and what to do about it.
"""

from __future__ import annotations


class MMZooError(Exception):
    """Base class of every error raised by mmzoo."""


class ConfigError(MMZooError, ValueError):
    """A model or training config is invalid: unknown field, wrong type, inconsistent values."""


class UnknownComponentError(MMZooError, LookupError):
    """A registry has no component, recipe or pretrained entry under the requested name."""


class PluginError(MMZooError, RuntimeError):
    """A plugin failed to import or to register (raised in strict mode, recorded otherwise)."""


class InputError(MMZooError, ValueError):
    """A tensor or caption batch handed to a model has the wrong shape, dtype or content."""


class CheckpointError(MMZooError, RuntimeError):
    """Weights do not match the architecture, or a checkpoint file is broken or unsafe."""


class DataError(MMZooError, ValueError):
    """A dataset file is missing, malformed or inconsistent with its partner file."""


class HubError(MMZooError, RuntimeError):
    """A download, upload or cache lookup on the Hugging Face Hub failed."""


class MissingDependencyError(MMZooError, ImportError):
    """An optional package is not installed; the message names the ``pip install "mmzoo[EXTRA]"`` that adds it.

    ``name`` is the missing import name and ``extra`` the mmzoo extra (see ``mmzoo.plugin.require``).
    """

    def __init__(self, message: str, *, name: str | None = None, extra: str | None = None) -> None:
        super().__init__(message, name=name)
        self.extra = extra


class StorageError(MMZooError, OSError):
    """A file or folder cannot be written: read-only, a file where a folder belongs, the disk or a quota full."""


class TrainingError(MMZooError, RuntimeError):
    """Training cannot go on (a non-finite loss); the last checkpoint is intact."""


class MMZooWarning(UserWarning):
    """Something is probably wrong but not fatal: a collapsed model, constant scores, features of another kind."""


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "HubError",
    "InputError",
    "MMZooError",
    "MMZooWarning",
    "MissingDependencyError",
    "PluginError",
    "StorageError",
    "TrainingError",
    "UnknownComponentError",
]
