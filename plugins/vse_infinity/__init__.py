"""VSE-infinity: Chen, Hu, Wu, Jiang, Wang, Learning the Best Pooling Strategy for Visual Semantic Embedding, CVPR 2021.

A dual encoder: each side pools its fragments with GPO (the generalized pooling operator, ``gpo.py``) into
one L2-normalised vector, and the score is their cosine. Registers the encoders ``vse-infinity-regions``
(BUTD region features), ``vse-infinity-grid`` (pixels through a timm ResNeXt), ``vse-infinity-bert`` and
``vse-infinity-bigru``; the recipes ``vse-infinity``, ``vse-infinity-bigru`` and ``vse-infinity-wsl-grid``;
the converters ``vse-infinity`` and ``vse-infinity-grid`` for the checkpoints their ``train.py`` writes;
and the zoo entries of the weights they published on the Hub (``zoo.py``). Written from woodfrog/vse_infty at
29df9d6 (master, BERT) and the ``bigru`` branch; see docs/vse-infinity.md.
"""

from __future__ import annotations

from types import ModuleType

from mmzoo.plugin import Recipe, hookimpl
from mmzoo_plugins.vse_infinity.bert import VseBertText
from mmzoo_plugins.vse_infinity.bigru import VseBiGRUText
from mmzoo_plugins.vse_infinity.converters import GridConverter, RegionConverter
from mmzoo_plugins.vse_infinity.grid import VseGrid
from mmzoo_plugins.vse_infinity.meta import PAPER
from mmzoo_plugins.vse_infinity.regions import VseRegions
from mmzoo_plugins.vse_infinity.zoo import zoo_entries

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


@hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.visual_encoder.register("vse-infinity-regions", VseRegions)
    registry.visual_encoder.register("vse-infinity-grid", VseGrid)
    registry.text_encoder.register("vse-infinity-bert", VseBertText)
    registry.text_encoder.register("vse-infinity-bigru", VseBiGRUText)
    registry.model.register(
        "vse-infinity",
        Recipe(
            recipe(REGIONS, BERT),
            "VSE-infinity: BUTD regions (FC + MLP) and fine-tuned BERT, each pooled by GPO, cosine score",
            PAPER,
            TRAINING,
        ),
    )
    registry.model.register(
        "vse-infinity-bigru",
        Recipe(
            recipe(REGIONS, {"name": "vse-infinity-bigru"}),
            "VSE-infinity with the bi-GRU text encoder (their bigru branch): no BERT, trains on a CPU",
            PAPER,
            TRAINING_BIGRU,
        ),
    )
    registry.model.register(
        "vse-infinity-wsl-grid",
        Recipe(
            recipe({"name": "vse-infinity-grid", "backbone": "resnext101_32x8d"}, BERT),
            "VSE-infinity from pixels: WSL ResNeXt-101 32x8d grid + GPO, BERT + GPO (their WSL grid variant)",
            PAPER,
            TRAINING_GRID,
        ),
    )
    registry.converter.register("vse-infinity", RegionConverter)
    registry.converter.register("vse-infinity-grid", GridConverter)
    for entry in zoo_entries():
        registry.pretrained.register(entry.alias, entry)
