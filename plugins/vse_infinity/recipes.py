"""VSE-infinity's recipes ``vse-infinity``, ``vse-infinity-bigru`` and ``vse-infinity-wsl-grid``, and their schedules.

Each is a dual encoder: the cosine of the two GPO vectors (no fusion, alpha 0).
"""

from __future__ import annotations

from mmzoo.plugin import Recipe
from mmzoo_plugins.vse_infinity.zoo import PAPER

#: train_region.sh + lib/vse.py (master): AdamW 5e-4 with BERT at 0.1x, weight decay 1e-4, 25 epochs, x0.1 at
#: epoch 15, batch 128 (arguments.py), clip 2, one epoch over all negatives, then the hardest (max_violation).
TRAINING = {
    "optimizer": "adamw",
    "lr": 5e-4,
    "lr_groups": {"text.bert": 0.1},
    "weight_decay": 1e-4,
    "epochs": 25,
    "lr_decay_every": 15,
    "lr_decay": 0.1,
    "batch_size": 128,
    "grad_clip": 2.0,
    "warmup_epochs": 1,
}
#: the bigru branch's lib/vse.py builds torch.optim.AdamW(params, lr) for region models: one group and
#: torch's default weight decay, 0.01.
TRAINING_BIGRU = {**TRAINING, "lr_groups": {}, "weight_decay": 0.01}
#: train_grid.sh: backbone at 0.01x (backbone_lr_factor); their staged unfreezing is not reproduced.
TRAINING_GRID = {**TRAINING, "lr_groups": {"text.bert": 0.1, "visual.grid.backbone": 0.01}}

LOSS = {"name": "triplet", "margin": 0.2, "hardest_negative": True}
REGIONS = {"name": "vse-infinity-regions", "in_dim": 2048}
BERT = {"name": "vse-infinity-bert", "pretrained": "bert-base-uncased"}


def recipe(visual: dict, text: dict) -> dict:
    """A VSE-infinity model config: a dual encoder, the cosine of the two GPO vectors (no fusion, alpha 0)."""
    return {
        "visual": visual,
        "text": text,
        "fusion": None,
        "loss": LOSS,
        "alpha": 0.0,
        "dual_weight": 1.0,
        "embed_dim": 1024,
    }


RECIPES = {
    "vse-infinity": Recipe(
        recipe(REGIONS, BERT),
        "VSE-infinity: BUTD regions (FC + MLP) and fine-tuned BERT, each pooled by GPO, cosine score",
        PAPER,
        TRAINING,
    ),
    "vse-infinity-bigru": Recipe(
        recipe(REGIONS, {"name": "vse-infinity-bigru"}),
        "VSE-infinity with the bi-GRU text encoder (their bigru branch): no BERT, trains on a CPU",
        PAPER,
        TRAINING_BIGRU,
    ),
    "vse-infinity-wsl-grid": Recipe(
        recipe({"name": "vse-infinity-grid", "backbone": "resnext101_32x8d"}, BERT),
        "VSE-infinity from pixels: WSL ResNeXt-101 32x8d grid + GPO, BERT + GPO (their WSL grid variant)",
        PAPER,
        TRAINING_GRID,
    ),
}
