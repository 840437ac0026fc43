"""From pixels: timm backbones as visual encoders, with preprocessing and offline ImageNet weights.

Registers the visual encoder ``timm-grid`` (any timm backbone's last feature map as regions, then the
region head) and the recipe ``pixels-lite0`` (offline ImageNet EfficientNet-Lite0, frozen, grid
regions, GRU text encoder, cosine score). ``timm`` is imported only when such a model is built.
See docs/vision.md.
"""

from __future__ import annotations

from types import ModuleType

import mmzoo
from mmzoo_plugins.vision.encoder import TimmGridEncoder

PAPER = "Grid features as regions: Jiang et al., In Defense of Grid Features for Visual Question Answering, CVPR 2020"

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


@mmzoo.hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.visual_encoder.register("timm-grid", TimmGridEncoder)
    registry.model.register(
        "pixels-lite0",
        mmzoo.Recipe(
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
    )
