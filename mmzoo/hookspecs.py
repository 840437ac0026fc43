"""The hooks a plugin may implement. One hook today: ``mmzoo_register(registry)``."""

from __future__ import annotations

from types import ModuleType

import pluggy

hookspec = pluggy.HookspecMarker("mmzoo")
hookimpl = pluggy.HookimplMarker("mmzoo")


@hookspec
def mmzoo_register(registry: ModuleType) -> None:
    """Register components and recipes, e.g. ``registry.fusion.register("my-fusion", MyFusion)``.

    ``registry`` is the :mod:`mmzoo.registry` module; its attributes ``visual_encoder``,
    ``text_encoder``, ``fusion``, ``loss`` and ``model`` are the per-kind registries.
    """
