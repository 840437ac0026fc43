"""The one model loader of the CLI: a saved folder, a training run (its ``best/``), or any pretrained name.

Heavy modules are imported when a command first loads a model, not when ``--help`` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mmzoo.errors import InputError

if TYPE_CHECKING:
    from mmzoo.model import Ensemble, MatchingModel


def resolve_device(name: str | None) -> str:
    """``--device``: CUDA when available unless given; a clear error when CUDA is asked for and absent."""
    from mmzoo import devices

    return str(devices.resolve_device(name, option="--device", error=InputError))


def from_pretrained(name: str, device: str | None = None) -> MatchingModel | Ensemble:
    """:func:`mmzoo.from_pretrained`, imported on first use."""
    from mmzoo.pretrained import from_pretrained as load

    return load(name, device=device)


def load_model(spec: str, device: str | None = None) -> MatchingModel | Ensemble:
    """A saved model folder, a training run folder (``RUNDIR/best``), or a name ``from_pretrained`` knows."""
    from mmzoo.checkpoint.rundir import model_folder
    from mmzoo.model import load_folder

    path = Path(spec)
    if path.is_dir():  # a run's best/ or a saved folder, else a CheckpointError that says which files are missing
        return load_folder(model_folder(path), device=device)
    return from_pretrained(spec, device=device)


__all__ = ["load_model", "resolve_device"]
