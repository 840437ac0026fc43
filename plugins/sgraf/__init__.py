"""SGRAF: Similarity Graph Reasoning and Attention Filtration (Diao, Zhang, Ma, Lu, AAAI 2021).

A port of Paranioar/SGRAF, branch ``python3.6`` (the branch its published checkpoints are for). Registers the
region encoder ``sgraf-fc``, the text encoder ``sgraf-gru``, the fusion blocks ``sgr`` and ``saf``, the recipes
``sgr`` and ``saf``, the converter ``sgraf`` (``mmzoo convert sgraf CKPT --vocab VOCAB.json``) and the zoo
entries of the authors' checkpoints (downloaded by hand from their Google Drive). See docs/sgraf.md.
"""

from __future__ import annotations

from types import ModuleType

from mmzoo.plugin import hookimpl
from mmzoo_plugins.sgraf import zoo
from mmzoo_plugins.sgraf.convert import SGRAFConverter
from mmzoo_plugins.sgraf.fusion import SAFFusion, SGRFusion
from mmzoo_plugins.sgraf.recipes import SAF_RECIPE, SGR_RECIPE
from mmzoo_plugins.sgraf.text import SGRAFText
from mmzoo_plugins.sgraf.visual import SGRAFRegions


@hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.visual_encoder.register("sgraf-fc", SGRAFRegions)
    registry.text_encoder.register("sgraf-gru", SGRAFText)
    registry.fusion.register("sgr", SGRFusion)
    registry.fusion.register("saf", SAFFusion)
    registry.model.register("sgr", SGR_RECIPE)
    registry.model.register("saf", SAF_RECIPE)
    registry.converter.register("sgraf", SGRAFConverter)
    zoo.register(registry)
