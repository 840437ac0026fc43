"""VSE++'s image side on precomputed regions: mean-pool the regions and map them linearly to d."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

import mmzoo


class MeanFCConfig(mmzoo.ComponentConfig):
    in_dim: int = Field(2048, gt=0, le=1 << 17, description="Size D of one region feature.")


class MeanFC(mmzoo.VisualEncoder):
    """Regions -> FC per region (the fragments) -> i0 = L2-normalised mean (equals FC of the mean)."""

    Config = MeanFCConfig

    def __init__(self, config: MeanFCConfig, context: mmzoo.BuildContext) -> None:
        super().__init__(config, context)
        self.input_dim = config.in_dim
        self.fc = nn.Linear(config.in_dim, context.embed_dim)

    def forward(self, features: Tensor, mask: Tensor) -> mmzoo.Fragments:
        x = self.fc(features)
        return mmzoo.Fragments(x, mask, mmzoo.l2_normalize(mmzoo.masked_mean(x, mask)))
