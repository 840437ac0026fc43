"""Building models by name: ``create_model``, ``list_models``, ``list_components``."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

from mmzoo import registry
from mmzoo.config import ModelConfig, apply_overrides
from mmzoo.errors import ConfigError, UnknownComponentError
from mmzoo.hub import zoo
from mmzoo.model import MatchingModel


def resolve_config(
    name_or_config: str | Mapping[str, Any] | ModelConfig, overrides: Mapping[str, Any] | None = None
) -> ModelConfig:
    """A recipe name, plain config data or a ModelConfig, with dotted overrides applied and validated."""
    if isinstance(name_or_config, str):
        if name_or_config not in registry.model and zoo.is_alias(name_or_config):
            raise UnknownComponentError(
                f"{name_or_config!r} is a pretrained model (zoo alias), not a recipe: load its weights with "
                f"mmzoo.from_pretrained({name_or_config!r}); its untrained architecture is "
                f"mmzoo.create_model({zoo.get_pretrained(name_or_config).recipe!r})."
            )
        data = registry.model.get(name_or_config).config
    elif isinstance(name_or_config, ModelConfig):
        data = name_or_config.to_dict()
    elif isinstance(name_or_config, Mapping):
        data = dict(name_or_config)
    else:
        raise ConfigError(f"create_model takes a recipe name or a config; got {type(name_or_config).__name__}.")
    return ModelConfig.parse(apply_overrides(data, overrides or {}))


def create_model(
    name_or_config: str | Mapping[str, Any] | ModelConfig, pretrained: bool = False, **overrides: Any
) -> MatchingModel:
    """Build a model from a registered recipe or a config, with dotted overrides.

    Pretrained parts a recipe names (a BERT checkpoint, a timm backbone) are loaded by their
    components; the matching heads start from random weights. For trained weights use
    :func:`mmzoo.from_pretrained` (``pretrained=True``, timm's habit, raises an error naming the call and the
    zoo aliases of the recipe, so no one trains on random heads believing them trained).

    Examples:
        >>> model = mmzoo.create_model("mmca", **{"fusion.heads": 8, "alpha": 0.5})  # doctest: +SKIP
    """
    if pretrained:
        raise ConfigError(_pretrained_hint(name_or_config))
    return MatchingModel(resolve_config(name_or_config, overrides))


def _pretrained_hint(name: Any) -> str:
    """What to call instead of ``create_model(name, pretrained=True)``."""
    head = "create_model builds an architecture with untrained matching heads; trained weights load with"
    if not isinstance(name, str):
        return f"{head} mmzoo.from_pretrained(NAME_OR_FOLDER) (a config has no weights)."
    if zoo.is_alias(name):
        return f"{head} mmzoo.from_pretrained({name!r})."
    aliases = [alias for alias, recipe in zoo.list_pretrained() if recipe == name]
    if aliases:
        calls = ", ".join(f"mmzoo.from_pretrained({a!r})" for a in aliases)
        return f"{head} {calls} (the zoo entries of the recipe {name!r}; `mmzoo list --pretrained` shows them all)."
    return (
        f"{head} mmzoo.from_pretrained: the zoo has no weights for the recipe {name!r} (`mmzoo list --pretrained`); "
        "train them (`mmzoo train`) and load the run's folder, or use 'hf-hub:ORG/REPO'."
    )


def list_models(
    pattern: str | Sequence[str] = "*", *, exclude: str | Sequence[str] = (), pretrained: bool = False
) -> list[str]:
    """Registered recipe names matching a glob (or any of several), naturally sorted: ``list_models("mmca*")``.

    As in timm, ``exclude`` drops names matching its glob(s) and ``pretrained=True`` keeps only the recipes that
    have zoo weights (their aliases come from :func:`mmzoo.list_pretrained`).

    Example:
        >>> mmzoo.list_models(["mmca*", "vsepp"], exclude="*no-cross")
        ['mmca', 'vsepp']
    """
    names = _matching(registry.model.names(), pattern, exclude)
    if pretrained:
        trained = {recipe for _, recipe in zoo.list_pretrained()}
        names = [n for n in names if n in trained]
    return names


def _matching(names: list[str], pattern: str | Sequence[str], exclude: str | Sequence[str]) -> list[str]:
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    excludes = [exclude] if isinstance(exclude, str) else list(exclude)
    keep = [n for n in names if any(fnmatch.fnmatchcase(n.lower(), p.lower()) for p in patterns)]
    return [n for n in keep if not any(fnmatch.fnmatchcase(n.lower(), p.lower()) for p in excludes)]


def list_components(kind: str, pattern: str = "*") -> list[str]:
    """Registered names of one kind (``visual_encoder``, ``text_encoder``, ``fusion``, ``loss``, ``converter``, ...)."""
    return registry.get_registry(kind).names(pattern)


__all__ = ["create_model", "list_components", "list_models", "resolve_config"]
