"""From pixels: timm backbones as visual encoders, with preprocessing and offline ImageNet weights.

Registers the visual encoder ``timm-grid`` (any timm backbone's last feature map as regions, then the
region head) and the recipe ``pixels-lite0`` (``recipes.py``: offline ImageNet EfficientNet-Lite0, frozen,
grid regions, GRU text encoder, cosine score). ``timm`` is imported only when such a model is built.
See docs/vision.md.
"""

from __future__ import annotations

from types import ModuleType

from mmzoo.plugin import hookimpl
from mmzoo_plugins.vision.encoder import TimmGridEncoder
from mmzoo_plugins.vision.recipes import RECIPES
from mmzoo_plugins.vision.zoo import ENTRIES


@hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.visual_encoder.register("timm-grid", TimmGridEncoder)
    for name, recipe in RECIPES.items():
        registry.model.register(name, recipe)
    for entry in ENTRIES:
        registry.pretrained.register(entry.alias, entry)
