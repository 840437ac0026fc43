"""The registries plugins fill, and plugin discovery.

``mmzoo.registry.<kind>`` is the registry of one kind (``visual_encoder``, ``text_encoder``, ``fusion``,
``loss``, ``model``, ``pretrained``, ``converter``, ``data_format``); :mod:`mmzoo.registry.plugins` loads the
installed plugins on the first lookup.
"""

from __future__ import annotations

from mmzoo.registry import plugins
from mmzoo.registry.kinds import (
    COMPONENT_KINDS,
    KINDS,
    converter,
    data_format,
    fusion,
    get_registry,
    loss,
    model,
    pretrained,
    text_encoder,
    visual_encoder,
)
from mmzoo.registry.records import (
    CONVERTED,
    MANUAL,
    NATIVE_FORMATS,
    NOT_TRAINED,
    PUBLISHED,
    PretrainedEntry,
    Recipe,
    Weights,
)
from mmzoo.registry.registry import Entry, Registry, natural_key

__all__ = [
    "COMPONENT_KINDS",
    "CONVERTED",
    "KINDS",
    "MANUAL",
    "NATIVE_FORMATS",
    "NOT_TRAINED",
    "PUBLISHED",
    "Entry",
    "PretrainedEntry",
    "Recipe",
    "Registry",
    "Weights",
    "converter",
    "data_format",
    "fusion",
    "get_registry",
    "loss",
    "model",
    "natural_key",
    "plugins",
    "pretrained",
    "text_encoder",
    "visual_encoder",
]
