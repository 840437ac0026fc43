"""Training: ``mmzoo train`` and its pieces (config, loop, checkpoints, negatives, distributed).

Examples:
    >>> from mmzoo.training import prepare_run, train
    >>> spec = prepare_run("data/shapes", "mmca", epochs=2)  # doctest: +SKIP
    >>> train(spec, "runs/mmca")  # doctest: +SKIP
"""

from __future__ import annotations

from mmzoo.training.config import TrainConfig
from mmzoo.training.negatives import candidate_mask, score_rows
from mmzoo.training.rundir import read_metrics, read_run
from mmzoo.training.runspec import RunSpec, prepare_run
from mmzoo.training.step import TrainingStep
from mmzoo.training.tensorboard import TensorBoardLogger
from mmzoo.training.trainer import Trainer, train

__all__ = [
    "RunSpec",
    "TensorBoardLogger",
    "TrainConfig",
    "Trainer",
    "TrainingStep",
    "candidate_mask",
    "prepare_run",
    "read_metrics",
    "read_run",
    "score_rows",
    "train",
]
