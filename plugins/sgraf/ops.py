"""Small tensor helpers with SGRAF's exact epsilons, and masking that no padding value can leak through."""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-8


def l2norm(x: Tensor, dim: int = -1, eps: float = EPS) -> Tensor:
    """``x / (|x|_2 + eps)`` along ``dim``: SGRAF's ``l2norm`` (the epsilon is added to the norm)."""
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + eps)


def l1norm(x: Tensor, dim: int = -1, eps: float = EPS) -> Tensor:
    """``x / (|x|_1 + eps)`` along ``dim``: SGRAF's ``l1norm``."""
    return x / (x.abs().sum(dim=dim, keepdim=True) + eps)


def masked_average(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over the valid rows of (..., L, d) -> (..., d); padding (even NaN) contributes nothing."""
    total = x.masked_fill(~mask.unsqueeze(-1), 0.0).sum(-2)
    return total / mask.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)


def masked_softmax(logits: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over the valid entries of ``dim``; padded entries get weight 0."""
    return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=dim).masked_fill(~mask, 0.0)
