"""The training run folder's one home: its file names, reading its records, telling a run from a saved model.

A run folder (``mmzoo train --out RUNDIR``) holds::

    run.json           what is trained on what (written and read as a RunSpec by mmzoo.training)
    metrics.jsonl      one JSON line per finished epoch
    best/              the model with the best dev rsum so far (a saved-model folder)
    last/              the last epoch's model and its training state

Training writes it, the model cards and ``mmzoo push`` read its metrics, and the CLI loads its ``best/``: they all
take the names and the readers from here, below the hub, so no floor spells ``metrics.jsonl`` twice. Folders are
swapped in atomically (``.best.old`` is the complete version while a swap of ``best/`` is cut, ``mmzoo._atomic``).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from mmzoo._atomic import atomic_write_text, read_json_lines, read_json_object, readable_folder
from mmzoo.checkpoint.folder import CONFIG_NAME
from mmzoo.errors import CheckpointError, DataError, MMZooError

logger = logging.getLogger(__name__)

RUN_NAME = "run.json"
METRICS_NAME = "metrics.jsonl"
BEST_NAME = "best"
LAST_NAME = "last"
#: what a run folder holds besides run.json and last/; a new run removes them when no checkpoint exists.
RUN_FILES = (METRICS_NAME, BEST_NAME, ".best.old", ".best.tmp", ".last.tmp", ".last.old")
_NOT_OURS = "it was not written by mmzoo train"


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run (empty when none yet); a DataError names a broken line."""
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        return []
    return read_json_lines(path, DataError, f"{_NOT_OURS}.")


def write_metrics(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Replace ``metrics.jsonl`` atomically with ``records``, one JSON line each."""
    atomic_write_text(Path(run_dir) / METRICS_NAME, "".join(json.dumps(r) + "\n" for r in records))


def read_run_document(run_dir: str | Path, error: type[MMZooError] = DataError) -> dict[str, Any]:
    """``RUNDIR/run.json`` as a dict, empty when absent; a broken file raises ``error``."""
    path = Path(run_dir) / RUN_NAME
    if not path.is_file():
        return {}
    return read_json_object(path, error, _NOT_OURS)


def clean_start(run_dir: Path) -> None:
    """Remove the files of an earlier run that never checkpointed, so the new run's logs start empty."""
    stale = [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]
    for path in stale:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if stale:
        logger.info("%s: removed %s of an unfinished earlier run", run_dir, ", ".join(p.name for p in stale))


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is a training run with a model to load (``best/config.json``, or its cut swap)."""
    return (readable_folder(Path(path) / BEST_NAME) / CONFIG_NAME).is_file()


def model_folder(path: str | Path) -> Path:
    """The saved-model folder a path stands for: a run's ``best/``, or the folder itself when it is a saved model.

    A run's ``best/`` is returned as named (the loader reads ``.best.old`` under its lock when a swap was cut).

    Raises:
        CheckpointError: ``path`` is neither a training run nor a saved model.
    """
    path = Path(path)
    if is_run(path):
        return path / BEST_NAME
    if (path / CONFIG_NAME).is_file():
        return path
    raise CheckpointError(
        f"{path} is neither a training run (no {BEST_NAME}/{CONFIG_NAME}) nor a saved model (no {CONFIG_NAME})."
    )


__all__ = [
    "BEST_NAME",
    "LAST_NAME",
    "METRICS_NAME",
    "RUN_FILES",
    "RUN_NAME",
    "clean_start",
    "is_run",
    "model_folder",
    "read_metrics",
    "read_run_document",
    "write_metrics",
]
