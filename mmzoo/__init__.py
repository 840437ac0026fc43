"""mmzoo: a plugin-based model zoo for image-text matching.

This module is the face users call: create, load and list models, evaluate them, search with them. Errors are
in :mod:`mmzoo.errors`; what a plugin author needs (the contracts, the records, ``hookimpl``, checkpoint reading,
the contract suite) is in :mod:`mmzoo.plugin`. No module inside mmzoo imports either face.

The names are resolved on first use, so ``import mmzoo`` (and ``mmzoo --version``) does not import torch.

Examples:
    >>> import mmzoo
    >>> mmzoo.list_models("mmca*")
    ['mmca', 'mmca-no-cross']
    >>> model = mmzoo.create_model("mmca", **{"fusion.heads": 8})  # doctest: +SKIP
    >>> model = mmzoo.from_pretrained("vse-infinity-coco")  # doctest: +SKIP
    >>> model = mmzoo.from_pretrained("hf-hub:my-org/my-mmca")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmzoo._lazy import lazy_face
from mmzoo._version import __version__

if TYPE_CHECKING:  # the same names, for type checkers and readers; at run time they load on first use
    from mmzoo.data import open_split
    from mmzoo.evaluation import evaluate
    from mmzoo.factory import create_model, list_components, list_models
    from mmzoo.hub.zoo import list_pretrained
    from mmzoo.model import Ensemble, MatchingModel
    from mmzoo.pretrained import convert_checkpoint, download, from_pretrained
    from mmzoo.scoring import EmbeddingIndex, SearchResult

#: the user face: name -> the module that defines it
_EXPORTS = {
    "create_model": "mmzoo.factory",
    "list_models": "mmzoo.factory",
    "list_components": "mmzoo.factory",
    "from_pretrained": "mmzoo.pretrained",
    "download": "mmzoo.pretrained",
    "convert_checkpoint": "mmzoo.pretrained",
    "list_pretrained": "mmzoo.hub.zoo",
    "evaluate": "mmzoo.evaluation",
    "open_split": "mmzoo.data",
    "MatchingModel": "mmzoo.model",
    "Ensemble": "mmzoo.model",
    "EmbeddingIndex": "mmzoo.scoring",
    "SearchResult": "mmzoo.scoring",
}

_ERRORS = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "HubError",
    "InputError",
    "MMZooError",
    "MMZooWarning",
    "PluginError",
    "StorageError",
    "TrainingError",
    "UnknownComponentError",
]
_FOR_PLUGINS = [
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
    "Split",
    "TextEncoder",
    "TokenBatch",
    "VisualEncoder",
    "l2_normalize",
    "masked_mean",
    "PretrainedEntry",
    "Recipe",
    "Weights",
    "CONVERTED",
    "MANUAL",
    "NOT_TRAINED",
    "PUBLISHED",
    "hookimpl",
    "checkpoint_options",
    "load_state_strict",
    "read_foreign_checkpoint",
    "plugin_records",
    "register_plugin",
]
#: names this face carried before it was split in two (0.2): they work until the next release, with a warning
_DEPRECATED = {
    **dict.fromkeys(_ERRORS, "mmzoo.errors"),
    **dict.fromkeys(_FOR_PLUGINS, "mmzoo.plugin"),
    "ModelConfig": "mmzoo.config",
}
_SUBMODULES = [
    "checkpoint",
    "config",
    "contracts",
    "data",
    "errors",
    "evaluation",
    "factory",
    "hub",
    "model",
    "plugin",
    "pretrained",
    "registry",
    "scoring",
    "serving",
    "testing",
    "training",
]

__getattr__, __dir__ = lazy_face(__name__, globals(), _EXPORTS, _DEPRECATED, _SUBMODULES, package=True)


__all__ = [
    "EmbeddingIndex",
    "Ensemble",
    "MatchingModel",
    "SearchResult",
    "__version__",
    "convert_checkpoint",
    "create_model",
    "download",
    "evaluate",
    "from_pretrained",
    "list_components",
    "list_models",
    "list_pretrained",
    "open_split",
]
