"""VSE++ (Faghri et al., BMVC 2018): global 1:1 matching, the baseline MMCA improves on.

Registers the mean-pooled region encoder ``mean-fc``, the word-embedding + GRU text encoder ``gru`` and
the recipe ``vsepp``.
"""

from __future__ import annotations

from types import ModuleType

from mmzoo.plugin import Recipe, hookimpl
from mmzoo_plugins.vsepp.text import GRUTextEncoder
from mmzoo_plugins.vsepp.visual import MeanFC

PAPER = "Faghri et al., VSE++: Improving Visual-Semantic Embeddings with Hard Negatives, BMVC 2018"

#: VSE++/SCAN defaults: Adam 2e-4, x0.1 at epoch 15, 30 epochs, batch 128, clip 2; and, unlike VSE++'s code, one
#: warm-up epoch over all negatives before the hardest negative: from the first step, the hardest negative
#: collapsed a fresh embedding on data the schedule was not tuned for (benchmarks/vsepp_warmup.py: dev rsum after 6
#: epochs 26-30 without, 47-55 with, over 3 seeds; docs/training.md).
TRAINING = {
    "epochs": 30,
    "batch_size": 128,
    "lr": 2e-4,
    "lr_decay_every": 15,
    "lr_decay": 0.1,
    "grad_clip": 2.0,
    "warmup_epochs": 1,
}


@hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.visual_encoder.register("mean-fc", MeanFC)
    registry.text_encoder.register("gru", GRUTextEncoder)
    registry.model.register(
        "vsepp",
        Recipe(
            {
                "visual": {"name": "mean-fc", "in_dim": 2048},
                "text": {"name": "gru"},
                "fusion": None,
                "loss": {"name": "triplet", "margin": 0.2},
                "alpha": 0.0,
                "embed_dim": 1024,
            },
            "VSE++: mean-pooled regions and a GRU, cosine score, hardest-negative triplet loss",
            PAPER,
            TRAINING,
        ),
    )
