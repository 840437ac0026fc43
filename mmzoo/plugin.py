"""The face for plugin authors: what a family, a converter or a data format is built from.

A plugin imports only :mod:`mmzoo` (to call models like a user), this module and :mod:`mmzoo.errors`; the
import contract in ``pyproject.toml`` checks it. Here are

* the contracts: :class:`Fragments`, :class:`TokenBatch`, :class:`BuildContext`, the component bases
  (:class:`Component`, :class:`ComponentConfig`, :class:`VisualEncoder`, :class:`TextEncoder`,
  :class:`FusionBlock`, :class:`FusionCache`, :class:`Loss`), :class:`Converter`, :class:`DataFormat`,
  :class:`Split`, and the helpers :func:`l2_normalize`, :func:`masked_mean`;
* the records a family registers: :class:`Recipe`, :class:`PretrainedEntry`, :class:`Weights` and the statuses
  :data:`PUBLISHED`, :data:`CONVERTED`, :data:`MANUAL`, :data:`NOT_TRAINED`; the data schema
  :class:`DataManifest` and the built-in :class:`PrecomputedFormat`;
* the hook marker :data:`hookimpl`, :func:`register_plugin` (a plugin object in-process),
  :func:`plugin_records`, and :func:`get_registry` (a component another plugin registered, by kind and name);
* checkpoints: :func:`read_foreign_checkpoint` (another codebase's file, nothing unpickled but plain data),
  :func:`checkpoint_options`, :func:`load_state_strict`;
* the contract suite of :mod:`mmzoo.testing` (:func:`check_fusion`, :func:`check_visual_encoder`, ...), which
  a plugin's own tests call on its classes.

Names load on first use, like :mod:`mmzoo`'s: importing this module imports neither torch nor pytest.

Examples:
    >>> from mmzoo.plugin import Recipe, hookimpl
    >>> class MyPlugin:
    ...     @hookimpl
    ...     def mmzoo_register(self, registry):
    ...         registry.model.register("my-vsepp", Recipe({"visual": {"name": "vsepp-fc"}}, "VSE++, my way"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmzoo._lazy import lazy_face

if TYPE_CHECKING:  # the same names, for type checkers and readers; at run time they load on first use
    from mmzoo._optional import require
    from mmzoo.checkpoint import checkpoint_options, load_state_strict, read_foreign_checkpoint
    from mmzoo.contracts import (
        BuildContext,
        Component,
        ComponentConfig,
        Converter,
        DataFormat,
        Fragments,
        FusionBlock,
        FusionCache,
        Loss,
        Split,
        TextEncoder,
        TokenBatch,
        VisualEncoder,
        l2_normalize,
        masked_mean,
    )
    from mmzoo.data import DataManifest, PrecomputedFormat
    from mmzoo.registry import (
        CONVERTED,
        MANUAL,
        NOT_TRAINED,
        PUBLISHED,
        PretrainedEntry,
        Recipe,
        Weights,
        get_registry,
    )
    from mmzoo.registry.hookspecs import hookimpl
    from mmzoo.registry.plugins import plugin_records, register_plugin
    from mmzoo.testing import (
        build_component,
        check_fusion,
        check_loss,
        check_recipe,
        check_text_encoder,
        check_visual_encoder,
        random_fragments,
    )

_CONTRACTS = [
    "BuildContext",
    "Component",
    "ComponentConfig",
    "Converter",
    "DataFormat",
    "Fragments",
    "FusionBlock",
    "FusionCache",
    "Loss",
    "Split",
    "TextEncoder",
    "TokenBatch",
    "VisualEncoder",
    "l2_normalize",
    "masked_mean",
]
_RECORDS = ["CONVERTED", "MANUAL", "NOT_TRAINED", "PUBLISHED", "PretrainedEntry", "Recipe", "Weights"]
_CONTRACT_SUITE = [
    "build_component",
    "check_fusion",
    "check_loss",
    "check_recipe",
    "check_text_encoder",
    "check_visual_encoder",
    "random_fragments",
]

#: name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(_CONTRACTS, "mmzoo.contracts"),
    **dict.fromkeys(_RECORDS, "mmzoo.registry"),
    **dict.fromkeys(_CONTRACT_SUITE, "mmzoo.testing"),
    "DataManifest": "mmzoo.data",
    "PrecomputedFormat": "mmzoo.data",
    "get_registry": "mmzoo.registry",
    "hookimpl": "mmzoo.registry.hookspecs",
    "plugin_records": "mmzoo.registry.plugins",
    "register_plugin": "mmzoo.registry.plugins",
    "checkpoint_options": "mmzoo.checkpoint",
    "load_state_strict": "mmzoo.checkpoint",
    "read_foreign_checkpoint": "mmzoo.checkpoint",
    "require": "mmzoo._optional",
}

__getattr__, __dir__ = lazy_face(__name__, globals(), _EXPORTS)

#: (a literal list, so that the API reference can read it without running the module)
__all__ = [
    "CONVERTED",
    "MANUAL",
    "NOT_TRAINED",
    "PUBLISHED",
    "BuildContext",
    "Component",
    "ComponentConfig",
    "Converter",
    "DataFormat",
    "DataManifest",
    "Fragments",
    "FusionBlock",
    "FusionCache",
    "Loss",
    "PrecomputedFormat",
    "PretrainedEntry",
    "Recipe",
    "Split",
    "TextEncoder",
    "TokenBatch",
    "VisualEncoder",
    "Weights",
    "build_component",
    "check_fusion",
    "check_loss",
    "check_recipe",
    "check_text_encoder",
    "check_visual_encoder",
    "checkpoint_options",
    "get_registry",
    "hookimpl",
    "l2_normalize",
    "load_state_strict",
    "masked_mean",
    "plugin_records",
    "random_fragments",
    "read_foreign_checkpoint",
    "register_plugin",
    "require",
]
