"""Device and mixed-precision choices: which device, which autocast dtype, whether a gradient scaler.

``amp="auto"`` means bf16 autocast on GPUs that support it (Ampere and newer), fp16 autocast with a
``GradScaler`` on older GPUs, and full precision on the CPU. bf16 has fp32's exponent range, so it needs
no loss scaling; fp16 does, or small gradients underflow to zero.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

from mmzoo.errors import ConfigError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> this process's GPU when one is present, else the CPU; 'cuda' without a GPU is an error."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("training.device='cuda' but torch sees no GPU; use device=auto or cpu.")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def resolve_amp(amp: str, device: torch.device) -> str:
    """The effective precision: 'off', 'bf16' or 'fp16'."""
    if amp == "auto":
        if device.type != "cuda":
            return "off"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return amp


def autocast(device: torch.device, amp: str) -> AbstractContextManager:
    """The autocast context of the forward pass (a no-op when amp is 'off')."""
    return torch.autocast(device.type, dtype=_DTYPES.get(amp, torch.float32), enabled=amp in _DTYPES)


def make_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """A gradient scaler, active only for fp16."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


__all__ = ["autocast", "make_scaler", "resolve_amp", "resolve_device"]
