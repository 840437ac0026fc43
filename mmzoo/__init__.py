"""mmzoo: a plugin-based model zoo for image-text matching.

Example:
    >>> import mmzoo
    >>> mmzoo.list_models("mmca*")
    ['mmca', 'mmca-no-cross']
    >>> model = mmzoo.create_model("mmca", **{"fusion.heads": 8})  # doctest: +SKIP
    >>> mmzoo.list_pretrained()
    [('mmca-coco', 'mmca'), ('mmca-f30k', 'mmca')]
    >>> model = mmzoo.from_pretrained("hf-hub:my-org/my-mmca")  # doctest: +SKIP
"""

from __future__ import annotations

from mmzoo import registry
from mmzoo.config import ComponentSpec, ModelConfig, Recipe, apply_overrides
from mmzoo.contracts import (
    BuildContext,
    Component,
    ComponentConfig,
    Fragments,
    FusionBlock,
    Loss,
    TextEncoder,
    TokenBatch,
    VisualEncoder,
    l2_normalize,
    masked_mean,
)
from mmzoo.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    HubError,
    InputError,
    MMZooError,
    PluginError,
    UnknownComponentError,
)
from mmzoo.factory import create_model, list_components, list_models
from mmzoo.hookspecs import hookimpl
from mmzoo.hub import from_pretrained
from mmzoo.model import MatchingModel, MatchingOutput
from mmzoo.plugins import plugin_records, register_plugin
from mmzoo.scoring import EmbeddingIndex, SearchResult
from mmzoo.zoo import list_pretrained

__version__ = "0.1.0"

__all__ = [
    "BuildContext",
    "CheckpointError",
    "Component",
    "ComponentConfig",
    "ComponentSpec",
    "ConfigError",
    "DataError",
    "EmbeddingIndex",
    "Fragments",
    "FusionBlock",
    "HubError",
    "InputError",
    "Loss",
    "MMZooError",
    "MatchingModel",
    "MatchingOutput",
    "ModelConfig",
    "PluginError",
    "Recipe",
    "SearchResult",
    "TextEncoder",
    "TokenBatch",
    "UnknownComponentError",
    "VisualEncoder",
    "__version__",
    "apply_overrides",
    "create_model",
    "from_pretrained",
    "hookimpl",
    "l2_normalize",
    "list_components",
    "list_models",
    "list_pretrained",
    "masked_mean",
    "plugin_records",
    "register_plugin",
    "registry",
]
