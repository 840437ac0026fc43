"""What every pixel-reading family checks of a batch it is handed already preprocessed."""

from __future__ import annotations

import torch
from torch import Tensor

from mmzoo.errors import InputError


def check_pixels(pixels: Tensor) -> Tensor:
    """A preprocessed batch (N, 3, H, W), floating point (already normalised) and finite; else an InputError."""
    if pixels.dim() != 4 or pixels.shape[1] != 3 or pixels.shape[0] == 0:
        raise InputError(f"Pixel tensors must be (N, 3, H, W) with N > 0; got {tuple(pixels.shape)}.")
    if not pixels.is_floating_point():
        raise InputError(f"Pixel tensors must be floating point (already normalised); got {pixels.dtype}.")
    if not bool(torch.isfinite(pixels).all()):
        raise InputError("Pixel tensors contain NaN or infinite values.")
    return pixels


__all__ = ["check_pixels"]
