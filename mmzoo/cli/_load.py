"""The one model loader of the CLI: a saved folder, a training run (its ``best/``), or any pretrained name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mmzoo.errors import CheckpointError, InputError

if TYPE_CHECKING:
    from mmzoo.model import Ensemble, MatchingModel


def resolve_device(name: str | None) -> str:
    """``--device``: CUDA when available unless given; a clear error when CUDA is asked for and absent."""
    import torch

    device = name or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine; use --device cpu.")
    try:
        torch.device(device)
    except RuntimeError:
        raise InputError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, ...).") from None
    return device


def from_pretrained(name: str, device: str | None = None) -> MatchingModel | Ensemble:
    """:func:`mmzoo.from_pretrained`, imported when a command first loads a model (not when ``--help`` runs)."""
    from mmzoo.pretrained import from_pretrained as load

    return load(name, device=device)


def load_model(spec: str, device: str | None = None) -> MatchingModel | Ensemble:
    """A saved model folder, a training run folder (``RUNDIR/best``), or a name ``from_pretrained`` knows."""
    from mmzoo.model import load_pretrained

    path = Path(spec)
    run_best = path / "best"
    if (run_best / "config.json").is_file() or (path / ".best.old" / "config.json").is_file():
        return load_pretrained(run_best, device=device)
    if (path / "config.json").is_file():
        return load_pretrained(path, device=device)
    if path.is_dir():
        raise CheckpointError(
            f"{path} is neither a saved model (no config.json) nor a training run (no best/config.json)."
        )
    return from_pretrained(spec, device=device)


__all__ = ["load_model", "resolve_device"]
