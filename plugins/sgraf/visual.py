"""SGRAF's image side on precomputed regions: one FC layer per region, then L2 normalisation.

As ``EncoderImage`` of the ``python3.6`` branch: ``fc`` maps each region feature (2048) to the joint space
(1024) and, unless ``no_imgnorm``, every region is scaled to unit length (``x / (|x| + 1e-8)``). The layer is
Xavier-uniform initialised with a zero bias. SGRAF scores from the region fragments alone; ``pooled`` (the
L2-normalised mean of the valid regions) is what mmzoo's cheap shortlisting score uses.
"""

from __future__ import annotations

import math

from pydantic import Field
from torch import Tensor, nn

from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, VisualEncoder, l2_normalize
from mmzoo_plugins.sgraf.ops import l2norm, masked_average


class SGRAFRegionConfig(ComponentConfig):
    in_dim: int = Field(2048, gt=0, description="Size D of one region feature (their img_dim: 2048).")
    normalize: bool = Field(True, description="L2-normalise each region embedding (their `not no_imgnorm`).")


class SGRAFRegions(VisualEncoder):
    """Regions (N, k, D) -> fragments FC(regions), L2-normalised per region; pooled = normalised mean."""

    Config = SGRAFRegionConfig

    def __init__(self, config: SGRAFRegionConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        self.input_dim = config.in_dim
        self.fc = nn.Linear(config.in_dim, context.embed_dim)
        bound = math.sqrt(6.0) / math.sqrt(self.fc.in_features + self.fc.out_features)
        nn.init.uniform_(self.fc.weight, -bound, bound)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: Tensor, mask: Tensor) -> Fragments:
        pad = ~mask.unsqueeze(-1)
        x = self.fc(features.masked_fill(pad, 0.0))
        if self.config.normalize:
            # padded rows are set to ones before the norm (then to zero): a zero row's norm has no gradient
            x = l2norm(x.masked_fill(pad, 1.0)).masked_fill(pad, 0.0)
        return Fragments(x, mask, l2_normalize(masked_average(x, mask)))
