"""BLIP (Li et al., ICML 2022): the ITC dual encoder and the ITM matching head, from transformers' classes.

Registers the visual encoder ``blip-vision``, the text encoder ``blip-text``, the fusion block ``blip-itm``, the
recipes ``blip-itm-base`` / ``blip-itm-large`` and the zoo entries ``blip-itm-{base,large}-{coco,flickr}``;
and BLIP-2 (Li et al., ICML 2023): ``blip2-vision``, ``blip2-text``, the fusion blocks ``blip2-itc`` and
``blip2-itm``, the recipes ``blip2-itc-vit-g`` / ``blip2-itm-vit-g`` and the entry ``blip2-itm-vit-g-coco``
(docs/blip.md).
"""

from __future__ import annotations

from types import ModuleType

from mmzoo.plugin import hookimpl
from mmzoo_plugins.blip.blip2_fusion import Blip2ITC, Blip2ITM
from mmzoo_plugins.blip.blip2_towers import Blip2Text, Blip2Vision
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
    registry.visual_encoder.register("blip2-vision", Blip2Vision)
    registry.text_encoder.register("blip2-text", Blip2Text)
    registry.fusion.register("blip2-itc", Blip2ITC)
    registry.fusion.register("blip2-itm", Blip2ITM)
    for name, recipe in RECIPES.items():
        registry.model.register(name, recipe)
    for entry in ENTRIES:
        registry.pretrained.register(entry.alias, entry)
