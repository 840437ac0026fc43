"""MMCA: Multi-Modality Cross Attention Network (Wei, Zhang, Li, Zhang, Wu, CVPR 2020).

Registers the image self-attention encoder, the BERT + 1D-CNN text encoder, the cross-attention fusion block,
the recipes ``mmca`` and ``mmca-no-cross`` (``recipes.py``) and the zoo entries ``mmca-coco`` / ``mmca-f30k``
(``zoo.py``). Where the paper is silent, values follow SAEM (Wu et al., ACM MM 2019), which shares both
single-modality branches; see docs/mmca.md.
"""

from __future__ import annotations

from types import ModuleType

from mmzoo.plugin import hookimpl
from mmzoo_plugins.mmca.fusion import CrossAttentionFusion
from mmzoo_plugins.mmca.recipes import RECIPES
from mmzoo_plugins.mmca.regions import RegionSelfAttention
from mmzoo_plugins.mmca.text import BertCNNTextEncoder
from mmzoo_plugins.mmca.zoo import ENTRIES


@hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.visual_encoder.register("mmca-regions", RegionSelfAttention)
    registry.text_encoder.register("bert-cnn", BertCNNTextEncoder)
    registry.fusion.register("mmca-cross", CrossAttentionFusion)
    for name, recipe in RECIPES.items():
        registry.model.register(name, recipe)
    for entry in ENTRIES:
        registry.pretrained.register(entry.alias, entry)
