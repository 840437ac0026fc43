"""BLIP (Li et al., ICML 2022): the ITC dual encoder and the ITM matching head, from transformers' classes.

Registers the visual encoder ``blip-vision``, the text encoder ``blip-text``, the fusion block ``blip-itm``, the
recipes ``blip-itm-base`` / ``blip-itm-large`` and the zoo entries ``blip-itm-{base,large}-{coco,flickr}``
(docs/blip.md).
"""

from __future__ import annotations

from types import ModuleType

from mmzoo.plugin import hookimpl
from mmzoo_plugins.blip.itm import BlipITM
from mmzoo_plugins.blip.recipes import RECIPES
from mmzoo_plugins.blip.text import BlipText
from mmzoo_plugins.blip.vision import BlipVision
from mmzoo_plugins.blip.zoo import ENTRIES


@hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.visual_encoder.register("blip-vision", BlipVision)
    registry.text_encoder.register("blip-text", BlipText)
    registry.fusion.register("blip-itm", BlipITM)
    for name, recipe in RECIPES.items():
        registry.model.register(name, recipe)
    for entry in ENTRIES:
        registry.pretrained.register(entry.alias, entry)
