"""Loading a saved folder back into a model: strictly, without pickle, without network, without running code.

:func:`load_folder` reads a folder ``save_pretrained`` wrote (``mmzoo.from_pretrained`` resolves names to such a
folder first). It was ``mmzoo.model.saving.load_pretrained`` until 0.2; that name still works, with a warning.

The folder's ``config.json`` and component files are all a model is built from (:func:`offline`): a component
that would fetch anything (a tokenizer, a backbone config from the Hub) fails at once instead of reaching
the network, which is what ``local-dir:`` promises.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from mmzoo._atomic import read_folder
from mmzoo.checkpoint import (
    RESERVED,
    WEIGHTS_NAME,
    check_fit,
    check_requirements,
    load_state_strict,
    read_document,
    read_weights,
    refuse_code,
    weight_shapes,
)
from mmzoo.errors import CheckpointError, InputError, MMZooError, MMZooWarning
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


#: dtype names a loader accepts besides torch dtypes (``dtype="float16"`` as in transformers' ``torch_dtype``).
DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "half": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,
    "double": torch.float64,
}


def checked_device(device: Any) -> torch.device | None:
    """``device`` as a torch device (None stays None); an InputError naming the value when torch has no such one."""
    if device is None or isinstance(device, torch.device):
        return device
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(
            f"device={device!r} is not a device torch knows: write 'cpu', 'cuda', 'cuda:1' or 'mps'."
        ) from None


def checked_dtype(dtype: Any) -> torch.dtype | None:
    """A floating-point torch dtype from a dtype or its name (``"float16"``, ``"bf16"``); InputError otherwise."""
    if dtype is None:
        return None
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in DTYPES:
        return DTYPES[dtype.lower().removeprefix("torch.")]
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    raise InputError(
        f"dtype={dtype!r} is not a floating-point dtype: pass torch.float32, torch.float16, torch.bfloat16 or "
        f"one of the names {', '.join(sorted(DTYPES))}."
    )


def load_folder(
    directory: str | Path, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> MatchingModel | Ensemble:
    """Build the model (or ensemble) saved in ``directory`` and load its weights strictly; in eval mode.

    A folder whose swap was interrupted (``.NAME.old`` left, ``NAME`` missing) is read from ``.NAME.old``; a
    swap by a writer in the meantime waits until the folder is read (``mmzoo._atomic.read_folder``).
    """
    device, dtype = checked_device(device), checked_dtype(dtype)
    if device is not None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r}, but torch sees no GPU here; load with device='cpu'.")
    with read_folder(Path(directory)) as directory:
        document = read_document(directory)
        if "ensemble" in document:
            model: MatchingModel | Ensemble = _load_ensemble(directory, document)
        else:
            model = _load_model(directory, document)
    model.extra_config = {k: v for k, v in document.items() if k not in RESERVED}
    health = model.extra_config.get("training_health")
    if isinstance(health, dict) and health.get("collapsed"):
        warnings.warn(
            f"The model in {directory} was saved from a training epoch that looked collapsed (epoch "
            f"{health.get('epoch')}: {'; '.join(map(str, health['collapsed']))}); its rankings are probably near "
            "chance. Retrain with a warm-up epoch over all negatives (training.warmup_epochs=1).",
            MMZooWarning,
            stacklevel=2,
        )
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
    device, dtype = checked_device(device), checked_dtype(dtype)
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
    _check_sizes(directory, document)
    with offline():
        model = MatchingModel(document["model"], assets=directory)
    load_state_strict(model, read_weights(directory), str(directory / WEIGHTS_NAME))
    return model


def _check_sizes(directory: Path, document: dict) -> None:
    """Check the config's sizes against the weights' header before any memory is allocated: the model is built on
    the ``meta`` device (shapes, no storage), so a config whose sizes multiply to gigabytes the file does not
    hold is a CheckpointError at once, not a wait for the allocator. A component that cannot be built on ``meta``
    is checked by the strict load after the real build, as before."""
    shapes = weight_shapes(directory)
    try:
        with offline(), torch.device("meta"):
            skeleton = MatchingModel(document["model"], assets=directory)
    except MMZooError:
        raise
    except Exception:
        return
    check_fit(skeleton.state_dict(), shapes, str(directory / WEIGHTS_NAME))


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
        member = load_folder(folder)
        if not isinstance(member, MatchingModel):
            raise CheckpointError(f"{folder}: an ensemble's member must be a model, not another ensemble.")
        members.append(member)
    return Ensemble(members, spec.get("weights"))


__all__ = ["DTYPES", "checked_device", "checked_dtype", "load_folder", "load_native", "offline"]
