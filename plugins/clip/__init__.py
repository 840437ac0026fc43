"""CLIP, SigLIP and SigLIP 2: transformers' dual encoders as mmzoo towers, with the official weights in the zoo.

Registers the encoders ``clip-vision`` and ``clip-text`` (any of the families: the checkpoint's config says which,
SigLIP 2 NaFlex included), the recipes ``clip``, ``siglip``, ``clip-mmca`` and ``siglip-mmca``, and the zoo entries
of the official weights (``clip-vit-base-patch32`` ... ``siglip2-base-patch16-naflex``), loaded natively from their
Hub repositories.
``transformers`` is imported only when a tower is built. See docs/clip.md.
"""

from __future__ import annotations

from types import ModuleType

from mmzoo.plugin import hookimpl
from mmzoo_plugins.clip.recipes import RECIPES
from mmzoo_plugins.clip.towers import TowerText, TowerVisual
from mmzoo_plugins.clip.zoo import ENTRIES


@hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.visual_encoder.register("clip-vision", TowerVisual)
    registry.text_encoder.register("clip-text", TowerText)
    for name, recipe in RECIPES.items():
        registry.model.register(name, recipe)
    for entry in ENTRIES:
        registry.pretrained.register(entry.alias, entry)
