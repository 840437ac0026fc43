"""MMCA: Multi-Modality Cross Attention Network (Wei, Zhang, Li, Zhang, Wu, CVPR 2020).

Registers the image self-attention encoder, the BERT + 1D-CNN text encoder, the cross-attention
fusion block, the recipes ``mmca`` and ``mmca-no-cross`` and the zoo entries ``mmca-coco`` / ``mmca-f30k``. Where the paper is silent, values follow
SAEM (Wu et al., ACM MM 2019), which shares both single-modality branches; see docs/mmca.md.
"""

from __future__ import annotations

from types import ModuleType

from mmzoo.plugin import Recipe, hookimpl
from mmzoo_plugins.mmca.fusion import CrossAttentionFusion
from mmzoo_plugins.mmca.regions import RegionSelfAttention
from mmzoo_plugins.mmca.text import BertCNNTextEncoder
from mmzoo_plugins.mmca.zoo import ENTRIES, PAPER

#: SAEM's schedule (Adam 1e-4, x0.1 every 10 epochs, 30 epochs, batch 64, clip 2), one warm-up epoch.
TRAINING = {
    "epochs": 30,
    "batch_size": 64,
    "lr": 1e-4,
    "lr_decay_every": 10,
    "lr_decay": 0.1,
    "grad_clip": 2.0,
    "warmup_epochs": 1,
}

MMCA = {
    "visual": {"name": "mmca-regions", "in_dim": 2048},
    "text": {"name": "bert-cnn", "pretrained": "bert-base-uncased"},
    "fusion": {"name": "mmca-cross"},
    "loss": {"name": "triplet", "margin": 0.2},
    "alpha": 1.0,
    "embed_dim": 1024,
}


@hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.visual_encoder.register("mmca-regions", RegionSelfAttention)
    registry.text_encoder.register("bert-cnn", BertCNNTextEncoder)
    registry.fusion.register("mmca-cross", CrossAttentionFusion)
    registry.model.register(
        "mmca",
        Recipe(
            MMCA,
            "MMCA: region self-attention + BERT/1D-CNN + cross attention, S = <i0,c0> + alpha <i1,c1>",
            PAPER,
            TRAINING,
        ),
    )
    registry.model.register(
        "mmca-no-cross",
        Recipe(
            {**MMCA, "fusion": None, "alpha": 0.0},
            "MMCA without the cross-attention term (alpha = 0): the two self-attention branches alone",
            PAPER,
            TRAINING,
        ),
    )
    for entry in ENTRIES:
        registry.pretrained.register(entry.alias, entry)
