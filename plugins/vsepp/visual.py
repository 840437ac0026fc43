"""VSE++'s image side on precomputed regions: mean-pool the regions and map them linearly to d."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, VisualEncoder, l2_normalize, masked_mean


class MeanFCConfig(ComponentConfig):
    in_dim: int = Field(2048, gt=0, le=1 << 17, description="Size D of one region feature.")


class MeanFC(VisualEncoder):
    """Regions -> FC per region (the fragments) -> i0 = L2-normalised mean (equals FC of the mean)."""

    Config = MeanFCConfig

    def __init__(self, config: MeanFCConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        self.input_dim = config.in_dim
        self.fc = nn.Linear(config.in_dim, context.embed_dim)

    def forward(self, features: Tensor, mask: Tensor) -> Fragments:
        x = self.fc(features)
        return Fragments(x, mask, l2_normalize(masked_mean(x, mask)))
