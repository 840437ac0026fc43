"""The recipe ``vsepp``: mean-pooled regions and a GRU, cosine score, hardest-negative triplet loss."""

from __future__ import annotations

from mmzoo.plugin import Recipe
from mmzoo_plugins.vsepp.zoo import PAPER

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

RECIPES = {
    "vsepp": Recipe(
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
}
