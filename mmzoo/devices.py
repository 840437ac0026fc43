"""Devices and numeric precisions: one vocabulary and one ``resolve_device`` for training, scoring and the CLI.

A precision is one of :data:`PRECISIONS`: ``auto`` (the best the device does well), ``fp32``, ``bf16``, ``fp16``.
Training's ``amp`` and scoring's ``precision`` both take these names; training's old ``"off"`` still means
``fp32`` (:data:`ALIASES`). What ``auto`` resolves to is each user's choice: training autocasts in bf16, or fp16
with a gradient scaler on GPUs without bf16; the scoring engine computes in bf16 on any GPU. Both are fp32 on
the CPU.

Example:
    >>> precision_name("off"), precision_name("bf16")
    ('fp32', 'bf16')
    >>> resolve_device("cpu")
    device(type='cpu')
"""

from __future__ import annotations

import torch

from mmzoo.errors import ConfigError, MMZooError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: earlier spellings, accepted and mapped: training's ``amp="off"``.
ALIASES = {"off": "fp32"}
#: the torch dtype of each explicit precision.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_name(value: str, option: str = "precision", error: type[MMZooError] = ConfigError) -> str:
    """The canonical name of a precision (an alias mapped); ``error`` naming the choices when it is none."""
    name = ALIASES.get(value, value) if isinstance(value, str) else value
    if name not in PRECISIONS:
        raise error(f"{option} must be one of {', '.join(PRECISIONS)} ('off' = fp32); got {value!r}.")
    return name


def resolve_device(
    name: str | None = "auto",
    local_rank: int | None = None,
    *,
    option: str = "device",
    error: type[MMZooError] = ConfigError,
) -> torch.device:
    """``auto`` (or None): the GPU when torch sees one, else the CPU; ``cpu``, ``cuda``, ``cuda:1``, ... as given.

    Args:
        name: the device the user asked for.
        local_rank: a distributed process's rank on its node: a bare ``cuda`` becomes its GPU.
        option: how the user spelled the setting, for the error (``training.device``, ``--device``).
        error: the exception to raise (a ConfigError for a config, an InputError for a flag).

    Raises:
        error: not a torch device, or CUDA asked for on a machine without a GPU.
    """
    name = name or "auto"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise error(f"{option} {name!r} is not a torch device (auto, cpu, cuda, cuda:1, ...).") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise error(f"{option} {name}: CUDA is not available on this machine (torch sees no GPU); use auto or cpu.")
        if device.index is None and local_rank is not None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


__all__ = ["ALIASES", "DTYPES", "PRECISIONS", "precision_name", "resolve_device"]
