"""The sentence 1D-CNN of MMCA's text branch (and of its fused caption vector c1).

Convolutions with window sizes 1, 2 and 3 over the token features, ReLU, max-pool over the valid
tokens, concatenation, then a linear map to d. Padded tokens are zeroed and each window looks only
rightwards, so a caption's output is the same however much padding follows it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TextCNN(nn.Module):
    """(N, L, in_dim) tokens + (N, L) mask -> (N, out_dim) sentence vector (not normalised)."""

    def __init__(self, in_dim: int, out_dim: int, windows: list[int], channels: int, dropout: float) -> None:
        super().__init__()
        self.windows = list(windows)
        self.convs = nn.ModuleList(nn.Conv1d(in_dim, channels, w) for w in self.windows)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels * len(self.windows), out_dim)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        x = (tokens * mask.unsqueeze(-1).to(tokens.dtype)).transpose(1, 2)  # (N, in_dim, L)
        invalid = ~mask.unsqueeze(1)  # (N, 1, L)
        pooled = []
        for w, conv in zip(self.windows, self.convs, strict=True):
            y = F.relu(conv(F.pad(x, (0, w - 1))))  # (N, C, L): window t covers tokens t .. t+w-1
            pooled.append(y.masked_fill(invalid, float("-inf")).amax(dim=2))
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))
