"""The project's crash-safe write helpers, as this package uses them (one place to re-point)."""

from __future__ import annotations

from pathlib import Path

from mmzoo.training.atomic import _fsync_dir, atomic_write_json, atomic_write_text


def fsync_dir(path: Path) -> None:
    """Make renames and deletions in ``path`` durable."""
    _fsync_dir(path)


__all__ = ["atomic_write_json", "atomic_write_text", "fsync_dir"]
