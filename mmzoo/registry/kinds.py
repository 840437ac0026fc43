"""One :class:`~mmzoo.registry.registry.Registry` per kind of thing a plugin provides.

This module is what a plugin's hook receives, so registering reads naturally::

    @mmzoo.plugin.hookimpl
    def mmzoo_register(registry):
        registry.fusion.register("my-fusion", MyFusion)
        registry.pretrained.register("my-model-coco", mmzoo.plugin.PretrainedEntry(...))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mmzoo.errors import PluginError, UnknownComponentError
from mmzoo.registry.records import PretrainedEntry, Recipe
from mmzoo.registry.registry import Registry

if TYPE_CHECKING:
    from mmzoo.contracts import Converter, DataFormat, FusionBlock, Loss, TextEncoder, VisualEncoder


# The bases are looked up when something registers (and so has imported torch already): importing the registry,
# as ``mmzoo --help`` does, stays free of torch.
def _configured_class(base_name: str, what: str) -> Callable[[str, Any], Any]:
    def validate(name: str, obj: Any) -> Any:
        from mmzoo import contracts
        from mmzoo.contracts import ComponentConfig

        base = getattr(contracts, base_name)
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise PluginError(f"{what} {name!r} must be a subclass of mmzoo.{base.__name__}; got {obj!r}.")
        config = getattr(obj, "Config", None)
        if not (isinstance(config, type) and issubclass(config, ComponentConfig)):
            raise PluginError(f"{obj.__name__}.Config must subclass mmzoo.plugin.ComponentConfig.")
        return obj

    return validate


def _component(base_name: str) -> Callable[[str, Any], Any]:
    return _configured_class(base_name, "component")


def _recipe(name: str, obj: Any) -> Recipe:
    if isinstance(obj, dict):
        obj = Recipe(config=obj)
    if not isinstance(obj, Recipe):
        raise PluginError(f"model {name!r} must be a mmzoo.plugin.Recipe or a config dict; got {type(obj).__name__}.")
    return obj


def _pretrained(name: str, obj: Any) -> PretrainedEntry:
    if not isinstance(obj, PretrainedEntry):
        raise PluginError(f"pretrained {name!r} must be a mmzoo.plugin.PretrainedEntry; got {type(obj).__name__}.")
    if obj.alias != name:
        raise PluginError(f"pretrained entry registered as {name!r} calls itself {obj.alias!r}; use one name.")
    return obj


def _data_format(name: str, obj: Any) -> type[DataFormat]:
    from mmzoo.contracts import DataFormat

    if not (isinstance(obj, type) and issubclass(obj, DataFormat)):
        raise PluginError(f"data_format {name!r} must be a subclass of mmzoo.plugin.DataFormat; got {obj!r}.")
    return obj


visual_encoder: Registry[type[VisualEncoder]] = Registry("visual_encoder", _component("VisualEncoder"))
text_encoder: Registry[type[TextEncoder]] = Registry("text_encoder", _component("TextEncoder"))
fusion: Registry[type[FusionBlock]] = Registry("fusion", _component("FusionBlock"))
loss: Registry[type[Loss]] = Registry("loss", _component("Loss"))
model: Registry[Recipe] = Registry("model", _recipe)
pretrained: Registry[PretrainedEntry] = Registry("pretrained", _pretrained)
converter: Registry[type[Converter]] = Registry("converter", _configured_class("Converter", "converter"))
data_format: Registry[type[DataFormat]] = Registry("data_format", _data_format)

#: kind name -> registry; the component kinds first, in the order the config sections use.
KINDS: dict[str, Registry[Any]] = {
    "visual_encoder": visual_encoder,
    "text_encoder": text_encoder,
    "fusion": fusion,
    "loss": loss,
    "model": model,
    "pretrained": pretrained,
    "converter": converter,
    "data_format": data_format,
}
#: the kinds whose entries are model components (config sections name them).
COMPONENT_KINDS = ("visual_encoder", "text_encoder", "fusion", "loss")


def get_registry(kind: str) -> Registry[Any]:
    """The registry of ``kind`` (one of ``KINDS``)."""
    try:
        return KINDS[kind]
    except KeyError:
        raise UnknownComponentError(f"No kind {kind!r}; kinds are {', '.join(KINDS)}.") from None


__all__ = [
    "COMPONENT_KINDS",
    "KINDS",
    "converter",
    "data_format",
    "fusion",
    "get_registry",
    "loss",
    "model",
    "pretrained",
    "text_encoder",
    "visual_encoder",
]
