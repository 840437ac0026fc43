"""VSE-infinity: Chen, Hu, Wu, Jiang, Wang, Learning the Best Pooling Strategy for Visual Semantic Embedding, CVPR 2021.

A dual encoder: each side pools its fragments with GPO (the generalized pooling operator, ``gpo.py``) into
one L2-normalised vector, and the score is their cosine. Registers the encoders ``vse-infinity-regions``
(BUTD region features), ``vse-infinity-grid`` (pixels through a timm ResNeXt), ``vse-infinity-bert`` and
``vse-infinity-bigru``; the recipes ``vse-infinity``, ``vse-infinity-bigru`` and ``vse-infinity-wsl-grid`` (``recipes.py``);
the converters ``vse-infinity`` and ``vse-infinity-grid`` for the checkpoints their ``train.py`` writes (``convert.py``);
and the zoo entries of the weights they published on the Hub (``zoo.py``). Written from woodfrog/vse_infty at
29df9d6 (master, BERT) and the ``bigru`` branch; see docs/vse-infinity.md.
"""

from __future__ import annotations

from types import ModuleType

from mmzoo.plugin import hookimpl
from mmzoo_plugins.vse_infinity.bert import VseBertText
from mmzoo_plugins.vse_infinity.bigru import VseBiGRUText
from mmzoo_plugins.vse_infinity.convert import GridConverter, RegionConverter
from mmzoo_plugins.vse_infinity.grid import VseGrid
from mmzoo_plugins.vse_infinity.recipes import RECIPES
from mmzoo_plugins.vse_infinity.regions import VseRegions
from mmzoo_plugins.vse_infinity.zoo import ENTRIES


@hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.visual_encoder.register("vse-infinity-regions", VseRegions)
    registry.visual_encoder.register("vse-infinity-grid", VseGrid)
    registry.text_encoder.register("vse-infinity-bert", VseBertText)
    registry.text_encoder.register("vse-infinity-bigru", VseBiGRUText)
    registry.converter.register("vse-infinity", RegionConverter)
    registry.converter.register("vse-infinity-grid", GridConverter)
    for name, recipe in RECIPES.items():
        registry.model.register(name, recipe)
    for entry in ENTRIES:
        registry.pretrained.register(entry.alias, entry)
