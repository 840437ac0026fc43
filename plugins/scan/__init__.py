"""SCAN: Stacked Cross Attention for Image-Text Matching (Lee, Chen, Hua, Hu, He, ECCV 2018).

A port of kuanghuei/SCAN at commit 8063557 (Apache-2.0), written from its ``model.py``, ``data.py``,
``vocab.py``, ``train.py`` and ``evaluation.py``. Registers the region encoder ``scan-regions``, the
text encoder ``scan-gru``, the fusion blocks ``scan-t2i`` and ``scan-i2t``, the recipes ``scan-t2i``
and ``scan-i2t`` (their README's Flickr30K settings), and the checkpoint converter ``scan``
(``mmzoo convert scan model_best.pth.tar --vocab f30k_precomp_vocab.json --out DIR``). SCAN's score is
the cross-attention term alone (``dual_weight: 0``); the encoders' pooled vectors only shortlist.
The authors published no checkpoints, so there is no zoo entry with weights (docs/scan.md).
"""

from __future__ import annotations

from types import ModuleType

from mmzoo.plugin import hookimpl
from mmzoo_plugins.scan.convert import SCANConverter
from mmzoo_plugins.scan.fusion import SCANImageToText, SCANTextToImage
from mmzoo_plugins.scan.recipes import RECIPES
from mmzoo_plugins.scan.regions import SCANRegions
from mmzoo_plugins.scan.text import SCANText
from mmzoo_plugins.scan.zoo import ENTRIES


@hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.visual_encoder.register("scan-regions", SCANRegions)
    registry.text_encoder.register("scan-gru", SCANText)
    registry.fusion.register("scan-t2i", SCANTextToImage)
    registry.fusion.register("scan-i2t", SCANImageToText)
    registry.converter.register("scan", SCANConverter)
    for name, recipe in RECIPES.items():
        registry.model.register(name, recipe)
    for entry in ENTRIES:
        registry.pretrained.register(entry.alias, entry)
