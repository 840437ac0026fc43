"""Reading BLIP's transformers-layout folders: config, tokenizer, image processor and weights, strictly.

The official weights (``Salesforce/blip-itm-*``) are folders written by transformers' ``save_pretrained`` for
``BlipForImageTextRetrieval``. Each mmzoo component wraps its own part of that model (the vision tower and its
projection; the text encoder in text mode and its projection; the text encoder with cross-attention and the
matching head) and takes exactly the tensors whose names it owns from ``model.safetensors``: a tensor it owns
and the file lacks, or one of another shape, is a :class:`~mmzoo.errors.CheckpointError`. Nothing is
unpickled, and every transformers call passes ``trust_remote_code=False`` through explicit classes
(``BlipConfig``, ``BertTokenizer``, ``BlipImageProcessor``), never an ``Auto*`` class a folder could redirect.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field
from torch import nn

from mmzoo.errors import CheckpointError, ConfigError, HubError
from mmzoo.plugin import BuildContext, ComponentConfig, load_state_strict

logger = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
#: the files (patterns) of a transformers BLIP folder mmzoo reads; never ``*.py``, ``*.bin``, ``*.h5`` or ``*.msgpack``.
FILES = (
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    WEIGHTS,
    f"{WEIGHTS}.index.json",  # large folders (BLIP-2's ViT-g) come in shards
    "model-*-of-*.safetensors",
)

#: a BlipConfig small enough for CPU tests: 32-d towers, one layer, 32x32 images in 16x16 patches.
TINY_BLIP = {
    "text_config": {
        "vocab_size": 30524,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    },
    "vision_config": {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "image_size": 32,
        "patch_size": 16,
    },
    "image_text_hidden_size": 32,
}


def resolve(pretrained: str) -> Path:
    """A local folder as is; a Hub id downloaded (only :data:`FILES`) into the Hugging Face cache."""
    path = Path(pretrained).expanduser()
    if path.is_dir():
        return path
    if path.exists() or pretrained.startswith((".", "/", "~")):
        raise ConfigError(f"{pretrained!r} is not a folder holding a transformers BLIP model.")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(pretrained, allow_patterns=list(FILES), library_name="mmzoo"))
    except Exception as exc:  # huggingface_hub raises many kinds; all mean the same to a user
        raise HubError(
            f"Could not fetch the BLIP folder {pretrained!r}: {exc}\nUse the zoo alias "
            "(mmzoo.from_pretrained('blip-itm-base-coco')), or point `pretrained` to a local folder."
        ) from None


def blip_config(pretrained: Path | None, fields: dict[str, Any] | None) -> Any:
    """The BlipConfig of a folder, or one built from fields (random weights follow)."""
    from transformers import BlipConfig

    if pretrained is None:
        return BlipConfig(**(fields or {}))
    try:
        return BlipConfig.from_pretrained(pretrained, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{pretrained} holds no readable BLIP config.json: {exc}") from None


def load_tokenizer(folder: Path) -> Any:
    """The WordPiece tokenizer of a folder, by ``from_pretrained``.

    Never ``BertTokenizer(vocab_file=...)``: transformers 5 silently ignores that argument and maps every word
    to ``[UNK]`` (tests/plugins/blip/test_traps.py pins it).
    """
    from transformers import BertTokenizer

    try:
        return BertTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder} holds no readable WordPiece tokenizer (vocab.txt): {exc}") from None


def load_image_processor(folder: Path | None, image_size: int) -> Any:
    """The folder's BlipImageProcessor (its preprocessor_config.json), or BLIP's defaults at ``image_size``."""
    from transformers import BlipImageProcessor

    if folder is not None and (folder / "preprocessor_config.json").is_file():
        return BlipImageProcessor.from_pretrained(str(folder), trust_remote_code=False)
    return BlipImageProcessor(size={"height": image_size, "width": image_size})


def weight_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it: ``model.safetensors``, or the shards its index lists (large
    folders, e.g. BLIP-2's ViT-g, are written in shards by ``save_pretrained``)."""
    from safetensors import safe_open

    single, index = folder / WEIGHTS, folder / f"{WEIGHTS}.index.json"
    if single.is_file():
        with safe_open(str(single), framework="pt") as handle:
            return dict.fromkeys(handle.keys(), single)
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index} is not a readable safetensors index: {exc}") from None
        shards = {name: folder / shard for name, shard in weight_map.items()}
        outside = sorted({str(p) for p in shards.values() if p.parent != folder or p.suffix != ".safetensors"})
        if outside:
            raise CheckpointError(f"{index} names files that are not safetensors shards of {folder}: {outside[:3]}.")
        absent = sorted({p.name for p in shards.values() if not p.is_file()})
        if absent:
            raise CheckpointError(f"{folder} lacks the shard(s) {', '.join(absent[:4])} that {index.name} lists.")
        return shards
    raise CheckpointError(
        f"{folder} has no {WEIGHTS} (nor its shards' index): mmzoo reads transformers weights from safetensors only "
        "(never pickles)."
    )


def load_owned(component: nn.Module, folder: Path) -> None:
    """Copy into ``component`` exactly the tensors it owns (by name) from the folder's safetensors (one file or
    shards)."""
    from safetensors import safe_open

    where = weight_files(folder)
    wanted = list(component.state_dict())
    missing = [k for k in wanted if k not in where]
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise CheckpointError(
            f"{folder / WEIGHTS} lacks {len(missing)} tensor(s) of {type(component).__name__}: {shown}."
        )
    tensors = {}
    for path in dict.fromkeys(where[k] for k in wanted):
        with safe_open(str(path), framework="pt") as handle:
            tensors.update({k: handle.get_tensor(k) for k in wanted if where[k] == path})
    load_state_strict(component, tensors, str(folder / WEIGHTS))


def source_key(family: str, config: Any, weights: Path | None) -> tuple[str, str, str | None]:
    """What makes two components' copies of a module interchangeable: the family, the transformers config (its
    bookkeeping fields, ``_name_or_path`` and the version, left out) and the folder the weights come from (None:
    random weights, or a saved mmzoo model's, which fill every copy afterwards)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if not str(k).startswith("_") and k != "transformers_version"}
        return value

    data = json.dumps(plain(config.to_dict()), sort_keys=True, default=str)
    return family, data, str(Path(weights).resolve()) if weights is not None else None


def share_parts(context: BuildContext, key: tuple, owner: nn.Module, paths: list[str]) -> list[str]:
    """Make each of ``owner``'s sub-modules (or parameters) at ``paths`` the one instance of this model build
    (:meth:`mmzoo.plugin.BuildContext.share`): the first component to offer a part keeps its own, the others take
    it. Paths ``owner`` lacks (layers it dropped) are skipped. Returns the paths whose instance came from another
    component. Call it before loading weights, so that the shared instance is the one that is loaded."""
    taken = []
    for path in paths:
        parent_path, _, name = path.rpartition(".")
        parent = owner.get_submodule(parent_path) if parent_path else owner
        mine = getattr(parent, name, None)
        if mine is None:
            continue
        shared = context.share((*key, path), lambda mine=mine: mine)
        if shared is not mine:
            setattr(parent, name, shared)
            taken.append(path)
    return taken


def check_embed_dim(config: Any, embed_dim: int) -> None:
    if config.image_text_hidden_size != embed_dim:
        raise ConfigError(
            f"The BLIP weights project to {config.image_text_hidden_size} dimensions but the model's embed_dim is "
            f"{embed_dim}; set embed_dim={config.image_text_hidden_size}."
        )


def save_folder(config: Any, directory: Path, tokenizer: Any = None, processor: Any = None) -> None:
    """A component's assets: the BlipConfig (and tokenizer / image processor) in transformers' own layout."""
    directory.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    if processor is not None:
        processor.save_pretrained(directory)


class BlipSourceConfig(ComponentConfig):
    """Where a BLIP component's architecture and weights come from (shared by the three components)."""

    pretrained: str | None = Field(
        None,
        description="A transformers BlipForImageTextRetrieval folder or Hub id (config, tokenizer, image processor "
        "and model.safetensors), e.g. Salesforce/blip-itm-base-coco; the zoo aliases set it.",
    )
    blip_config: dict[str, Any] | None = Field(
        None, description="Build from these BlipConfig fields with random weights instead (tests use a tiny one)."
    )


def open_source(config: Any, assets: Path | None, native: bool = False) -> tuple[Any, Path | None, Path | None]:
    """(BlipConfig, folder to take the weights from or None, folder of the tokenizer / processor files or None).

    ``native`` ``assets`` (a zoo entry's official transformers folder, ``BuildContext.native``) give everything,
    weights included; a saved mmzoo model's ``assets`` give the files (its weights come from its own
    model.safetensors afterwards); else ``pretrained`` (a transformers folder or Hub id: config, files and
    weights); else ``blip_config`` fields (random weights).
    """
    return resolve_source(
        blip_config,
        config.pretrained,
        config.blip_config,
        assets,
        native,
        "A BLIP component needs `pretrained` (a transformers BLIP folder or Hub id, e.g. "
        "Salesforce/blip-itm-base-coco) or `blip_config` (BlipConfig fields, random weights).",
    )


def resolve_source(
    read: Callable[[Path | None, dict[str, Any] | None], Any],
    pretrained: str | None,
    fields: dict[str, Any] | None,
    assets: Path | None,
    native: bool,
    missing: str,
) -> tuple[Any, Path | None, Path | None]:
    """The precedence BLIP and BLIP-2 share: (``read(folder, fields)``'s config, weights folder or None, files
    folder or None) from native assets, else a saved model's assets, else ``pretrained``, else ``fields``; a
    ConfigError saying ``missing`` when none is given."""
    if assets is not None:
        return read(assets, None), (assets if native else None), assets
    if pretrained is not None:
        folder = resolve(pretrained)
        return read(folder, None), folder, folder
    if fields is not None:
        return read(None, fields), None, None
    raise ConfigError(missing)


__all__ = [
    "FILES",
    "TINY_BLIP",
    "WEIGHTS",
    "BlipSourceConfig",
    "blip_config",
    "check_embed_dim",
    "load_image_processor",
    "load_owned",
    "load_tokenizer",
    "open_source",
    "resolve",
    "resolve_source",
    "save_folder",
    "share_parts",
    "source_key",
    "weight_files",
]
