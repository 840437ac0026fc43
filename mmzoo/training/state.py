"""The last checkpoint: model folder plus ``training_state.pt``, saved and loaded without arbitrary unpickling.

``RUNDIR/last/`` is a ``save_pretrained`` folder (config.json, model.safetensors, assets) with one more
file, ``training_state.pt``: optimizer, scheduler and gradient-scaler state dicts, epoch, step, best dev
rsum, and the RNG states of torch (CPU and every CUDA device), numpy and Python. It is read with
``torch.load(weights_only=True)``, which accepts only tensors and plain containers, so every RNG state
is stored as tensors and lists.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmzoo._atomic import atomic_folder, is_storage_error, open_fresh, read_folder, storage_error
from mmzoo.checkpoint.foreign import refused_class, refused_pickle_message, unpickle_reason
from mmzoo.devices import ALIASES
from mmzoo.errors import CheckpointError, MMZooError

STATE_NAME = "training_state.pt"


def capture_rng() -> dict[str, Any]:
    """Every RNG a training step draws from, as tensors and plain lists."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the RNG states taken by :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:  # another GPU count: seed what can be seeded, the run stays valid but not bit-identical
            torch.cuda.manual_seed_all(int(state["torch"][:8].sum()))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


@dataclass
class TrainingState:
    """Where training stands after ``epoch`` completed epochs."""

    epoch: int
    step: int
    best_rsum: float | None
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    amp: str = "fp32"
    #: the run's training settings when the checkpoint was written (``--resume`` compares run.json with them)
    training: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": 1,
            "epoch": self.epoch,
            "step": self.step,
            "best_rsum": self.best_rsum,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
            "rng": self.rng,
            "amp": self.amp,
            "training": self.training,
        }


def save_checkpoint(folder: Path, model: torch.nn.Module, state: TrainingState | None = None) -> Path:
    """Write the model (and the training state) into ``folder`` as one atomic swap."""
    with atomic_folder(folder) as tmp:
        model.save_pretrained(tmp)
        if state is not None:
            _save_state(state, tmp / STATE_NAME, folder)
    return folder


def _save_state(state: TrainingState, path: Path, folder: Path) -> None:
    """``torch.save`` into a fresh file; a full disk or a file-size limit (torch says ``unexpected pos`` or
    ``PytorchStreamWriter failed``) is a StorageError naming the checkpoint folder."""
    try:
        with open_fresh(path) as handle:
            torch.save(state.to_dict(), handle)
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, MMZooError) or not is_storage_error(exc):
            raise
        raise storage_error(exc, folder, "checkpoint folder") from None


def load_training_state(folder: Path) -> TrainingState:
    """Read ``folder/training_state.pt`` safely (``weights_only=True``)."""
    with read_folder(folder) as readable:
        path = readable / STATE_NAME
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: {folder} is not a training checkpoint (nothing to resume).")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # the unpickler raises many types; all mean the same here
            refused = refused_class(exc)
            if refused:
                raise CheckpointError(
                    refused_pickle_message(path, refused, "a training state (tensors, numbers and plain containers)")
                    + f" mmzoo train never writes one: remove {folder} and resume from another checkpoint."
                ) from None
            raise CheckpointError(f"{path} is not a readable training state: {unpickle_reason(exc)}") from None
    try:
        return TrainingState(
            epoch=int(data["epoch"]),
            step=int(data["step"]),
            best_rsum=data["best_rsum"],
            optimizer=data["optimizer"],
            scheduler=data["scheduler"],
            scaler=data.get("scaler") or {},
            rng=data["rng"],
            amp=ALIASES.get(data.get("amp", "fp32"), data.get("amp", "fp32")),  # "off" in older states
            training=dict(data.get("training") or {}),
        )
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} lacks the field {exc}; it was not written by mmzoo's trainer.") from None


__all__ = ["STATE_NAME", "TrainingState", "capture_rng", "load_training_state", "restore_rng", "save_checkpoint"]
