"""The serving errors: each refines an mmzoo error, so ``except MMZooError`` still catches it."""

from __future__ import annotations

from mmzoo.errors import DataError, InputError


class IndexCorruptError(DataError):
    """A file of a saved index is missing or its sha256 differs from the manifest's: rebuild or restore it."""


class IndexMismatchError(InputError):
    """An index and a model do not fit: built by another model, or holding items the model cannot read."""


__all__ = ["IndexCorruptError", "IndexMismatchError"]
