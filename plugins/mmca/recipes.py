"""MMCA's recipes ``mmca`` and ``mmca-no-cross``: the architecture and SAEM's training schedule.

Where the paper is silent, values follow SAEM (Wu et al., ACM MM 2019), which shares both single-modality
branches; see docs/mmca.md.
"""

from __future__ import annotations

from mmzoo.plugin import Recipe
from mmzoo_plugins.mmca.zoo import PAPER

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

RECIPES = {
    "mmca": Recipe(
        MMCA,
        "MMCA: region self-attention + BERT/1D-CNN + cross attention, S = <i0,c0> + alpha <i1,c1>",
        PAPER,
        TRAINING,
    ),
    "mmca-no-cross": Recipe(
        {**MMCA, "fusion": None, "alpha": 0.0},
        "MMCA without the cross-attention term (alpha = 0): the two self-attention branches alone",
        PAPER,
        TRAINING,
    ),
}
