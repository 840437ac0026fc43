"""SCAN's image side on precomputed regions: one linear map per region, then L2 norm (``model.py``).

``precomp_enc_type='basic'`` is ``EncoderImagePrecomp`` (an FC layer, Xavier-uniform weights and zero
bias); ``'weight_norm'`` is ``EncoderImageWeightNormPrecomp`` (the FC layer under weight normalisation
over the whole matrix, ``weight = g * v / ||v||_F``, ``weight_norm(..., dim=None)``). Parameter names are
theirs (``fc.weight``, ``fc.bias``; ``fc.weight_g``, ``fc.weight_v``, ``fc.bias``), so a converted
checkpoint maps one to one. The fragments are the region vectors, L2-normalised unless ``no_imgnorm``;
SCAN has no global image vector, so ``pooled`` (mmzoo's cheap shortlisting score) is the L2-normalised
mean of the valid fragments.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, VisualEncoder, l2_normalize, masked_mean


def l2norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """SCAN's ``l2norm``: divide by the L2 norm of the last dimension plus ``eps`` (added, not clamped)."""
    return x / (x.pow(2).sum(-1, keepdim=True).sqrt() + eps)


class SCANRegionsConfig(ComponentConfig):
    in_dim: int = Field(2048, gt=0, description="Size D of one region feature (SCAN's img_dim; 2048 for bottom-up).")
    precomp_enc_type: Literal["basic", "weight_norm"] = Field(
        "basic", description="'basic': FC layer (SCAN's default); 'weight_norm': weight-normalised FC."
    )
    no_imgnorm: bool = Field(False, description="Do not L2-normalise the region vectors (SCAN's --no_imgnorm).")


class WeightNormLinear(nn.Module):
    """``weight_norm(nn.Linear(i, o), dim=None)``: weight = weight_g * weight_v / ||weight_v||_F."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        base = nn.Linear(in_features, out_features)  # their init: Linear's default, then g = ||w||
        self.weight_g = nn.Parameter(base.weight.detach().norm())
        self.weight_v = nn.Parameter(base.weight.detach().clone())
        self.bias = nn.Parameter(base.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_v * (self.weight_g / self.weight_v.norm()), self.bias)


class SCANRegions(VisualEncoder):
    """Region features (N, k, D) -> FC per region -> L2 norm -> fragments; pooled = normalised mean."""

    Config = SCANRegionsConfig

    @classmethod
    def test_config(cls) -> dict:
        return {}

    def __init__(self, config: SCANRegionsConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        self.input_dim = config.in_dim
        d = context.embed_dim
        if config.precomp_enc_type == "basic":
            self.fc: nn.Module = nn.Linear(config.in_dim, d)
            bound = math.sqrt(6.0) / math.sqrt(config.in_dim + d)  # their Xavier init
            with torch.no_grad():
                self.fc.weight.uniform_(-bound, bound)
                self.fc.bias.zero_()
        else:
            self.fc = WeightNormLinear(config.in_dim, d)

    def forward(self, features: Tensor, mask: Tensor) -> Fragments:
        x = self.fc(features)
        if not self.config.no_imgnorm:
            x = l2norm(x)
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        return Fragments(x, mask, l2_normalize(masked_mean(x, mask)))
