"""A run folder's own files: ``run.json``, ``metrics.jsonl``, the data fingerprint, a clean start.

``run.json`` records what is trained on what (the resolved configs, the data path and a fingerprint of the
data's files, so that ``--resume`` on changed data warns); ``metrics.jsonl`` one JSON line per finished epoch.
A new run in a folder holding an unfinished earlier one (killed before its first checkpoint) starts with clean
files instead of appending to the stale ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from mmzoo._atomic import atomic_write_text, read_json_lines, read_json_object
from mmzoo.errors import CheckpointError, ConfigError, DataError
from mmzoo.training.runspec import RunSpec

logger = logging.getLogger("mmzoo.training.rundir")

RUN_NAME = "run.json"
METRICS_NAME = "metrics.jsonl"
#: what a run folder holds besides run.json; a new run removes them when no checkpoint exists.
_RUN_FILES = (METRICS_NAME, "best", ".best.old", ".best.tmp", ".last.tmp", ".last.old")
_SAMPLES = 8  # chunks read from inside each feature file for its fingerprint
_CHUNK = 1 << 16


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run (empty when none yet); a DataError names a broken line."""
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        return []
    return read_json_lines(path, DataError, "the file was not written by mmzoo train.")


def write_metrics(run_dir: Path, records: list[dict[str, Any]]) -> None:
    atomic_write_text(run_dir / METRICS_NAME, "".join(json.dumps(r) + "\n" for r in records))


def read_run(run_dir: str | Path) -> RunSpec:
    """The RunSpec ``run.json`` records; a CheckpointError when the file is missing or not mmzoo's."""
    path = Path(run_dir) / RUN_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {run_dir} is not an mmzoo training run.")
    data = read_json_object(path, CheckpointError, "it was not written by mmzoo train")
    try:
        return RunSpec.from_dict(data)
    except ConfigError as exc:
        raise CheckpointError(f"{path} does not describe a run mmzoo can continue: {exc}") from None


def clean_start(run_dir: Path) -> None:
    """Remove the files of an earlier run that never checkpointed, so the new run's logs start empty."""
    stale = [run_dir / name for name in _RUN_FILES if (run_dir / name).exists()]
    for path in stale:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if stale:
        logger.info("%s: removed %s of an unfinished earlier run", run_dir, ", ".join(p.name for p in stale))


def data_fingerprint(data: str | Path, splits: tuple[str, ...] = ("train", "dev")) -> dict[str, str]:
    """A digest per data file of the splits: the whole caption files, and size plus sampled chunks of the features.

    Reading a few chunks keeps this fast for COCO's 33 GB of features, and catches other content of the same size.
    """
    root = Path(data)
    found = {}
    for split in splits:
        for path in sorted(root.glob(f"{split}_*")):
            if path.is_file():
                found[path.name] = _digest(path, whole=path.suffix == ".txt")
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
