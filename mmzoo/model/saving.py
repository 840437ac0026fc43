"""Loading a saved folder back into a model: strictly, without pickle, without network, without running code.

The folder's ``config.json`` and component files are all a model is built from (:func:`offline`): a component
that would fetch anything (a tokenizer, a backbone config from the Hub) fails at once instead of reaching
the network, which is what ``local-dir:`` promises.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from mmzoo._atomic import read_folder
from mmzoo.checkpoint import (
    RESERVED,
    WEIGHTS_NAME,
    check_requirements,
    load_state_strict,
    read_document,
    read_weights,
    refuse_code,
)
from mmzoo.errors import CheckpointError, InputError
from mmzoo.model.ensemble import Ensemble
from mmzoo.model.matching import MatchingModel


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """No download while a saved model is built: huggingface_hub (and transformers, timm through it) go offline."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    patched = None
    try:
        from huggingface_hub import constants

        patched, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    except ImportError:
        pass
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if patched is not None:
            from huggingface_hub import constants

            constants.HF_HUB_OFFLINE = patched


def load_pretrained(
    directory: str | Path, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> MatchingModel | Ensemble:
    """Build the model (or ensemble) saved in ``directory`` and load its weights strictly; in eval mode.

    A folder whose swap was interrupted (``.NAME.old`` left, ``NAME`` missing) is read from ``.NAME.old``; a
    swap by a writer in the meantime waits until the folder is read (``mmzoo._atomic.read_folder``).
    """
    if device is not None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r}, but torch sees no GPU here; load with device='cpu'.")
    with read_folder(Path(directory)) as directory:
        document = read_document(directory)
        if "ensemble" in document:
            model: MatchingModel | Ensemble = _load_ensemble(directory, document)
        else:
            model = _load_model(directory, document)
    model.extra_config = {k: v for k, v in document.items() if k not in RESERVED}
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model.eval()


def load_native(
    directory: str | Path,
    config: Mapping[str, Any],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> MatchingModel:
    """Build ``config`` (a recipe's model config) from a folder in the weights' own library layout, in eval mode.

    Every component gets the folder (``BuildContext.native``) and reads its architecture, preprocessing and
    weights from it, strictly; the network is off and a folder that carries code is refused. Saving the model
    afterwards writes an ordinary mmzoo folder.
    """
    if device is not None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r}, but torch sees no GPU here; load with device='cpu'.")
    directory = Path(directory)
    refuse_code(directory)
    with offline():
        model = MatchingModel(config, assets=directory, native=True)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model.eval()


def _load_model(directory: Path, document: dict) -> MatchingModel:
    check_requirements(document)
    with offline():
        model = MatchingModel(document["model"], assets=directory)
    load_state_strict(model, read_weights(directory), str(directory / WEIGHTS_NAME))
    return model


def _load_ensemble(directory: Path, document: dict) -> Ensemble:
    spec = document["ensemble"]
    names = spec.get("members") if isinstance(spec, dict) else None
    if not isinstance(names, list) or len(names) < 2:
        raise CheckpointError(f"{directory}/config.json: an ensemble lists at least two members.")
    members = []
    for name in names:
        folder = (directory / str(name)).resolve()
        if directory.resolve() not in folder.parents:
            raise CheckpointError(f"{directory}/config.json: member {name!r} lies outside the ensemble's folder.")
        member = load_pretrained(folder)
        if not isinstance(member, MatchingModel):
            raise CheckpointError(f"{folder}: an ensemble's member must be a model, not another ensemble.")
        members.append(member)
    return Ensemble(members, spec.get("weights"))


__all__ = ["load_native", "load_pretrained", "offline"]
