"""An example mmzoo plugin: the ``word-region-max`` fusion block.

The fused score of an image and a caption is the mean, over the caption's words, of each word's best
cosine similarity with any region (after a learnt projection of both): a light "local matching"
alternative to MMCA's cross attention, in the spirit of SCAN's text-to-image attention.
"""

from __future__ import annotations

from types import ModuleType

import torch
from pydantic import Field
from torch import Tensor, nn

from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, FusionBlock, hookimpl, l2_normalize


class WordRegionMaxConfig(ComponentConfig):
    proj_dim: int = Field(256, gt=0, description="Size of the space where words and regions are compared.")
    temperature: float = Field(1.0, gt=0.0, description="Scale applied to the word-region cosines before max.")


class WordRegionMax(FusionBlock):
    """Mean over words of the best word-region cosine: (N_images, N_texts)."""

    Config = WordRegionMaxConfig

    @classmethod
    def test_config(cls) -> dict:
        return {"proj_dim": 16}

    def __init__(self, config: WordRegionMaxConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        self.region_proj = nn.Linear(context.embed_dim, config.proj_dim)
        self.word_proj = nn.Linear(context.embed_dim, config.proj_dim)

    def forward(self, images: Fragments, texts: Fragments) -> Tensor:
        regions = l2_normalize(self.region_proj(images.features))  # (I, k, p)
        words = l2_normalize(self.word_proj(texts.features))  # (T, L, p)
        cos = torch.einsum("ikp,tlp->itlk", regions, words) * self.config.temperature
        cos = cos.masked_fill(~images.mask[:, None, None, :], float("-inf"))
        best = cos.amax(dim=-1)  # (I, T, L): each word's best region
        valid = texts.mask[None].to(best.dtype)
        return (best.masked_fill(valid == 0, 0) * valid).sum(-1) / valid.sum(-1).clamp_min(1)


@hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.fusion.register("word-region-max", WordRegionMax)
