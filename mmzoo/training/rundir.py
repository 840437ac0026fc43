"""A training run's own logic on top of its folder: the RunSpec of ``run.json``, the data fingerprint.

The folder's names and readers (``run.json``, ``metrics.jsonl``, ``best/``, a clean start) have their one home
below the hub, :mod:`mmzoo.checkpoint.rundir`; this module re-exports them for the trainer. ``run.json``
records what is trained on what (the resolved configs, the data path and a fingerprint of the data's files, so
that ``--resume`` on changed data warns).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mmzoo.checkpoint.rundir import (
    METRICS_NAME,
    RUN_NAME,
    clean_start,
    read_metrics,
    read_run_document,
    write_metrics,
)
from mmzoo.data.door import split_files
from mmzoo.errors import CheckpointError, ConfigError
from mmzoo.training.runspec import RunSpec

_SAMPLES = 8  # chunks read from inside each feature file for its fingerprint
_CHUNK = 1 << 16
#: suffixes of files digested whole (captions, JSON lines): an edit of the same size is found anywhere.
_TEXT = frozenset({".txt", ".jsonl"})


def read_run(run_dir: str | Path) -> RunSpec:
    """The RunSpec ``run.json`` records; a CheckpointError when the file is missing or not mmzoo's."""
    path = Path(run_dir) / RUN_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {run_dir} is not an mmzoo training run.")
    data = read_run_document(run_dir, CheckpointError)
    try:
        return RunSpec.from_dict(data)
    except ConfigError as exc:
        raise CheckpointError(f"{path} does not describe a run mmzoo can continue: {exc}") from None


def data_fingerprint(data: str | Path, splits: tuple[str, ...] = ("train", "dev")) -> dict[str, str]:
    """A digest per data file of the splits, the files their data format lists (:meth:`mmzoo.DataFormat.files`):
    text files whole, and size plus sampled chunks of the others (features).

    Reading a few chunks keeps this fast for COCO's 33 GB of features, and catches other content of the same size.
    Keys are the files' paths relative to the folder (``train_ims.npy``).
    """
    root = Path(data)
    found = {}
    for split in splits:
        for path in sorted(split_files(root, split)):
            if path.is_file():
                key = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
                found[key] = _digest(path, whole=path.suffix in _TEXT)
    return found


def _digest(path: Path, whole: bool) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        if whole or size <= (_SAMPLES + 2) * _CHUNK:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        else:
            for i in range(_SAMPLES + 2):
                handle.seek(min(size - _CHUNK, i * (size - _CHUNK) // (_SAMPLES + 1)))
                digest.update(handle.read(_CHUNK))
    return digest.hexdigest()


def changed_files(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """The data files whose fingerprint differs from the one ``run.json`` recorded (added or removed included)."""
    return sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))


__all__ = [
    "METRICS_NAME",
    "RUN_NAME",
    "changed_files",
    "clean_start",
    "data_fingerprint",
    "read_metrics",
    "read_run",
    "write_metrics",
]
