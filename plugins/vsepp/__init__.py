"""VSE++ (Faghri et al., BMVC 2018): global 1:1 matching, the baseline MMCA improves on.

Registers the mean-pooled region encoder ``mean-fc``, the word-embedding + GRU text encoder ``gru`` and
the recipe ``vsepp`` (``recipes.py``).
"""

from __future__ import annotations

from types import ModuleType

from mmzoo.plugin import hookimpl
from mmzoo_plugins.vsepp.recipes import RECIPES
from mmzoo_plugins.vsepp.text import GRUTextEncoder
from mmzoo_plugins.vsepp.visual import MeanFC
from mmzoo_plugins.vsepp.zoo import ENTRIES


@hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.visual_encoder.register("mean-fc", MeanFC)
    registry.text_encoder.register("gru", GRUTextEncoder)
    for name, recipe in RECIPES.items():
        registry.model.register(name, recipe)
    for entry in ENTRIES:
        registry.pretrained.register(entry.alias, entry)
