"""VSE-infinity's image side on precomputed region features (their ``EncoderImageAggr``, ``basic`` type).

Each region x (2048, bottom-up attention) becomes ``fc(x) + mlp(x)``: a linear map to d plus a 2-layer MLP
(Linear -> BatchNorm1d -> ReLU -> Linear, hidden d/2) added as a residual. The regions are the image's
fragments; GPO pools them into i0, L2-normalised.

Size augmentation: in training mode each valid region is dropped with probability 0.2, as their
``PrecompRegionDataset`` drops rows before batching. Here it happens through the mask, which is the same
thing: the per-region layers do not look at other regions, and GPO depends only on the set of values
and its size. An image that would lose every region keeps them all (their loader would crash on it).

Two deliberate differences, both in training mode only (a loaded checkpoint computes exactly theirs):
the MLP's BatchNorm takes its batch statistics over the valid regions only, where theirs also counts
the zero rows their collate pads with, so padding can never change an output; and the dropout draws
from torch's generator (seeded and checkpointed by the trainer) instead of numpy's.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor, nn

from mmzoo.errors import ConfigError
from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, VisualEncoder, l2_normalize
from mmzoo_plugins.vse_infinity.gpo import GPO


class RegionMLP(nn.Module):
    """Their 2-layer ``MLP``: Linear -> BatchNorm1d -> ReLU -> Linear, on a (rows, in_dim) matrix."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim)])
        # their MLP also builds a BatchNorm1d(out_dim) that its forward never uses; the converter drops it
        self.bns = nn.ModuleList([nn.BatchNorm1d(hidden)])

    def forward(self, rows: Tensor) -> Tensor:
        return self.layers[1](torch.relu(self.bns[0](self.layers[0](rows))))


def drop_regions(mask: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Keep each valid region with probability 1 - p; an image that would keep none keeps its mask."""
    keep = mask & (torch.rand(mask.shape, device=mask.device, generator=generator) > p)
    return torch.where(keep.any(1, keepdim=True), keep, mask)


class VseRegionsConfig(ComponentConfig):
    in_dim: int = Field(2048, gt=0, description="Size D of one region feature (bottom-up attention: 2048).")
    mlp: bool = Field(True, description="Add the 2-layer MLP residual to the linear map (theirs for region features).")
    mlp_hidden: int | None = Field(None, gt=0, description="MLP hidden size; None: embed_dim // 2 (theirs).")
    drop_prob: float = Field(
        0.2, ge=0.0, lt=1.0, description="Training only: drop each region with this probability (size augmentation)."
    )
    pe_dim: int = Field(32, gt=0, description="GPO position-encoding size (theirs: 32); must be even.")
    gpo_hidden: int = Field(32, gt=0, description="GPO bi-GRU hidden size (theirs: 32).")


class VseRegions(VisualEncoder):
    """Regions -> fc(x) + mlp(x) per region (the fragments) -> GPO -> L2-normalised i0."""

    Config = VseRegionsConfig

    @classmethod
    def test_config(cls) -> dict:
        return {"pe_dim": 8, "gpo_hidden": 8}

    def __init__(self, config: VseRegionsConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        if config.pe_dim % 2:
            raise ConfigError(f"visual.pe_dim must be even (sin/cos pairs); got {config.pe_dim}.")
        d = context.embed_dim
        self.input_dim = config.in_dim
        self.fc = nn.Linear(config.in_dim, d)
        bound = math.sqrt(6.0 / (config.in_dim + d))  # their Xavier-uniform init of the linear map
        nn.init.uniform_(self.fc.weight, -bound, bound)
        nn.init.zeros_(self.fc.bias)
        self.mlp = RegionMLP(config.in_dim, config.mlp_hidden or d // 2, d) if config.mlp else None
        self.gpool = GPO(config.pe_dim, config.gpo_hidden)

    def forward(self, features: Tensor, mask: Tensor) -> Fragments:
        if self.training and self.config.drop_prob > 0:
            mask = drop_regions(mask, self.config.drop_prob)
        valid = features[mask]  # (regions, D): the MLP's BatchNorm sees real regions only
        rows = self.fc(valid)
        if self.mlp is not None:
            rows = rows + self.mlp(valid)
        fragments = rows.new_zeros(*mask.shape, rows.shape[-1])
        fragments[mask] = rows
        return Fragments(fragments, mask, l2_normalize(self.gpool(fragments, mask)))
