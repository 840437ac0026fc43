"""TensorBoard logging of a run, through torch's standard writer (``torch.utils.tensorboard.SummaryWriter``).

One scalar per epoch and metric: ``train/loss``, ``train/lr``, ``train/pairs_per_s`` and ``dev/<metric>`` (the
flat keys of ``mmzoo eval --json``: ``dev/rsum``, ``dev/i2t_r1``, ...), plus ``train/collapsed`` (1 for an epoch
the collapse check flagged), with the epoch as the step. ``mmzoo train --tensorboard`` writes them under
``RUNDIR/tensorboard``; view them with ``tensorboard --logdir RUNDIR``. Needs the ``tensorboard`` extra.

Example:
    >>> from mmzoo.training import TensorBoardLogger, prepare_run, train
    >>> with TensorBoardLogger("runs/mmca/tensorboard") as logger:  # doctest: +SKIP
    ...     train(prepare_run("data/shapes", "mmca"), "runs/mmca", callbacks=[logger])
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mmzoo._optional import require

#: the record's per-epoch numbers logged under ``train/``.
TRAIN_KEYS = ("loss", "lr", "pairs_per_s", "seconds")


class TensorBoardLogger:
    """A training callback that writes each epoch's record as TensorBoard scalars (and flushes them at once)."""

    def __init__(self, log_dir: str | Path) -> None:
        require("tensorboard", extra="tensorboard", purpose="TensorBoard logging (--tensorboard)")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def __call__(self, record: dict[str, Any]) -> None:
        epoch = int(record["epoch"])
        for key in TRAIN_KEYS:
            if _finite(record.get(key)):
                self.writer.add_scalar(f"train/{key}", float(record[key]), epoch)
        self.writer.add_scalar("train/collapsed", float(bool(record.get("collapse"))), epoch)
        dev = record.get("dev")
        for key, value in dev.items() if isinstance(dev, dict) else ():
            if _finite(value):
                self.writer.add_scalar(f"dev/{key}", float(value), epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


__all__ = ["TensorBoardLogger"]
