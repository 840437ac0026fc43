"""Device and mixed-precision choices: which device, which autocast dtype, whether a gradient scaler.

The names are the one precision vocabulary of :mod:`mmzoo.devices` (``auto``, ``fp32``, ``bf16``, ``fp16``; the old
``off`` means ``fp32``). ``amp="auto"`` means bf16 autocast on GPUs that support it (Ampere and newer), fp16 autocast with a
``GradScaler`` on older GPUs, and full precision on the CPU. bf16 has fp32's exponent range, so it needs
no loss scaling; fp16 does, or small gradients underflow to zero.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

from mmzoo import devices

_AUTOCAST = ("bf16", "fp16")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> this process's GPU when one is present, else the CPU; 'cuda' without a GPU is an error."""
    return devices.resolve_device(name, local_rank, option="training.device")


def resolve_amp(amp: str, device: torch.device) -> str:
    """The effective precision: 'fp32', 'bf16' or 'fp16' ('off' is read as 'fp32')."""
    amp = devices.precision_name(amp, "training.amp")
    if amp == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return amp


def autocast(device: torch.device, amp: str) -> AbstractContextManager:
    """The autocast context of the forward pass (a no-op in fp32)."""
    return torch.autocast(device.type, dtype=devices.DTYPES.get(amp, torch.float32), enabled=amp in _AUTOCAST)


def make_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """A gradient scaler, active only for fp16."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


__all__ = ["autocast", "make_scaler", "resolve_amp", "resolve_device"]
