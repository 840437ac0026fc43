"""MMCA's image branch: region self-attention (Wei et al., CVPR 2020, Sec. 3.1; as in SAEM).

Bottom-up region features (N, k, D) -> FC to d -> transformer self-attention unit(s) over the k
regions -> fragments R; i0 = L2-normalised mean of the valid fragments.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from mmzoo.errors import ConfigError
from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, VisualEncoder, l2_normalize, masked_mean


class RegionSelfAttentionConfig(ComponentConfig):
    in_dim: int = Field(
        2048, gt=0, le=1 << 17, description="Size D of one region feature (2048 for bottom-up features)."
    )
    layers: int = Field(1, ge=0, le=64, description="Transformer self-attention units over the regions (SAEM: 1).")
    heads: int = Field(16, ge=1, le=1024, description="Attention heads; must divide embed_dim (SAEM: 16).")
    ffn_dim: int = Field(2048, gt=0, le=1 << 17, description="Hidden size of the feed-forward layer (SAEM: 2048).")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout in attention and feed-forward (SAEM: 0.1).")


def transformer_unit(dim: int, heads: int, ffn_dim: int, dropout: float) -> nn.TransformerEncoderLayer:
    """One post-norm transformer unit with GELU: attention, FFN, residuals and LayerNorm."""
    if dim % heads:
        raise ConfigError(f"heads={heads} must divide embed_dim={dim}.")
    return nn.TransformerEncoderLayer(dim, heads, ffn_dim, dropout, activation="gelu", batch_first=True)


class RegionSelfAttention(VisualEncoder):
    """Region features -> FC -> self-attention over regions -> (fragments R, pooled i0)."""

    Config = RegionSelfAttentionConfig

    @classmethod
    def test_config(cls) -> dict:
        return {"heads": 4, "ffn_dim": 64}

    def __init__(self, config: RegionSelfAttentionConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        self.input_dim = config.in_dim
        self.fc = nn.Linear(config.in_dim, context.embed_dim)
        self.units = nn.ModuleList(
            transformer_unit(context.embed_dim, config.heads, config.ffn_dim, config.dropout)
            for _ in range(config.layers)
        )

    def forward(self, features: Tensor, mask: Tensor) -> Fragments:
        x = self.fc(features)
        for unit in self.units:
            x = unit(x, src_key_padding_mask=~mask)
        return Fragments(x, mask, l2_normalize(masked_mean(x, mask)))
