"""Building models by name: ``create_model``, ``list_models``, ``list_components``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmzoo import registry
from mmzoo.config import ModelConfig, apply_overrides
from mmzoo.errors import ConfigError
from mmzoo.model import MatchingModel


def resolve_config(
    name_or_config: str | Mapping[str, Any] | ModelConfig, overrides: Mapping[str, Any] | None = None
) -> ModelConfig:
    """A recipe name, plain config data or a ModelConfig, with dotted overrides applied and validated."""
    if isinstance(name_or_config, str):
        data = registry.model.get(name_or_config).config
    elif isinstance(name_or_config, ModelConfig):
        data = name_or_config.to_dict()
    elif isinstance(name_or_config, Mapping):
        data = dict(name_or_config)
    else:
        raise ConfigError(f"create_model takes a recipe name or a config; got {type(name_or_config).__name__}.")
    return ModelConfig.parse(apply_overrides(data, overrides or {}))


def create_model(name_or_config: str | Mapping[str, Any] | ModelConfig, **overrides: Any) -> MatchingModel:
    """Build a model from a registered recipe or a config, with dotted overrides.

    Pretrained parts a recipe names (a BERT checkpoint, a timm backbone) are loaded by their
    components; the matching heads start from random weights. For trained weights use
    :func:`mmzoo.from_pretrained`.

    Examples:
        >>> model = mmzoo.create_model("mmca", **{"fusion.heads": 8, "alpha": 0.5})  # doctest: +SKIP
    """
    return MatchingModel(resolve_config(name_or_config, overrides))


def list_models(pattern: str = "*") -> list[str]:
    """Registered recipe names matching a glob, naturally sorted: ``list_models("mmca*")``."""
    return registry.model.names(pattern)


def list_components(kind: str, pattern: str = "*") -> list[str]:
    """Registered names of one kind (``visual_encoder``, ``text_encoder``, ``fusion``, ``loss``, ``converter``, ...)."""
    return registry.get_registry(kind).names(pattern)


__all__ = ["create_model", "list_components", "list_models", "resolve_config"]
