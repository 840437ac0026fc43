"""mmzoo: a plugin-based model zoo for image-text matching.

This module is the public face: plugins and users import from here (and from ``mmzoo.errors``); no module
inside mmzoo imports it.

Example:
    >>> import mmzoo
    >>> mmzoo.list_models("mmca*")
    ['mmca', 'mmca-no-cross']
    >>> model = mmzoo.create_model("mmca", **{"fusion.heads": 8})  # doctest: +SKIP
    >>> model = mmzoo.from_pretrained("vse-infinity-coco")  # doctest: +SKIP
    >>> model = mmzoo.from_pretrained("hf-hub:my-org/my-mmca")  # doctest: +SKIP
"""

from __future__ import annotations

from mmzoo import data, evaluation, hub, registry, scoring
from mmzoo._optional import require
from mmzoo._version import __version__
from mmzoo.checkpoint import checkpoint_options, load_state_strict, read_foreign_checkpoint
from mmzoo.config import ComponentSpec, ModelConfig, apply_overrides
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
from mmzoo.data import DataManifest, open_split
from mmzoo.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    HubError,
    InputError,
    MissingDependencyError,
    MMZooError,
    MMZooWarning,
    PluginError,
    StorageError,
    TrainingError,
    UnknownComponentError,
)
from mmzoo.factory import create_model, list_components, list_models
from mmzoo.hub.zoo import list_pretrained
from mmzoo.model import Ensemble, EnsembleFragments, MatchingModel, MatchingOutput
from mmzoo.pretrained import convert_checkpoint, download, from_pretrained
from mmzoo.registry import CONVERTED, MANUAL, NOT_TRAINED, PUBLISHED, PretrainedEntry, Recipe, Weights
from mmzoo.registry.hookspecs import hookimpl
from mmzoo.registry.plugins import plugin_records, register_plugin
from mmzoo.scoring import EmbeddingIndex, SearchResult

__all__ = [
    "CONVERTED",
    "MANUAL",
    "NOT_TRAINED",
    "PUBLISHED",
    "BuildContext",
    "CheckpointError",
    "Component",
    "ComponentConfig",
    "ComponentSpec",
    "ConfigError",
    "Converter",
    "DataError",
    "DataFormat",
    "DataManifest",
    "EmbeddingIndex",
    "Ensemble",
    "EnsembleFragments",
    "Fragments",
    "FusionBlock",
    "FusionCache",
    "HubError",
    "InputError",
    "Loss",
    "MMZooError",
    "MMZooWarning",
    "MatchingModel",
    "MatchingOutput",
    "MissingDependencyError",
    "ModelConfig",
    "PluginError",
    "PretrainedEntry",
    "Recipe",
    "SearchResult",
    "Split",
    "StorageError",
    "TextEncoder",
    "TokenBatch",
    "TrainingError",
    "UnknownComponentError",
    "VisualEncoder",
    "Weights",
    "__version__",
    "apply_overrides",
    "checkpoint_options",
    "convert_checkpoint",
    "create_model",
    "data",
    "download",
    "evaluation",
    "from_pretrained",
    "hookimpl",
    "hub",
    "l2_normalize",
    "list_components",
    "list_models",
    "list_pretrained",
    "load_state_strict",
    "masked_mean",
    "open_split",
    "plugin_records",
    "read_foreign_checkpoint",
    "register_plugin",
    "registry",
    "require",
    "scoring",
]
