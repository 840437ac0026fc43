"""The hooks a plugin may implement. One hook: ``mmzoo_register(registry)``."""

from __future__ import annotations

from types import ModuleType

import pluggy

hookspec = pluggy.HookspecMarker("mmzoo")
hookimpl = pluggy.HookimplMarker("mmzoo")
"""The marker of a plugin's hook implementation: ``@hookimpl`` above ``def mmzoo_register(registry)``."""


@hookspec
def mmzoo_register(registry: ModuleType) -> None:
    """Register components, recipes, pretrained entries, converters and data formats.

    ``registry`` has one registry per kind as attributes: ``visual_encoder``, ``text_encoder``, ``fusion``,
    ``loss``, ``model`` (recipes), ``pretrained`` (zoo entries), ``converter`` and ``data_format``, e.g.
    ``registry.fusion.register("my-fusion", MyFusion)``.
    """
