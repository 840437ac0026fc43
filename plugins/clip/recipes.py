"""The recipes of the clip family: a dual encoder of a CLIP or SigLIP checkpoint, and MMCA's fusion over one.

``clip`` and ``siglip`` build the official towers (downloaded through their zoo entries) and score with the
cosine of the pooled embeddings. ``clip-mmca`` and ``siglip-mmca`` put MMCA's cross-attention fusion block
(registered by the mmca family as ``mmca-cross``) over the frozen towers' patch and token states: only the fusion
trains, so the towers' outputs can be computed once per image and caption (docs/clip.md).
"""

from __future__ import annotations

from typing import Any

from mmzoo.plugin import Recipe
from mmzoo_plugins.clip.zoo import PAPERS

#: zero-shot towers: nothing to train by default; a fine-tune unfreezes them (`visual.frozen=false`).
TRAINING = {
    "epochs": 10,
    "batch_size": 64,
    "lr": 1e-5,
    "lr_decay_every": 5,
    "lr_decay": 0.1,
    "grad_clip": 2.0,
    "warmup_epochs": 0,
}
#: the fusion block over frozen towers (MMCA's schedule, shorter: the towers already align the two sides).
FUSION_TRAINING = {
    "epochs": 15,
    "batch_size": 64,
    "lr": 2e-4,
    "lr_decay_every": 10,
    "lr_decay": 0.1,
    "grad_clip": 2.0,
    "warmup_epochs": 1,
}


def dual(source: str, embed_dim: int) -> dict[str, Any]:
    """A dual encoder of the checkpoint ``source`` (a zoo alias), scored by the cosine of the pooled embeddings."""
    return {
        "visual": {"name": "clip-vision", "source": source},
        "text": {"name": "clip-text", "source": source},
        "fusion": None,
        "loss": {"name": "triplet", "margin": 0.2},
        "alpha": 0.0,
        "embed_dim": embed_dim,
    }


def with_mmca(source: str, embed_dim: int, heads: int) -> dict[str, Any]:
    """MMCA's fusion over the frozen towers of ``source``: S = <i0, c0> + <i1, c1>."""
    config = dual(source, embed_dim)
    config["fusion"] = {"name": "mmca-cross", "heads": heads}
    config["alpha"] = 1.0
    return config


RECIPES = {
    "clip": Recipe(dual("clip-vit-base-patch32", 512), "CLIP ViT-B/32 dual encoder (OpenAI weights)", PAPERS["clip"]),
    "siglip": Recipe(
        dual("siglip-base-patch16-224", 768), "SigLIP ViT-B/16 dual encoder (Google weights)", PAPERS["siglip"]
    ),
    "clip-mmca": Recipe(
        with_mmca("clip-vit-base-patch32", 512, 8),
        "MMCA's cross-attention fusion over frozen CLIP ViT-B/32 patch and token states",
        PAPERS["clip"],
        FUSION_TRAINING,
    ),
    "siglip-mmca": Recipe(
        with_mmca("siglip-base-patch16-224", 768, 12),
        "MMCA's cross-attention fusion over frozen SigLIP ViT-B/16 patch and token states",
        PAPERS["siglip"],
        FUSION_TRAINING,
    ),
}


__all__ = ["FUSION_TRAINING", "RECIPES", "TRAINING", "dual", "with_mmca"]
