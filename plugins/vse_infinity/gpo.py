"""GPO, the Generalized Pooling Operator of VSE-infinity (Chen et al., CVPR 2021, Sec. 3).

GPO pools a set of n feature vectors (N, n, d) into one (N, d) by a learned weighted sum over the
*sorted* values of each dimension::

    pooled[c] = sum_k  w_k(n) * sort_desc(x[:, c])[k]

so it can express max pooling (w = e_1), mean pooling (w = 1/n), K-max pooling and everything in
between. The weights depend only on n: the sin/cos position encodings of positions 0 .. n-1 (size
``pe_dim``) run through a bi-GRU (``hidden`` units, the two directions averaged), a bias-free linear
gives one score per position, and a softmax with temperature 0.1 turns the n scores into weights.

Sorting makes the result independent of the order of the valid features, so any mask works (not
only right padding): padded positions are excluded from the sort and from the softmax, and never
change an output. The GRU runs once per distinct n in the batch, not once per sample.

Parameter names follow woodfrog/vse_infty (``gru``, ``linear``), so their checkpoints load as they are.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

#: softmax temperature of the position scores (their gpo.py divides the scores by 0.1).
TEMPERATURE = 0.1


def position_encoding(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """Transformer sin/cos encodings (length, dim): even columns sin, odd columns cos, base 10000."""
    if dim % 2:
        raise ValueError(f"sin/cos position encodings need an even size; got {dim}.")
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(position * frequency)
    pe[:, 1::2] = torch.cos(position * frequency)
    return pe


class GPO(nn.Module):
    """(N, L, d) features + (N, L) bool mask -> (N, d) pooled features (not normalised).

    Args:
        pe_dim: size of the position encodings fed to the GRU (theirs: 32).
        hidden: GRU hidden size per direction (theirs: 32).
    """

    def __init__(self, pe_dim: int = 32, hidden: int = 32) -> None:
        super().__init__()
        if pe_dim % 2:
            raise ValueError(f"GPO needs an even pe_dim; got {pe_dim}.")
        self.pe_dim = pe_dim
        self.gru = nn.GRU(pe_dim, hidden, 1, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(hidden, 1, bias=False)

    def weights_for(self, lengths: Tensor) -> Tensor:
        """Pooling weights (len(lengths), max(lengths)) for sets of these sizes; zero past each size."""
        longest = int(lengths.max())
        pe = position_encoding(longest, self.pe_dim, lengths.device).expand(len(lengths), -1, -1)
        positions = torch.arange(longest, device=lengths.device)[None]
        valid = positions < lengths[:, None]
        pe = pe.masked_fill(~valid[..., None], 0.0).to(self.linear.weight.dtype)
        packed = pack_padded_sequence(pe, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=longest)
        half = out.shape[-1] // 2
        scores = self.linear((out[..., :half] + out[..., half:]) / 2).squeeze(-1)  # (B, longest)
        scores = scores.masked_fill(~valid, float("-inf"))
        return torch.softmax(scores / TEMPERATURE, dim=1)

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(1)
        if bool((lengths == 0).any()):
            raise ValueError("GPO needs at least one valid feature per sample.")
        sizes, which = torch.unique(lengths, return_inverse=True)  # the GRU runs once per distinct size
        weights = self.weights_for(sizes)[which]  # (N, n_max)
        longest = weights.shape[1]
        # padding sorts last (-inf) and is then zeroed: only the n valid values of each dimension count
        ordered = features.masked_fill(~mask[..., None], float("-inf")).sort(dim=1, descending=True).values
        ordered = ordered[:, :longest]
        valid = torch.arange(longest, device=mask.device)[None] < lengths[:, None]
        ordered = ordered.masked_fill(~valid[..., None], 0.0)
        return (ordered * weights[..., None].to(ordered.dtype)).sum(1)
