"""The recipe ``pixels-lite0``: frozen offline ImageNet EfficientNet-Lite0 grid regions, GRU text, cosine score."""

from __future__ import annotations

from mmzoo.plugin import Recipe
from mmzoo_plugins.vision.zoo import PAPER

#: head training on top of a frozen backbone (VSE++ schedule, smaller batches for pixels), with the ``vsepp``
#: recipe's warm-up: one epoch over all negatives before the hardest negative. Without it this recipe collapsed on
#: the rendered shapes data with its own defaults: dev rsum 47.7 / 24.1 / 24.7 over 3 epochs, each flagged
#: collapsed, against 282.4 / 321.3 / 320.3 with it (benchmarks/pixels_warmup.sh, docs/training.md).
TRAINING = {
    "epochs": 30,
    "batch_size": 64,
    "lr": 2e-4,
    "lr_decay_every": 15,
    "lr_decay": 0.1,
    "grad_clip": 2.0,
    "warmup_epochs": 1,
}

RECIPES = {
    "pixels-lite0": Recipe(
        {
            "visual": {
                "name": "timm-grid",
                "backbone": "tf_efficientnet_lite0",
                "weights": "offline:efficientnet_lite0",
            },
            "text": {"name": "gru"},
            "fusion": None,
            "loss": {"name": "triplet", "margin": 0.2},
            "alpha": 0.0,
            "embed_dim": 1024,
        },
        "From pixels: frozen offline ImageNet EfficientNet-Lite0 grid regions + self-attention, GRU text",
        PAPER,
        TRAINING,
    ),
}
