"""SGRAF: Similarity Graph Reasoning and Attention Filtration (Diao, Zhang, Ma, Lu, AAAI 2021).

A port of Paranioar/SGRAF, branch ``python3.6`` (the branch its published checkpoints are for). Registers the
region encoder ``sgraf-fc``, the text encoder ``sgraf-gru``, the fusion blocks ``sgr`` and ``saf``, the recipes
``sgr`` and ``saf`` (``recipes.py``), the converter ``sgraf`` (``mmzoo convert sgraf CKPT --vocab VOCAB.json``)
and the zoo entries of the authors' checkpoints (``zoo.py``; downloaded by hand from their Google Drive).
See docs/sgraf.md.
"""

from __future__ import annotations

from types import ModuleType

from mmzoo.plugin import hookimpl
from mmzoo_plugins.sgraf.convert import SGRAFConverter
from mmzoo_plugins.sgraf.fusion import SAFFusion, SGRFusion
from mmzoo_plugins.sgraf.recipes import RECIPES
from mmzoo_plugins.sgraf.text import SGRAFText
from mmzoo_plugins.sgraf.visual import SGRAFRegions
from mmzoo_plugins.sgraf.zoo import ENTRIES


@hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.visual_encoder.register("sgraf-fc", SGRAFRegions)
    registry.text_encoder.register("sgraf-gru", SGRAFText)
    registry.fusion.register("sgr", SGRFusion)
    registry.fusion.register("saf", SAFFusion)
    registry.converter.register("sgraf", SGRAFConverter)
    for name, recipe in RECIPES.items():
        registry.model.register(name, recipe)
    for entry in ENTRIES:
        registry.pretrained.register(entry.alias, entry)
