"""The saved-model folder: what it holds, writing it, and reading it back strictly, without any network.

A saved model is a folder::

    config.json          {"format_version", "mmzoo_version", "model": <the full model config>, "requires": [...]}
    model.safetensors    every weight (a frozen BERT included): no pickle, no second download; a weight that
                         components share is written once, its other names listed as aliases (below)
    README.md            the model card (huggingface_hub ModelCard, library_name mmzoo)
    visual/ text/ ...    each component's own files (tokenizer, vocabulary, backbone config)

An ensemble's ``config.json`` holds ``{"ensemble": {"members": ["member-0", ...], "weights": [...]}}`` and each
member is a saved-model folder below it.

Reading refuses what would run or fetch code: a ``.py`` file anywhere in the folder, or an ``auto_map`` in any
JSON file (transformers' pointer to custom code), is a CheckpointError, and so is a ``format_version`` newer than
this mmzoo writes. A save is all or nothing (see :func:`write_folder`).

Aliases: components of one model may hold one module (``BuildContext.share``: BLIP's text encoder, BLIP-2's
Q-Former), so one weight has several state-dict names. safetensors stores a tensor once per name and refuses
tensors that share memory, so the weight is written under its first name (state-dict order) and the file's
metadata ``mmzoo_aliases`` (JSON, alias -> stored name) lists the others; reading fills every alias with its
stored tensor before the strict check, so a missing weight is still a named error. Such a folder says
``format_version`` 2 (an older mmzoo would find the aliases missing); one without aliases stays at 1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from mmzoo import _atomic
from mmzoo._version import __version__
from mmzoo.config import SECTIONS
from mmzoo.errors import CheckpointError, MMZooError, StorageError, UnknownComponentError
from mmzoo.registry import get_registry, plugins

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT_VERSION = 1
#: the format_version of a folder whose weights record aliases (:func:`split_aliases`), the newest one read here.
ALIASED_FORMAT_VERSION = 2
#: the safetensors metadata key of the aliases: JSON ``{alias: stored name}``.
ALIASES_KEY = "mmzoo_aliases"
#: config.json keys of mmzoo's own; any other top-level key travels with the model (``extra_config``).
RESERVED = frozenset({"format_version", "library_name", "mmzoo_version", "model", "requires", "ensemble"})


def requirements(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The plugin distributions (and versions) that provide the components of a model config."""
    found: dict[str, dict[str, Any]] = {}
    for section, kind in SECTIONS.items():
        spec = config.get(section)
        if not spec:
            continue
        record = plugins.plugin_for(kind, spec["name"])
        key = (
            record.distribution
            if record and record.distribution
            else f"<in-process:{record.name if record else 'user'}>"
        )
        entry = found.setdefault(
            key,
            {
                "distribution": record.distribution if record else None,
                "version": record.version if record else None,
                "plugin": record.name if record else None,
                "components": [],
            },
        )
        entry["components"].append(f"{kind}:{spec['name']}")
    return list(found.values())


def config_document(config: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What ``config.json`` holds for a model with this (complete) config."""
    return {
        "format_version": FORMAT_VERSION,
        "library_name": "mmzoo",
        "mmzoo_version": __version__,
        "model": dict(config),
        "requires": requirements(config),
        **dict(extra or {}),
    }


#: where a save writes everything first, and where the files it replaces wait until it is done (inside the folder).
STAGING_NAME = ".mmzoo-save.tmp"
REPLACED_NAME = ".mmzoo-save.old"
#: what a save writes at a folder's top level: an earlier save's entries of these names are replaced or removed.
_OURS = re.compile(
    r"^(config\.json|model\.safetensors|README\.md|visual|text|fusion|loss|member-\d+"
    r"|\.(config\.json|model\.safetensors|README\.md)\.tmp\d*)$"
)


def write_folder(
    directory: str | Path,
    document: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor] | None,
    card: str | None,
    write_assets: Callable[[Path], None] | None = None,
    *,
    aliases: Mapping[str, str] | None = None,
) -> Path:
    """Write a saved-model folder: component files (``write_assets``), the weights, ``config.json``, the card.

    ``aliases`` (alias -> a key of ``tensors``, from :func:`split_aliases`) go into the weights' metadata, and the
    document then says ``format_version`` :data:`ALIASED_FORMAT_VERSION`.

    All or nothing: everything is written into ``DIR/.mmzoo-save.tmp`` first and flushed; only then are the files
    renamed into place (``config.json`` last), replacing an earlier save's files, so a write the disk refuses
    (a full disk, a quota, a read-only folder) is a StorageError that leaves the folder as it was, never new
    weights beside an old ``config.json``. Other files in the folder (the user's) stay; an earlier save's
    entries this save does not write (an ensemble's ``member-1/``) go, so the folder holds exactly this model.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise StorageError(f"The model folder {directory} is a file, not a folder: choose another path.")
    created = not directory.exists()
    staging = directory / STAGING_NAME
    aliases = dict(aliases or {})
    if aliases:
        dangling = sorted(a for a, k in aliases.items() if tensors is None or k not in tensors or a in tensors)
        if dangling:
            raise ValueError(f"write_folder: aliases must name stored tensors and not be stored: {dangling[:5]}")
        document = {**document, "format_version": ALIASED_FORMAT_VERSION}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in (staging, directory / REPLACED_NAME):  # of a killed save (or a planted link): never trusted
            _atomic.remove_entry(leftover)
        staging.mkdir()
        if write_assets is not None:
            write_assets(staging)
        if tensors is not None:
            _save_weights(tensors, staging / WEIGHTS_NAME, aliases)
        _atomic.atomic_write_json(staging / CONFIG_NAME, dict(document))
        if card is not None:
            _atomic.atomic_write_text(staging / CARD_NAME, card)
        _atomic.fsync_tree(staging)
    except (OSError, RuntimeError) as exc:  # RuntimeError: torch's writer, as a component's save_assets uses it
        shutil.rmtree(directory if created else staging, ignore_errors=True)
        if isinstance(exc, MMZooError) or not (isinstance(exc, OSError) or _atomic.is_storage_error(exc)):
            raise
        raise _atomic.storage_error(exc, directory, "model folder") from None
    except BaseException:  # anything else (a component's bug, Ctrl-C): nothing of this save stays either
        shutil.rmtree(directory if created else staging, ignore_errors=True)
        raise
    _commit(staging, directory, keep={CARD_NAME} if card is None else set())
    return directory


def split_aliases(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(the tensors to store, {alias: stored key}) of a state dict taken with ``keep_vars=True``: a parameter or
    buffer reachable under several keys (a module shared by components, tied weights) is stored under its first
    key in state-dict order and its other keys become aliases. Tensors are told apart by identity, not by value.

    Example:
        >>> stored, aliases = split_aliases(model.state_dict(keep_vars=True))  # doctest: +SKIP
    """
    first: dict[int, str] = {}
    stored: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for key, tensor in state.items():
        if id(tensor) in first:
            aliases[key] = first[id(tensor)]
        else:
            first[id(tensor)] = key
            stored[key] = tensor
    return stored, aliases


def _save_weights(tensors: Mapping[str, torch.Tensor], path: Path, aliases: Mapping[str, str] | None = None) -> None:
    metadata = {"format": "pt", "library_name": "mmzoo"}
    if aliases:
        metadata[ALIASES_KEY] = json.dumps(dict(aliases), sort_keys=True)
    try:
        save_file(dict(tensors), str(path), metadata=metadata)
    except SafetensorError as exc:  # the Rust writer reports OS errors as "I/O error: ... (os error N)"
        code = re.search(r"os error (\d+)", str(exc))
        raise _atomic.storage_error(
            OSError(int(code.group(1)) if code else 0, str(exc)), path, "weights file"
        ) from None


def _commit(staging: Path, directory: Path, keep: set[str]) -> None:
    """Rename the staged entries into ``directory``; the ones they replace wait in ``.mmzoo-save.old`` till the end.

    The renames hold the folder's exclusive lock (:func:`mmzoo._atomic.folder_lock`, the one swaps take), so a
    reader (``load_folder`` reads under the shared lock) sees the old files or the new ones. The old
    ``config.json`` goes first and the new one comes last: a process killed in between leaves a folder without
    ``config.json`` (which no loader takes for a model), never a mix that loads. Any failure puts everything back.
    """
    new = sorted((p.name for p in staging.iterdir()), key=lambda name: (name == CONFIG_NAME, name))
    replaced = sorted(
        (p.name for p in directory.iterdir() if p.name in new or (_OURS.match(p.name) and p.name not in keep)),
        key=lambda name: (name != CONFIG_NAME, name),
    )
    with _atomic.folder_lock(directory, exclusive=True):
        _swap_entries(staging, directory, new, replaced)
    shutil.rmtree(directory / REPLACED_NAME, ignore_errors=True)  # outside the lock: readers never look there
    staging.rmdir()


def _swap_entries(staging: Path, directory: Path, new: list[str], replaced: list[str]) -> None:
    trash = directory / REPLACED_NAME
    moved: list[str] = []
    placed: list[str] = []
    try:
        trash.mkdir()
        for name in replaced:
            os.replace(directory / name, trash / name)
            moved.append(name)
        for name in new:
            os.replace(staging / name, directory / name)
            placed.append(name)
        _atomic.fsync_dir(directory)
    except OSError as exc:
        for name in reversed(placed):
            os.replace(directory / name, staging / name)
        for name in reversed(moved):
            os.replace(trash / name, directory / name)
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(trash, ignore_errors=True)
        raise _atomic.storage_error(exc, directory, "model folder") from None


def refuse_code(directory: Path) -> None:
    """A model folder never brings code: no ``.py`` file, no ``auto_map`` (transformers' custom-code pointer)."""
    code = sorted(str(p.relative_to(directory)) for p in directory.rglob("*.py"))
    mapped = []
    for path in sorted(directory.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not ours to judge here; the component that reads it reports it
        if _mentions(data, "auto_map"):
            mapped.append(str(path.relative_to(directory)))
    if code or mapped:
        what = "; ".join(
            ([f"Python files {', '.join(code)}"] if code else [])
            + ([f"'auto_map' (custom code) in {', '.join(mapped)}"] if mapped else [])
        )
        raise CheckpointError(
            f"{directory} carries code ({what}). mmzoo never runs code from a model folder: remove those files or "
            "entries if you trust them, or get the model from a source that ships weights and configs only."
        )


def _mentions(data: Any, key: str) -> bool:
    if isinstance(data, dict):
        return key in data or any(_mentions(v, key) for v in data.values())
    if isinstance(data, list):
        return any(_mentions(v, key) for v in data)
    return False


def read_document(directory: str | Path) -> dict[str, Any]:
    """Parse and check ``config.json`` of a saved model or ensemble (CheckpointError when missing or broken)."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {directory} is not a saved mmzoo model (no config.json).")
    document = _atomic.read_json_object(path, CheckpointError, "it was not written by mmzoo's save_pretrained")
    if not ({"model", "ensemble"} & set(document)):
        raise CheckpointError(f"{path} has no 'model' section; it was not written by mmzoo's save_pretrained.")
    for section in ("model", "ensemble"):
        if section in document and not isinstance(document[section], dict):
            raise CheckpointError(
                f"{path}: {section!r} must be a JSON object (the config sections), not "
                f"{type(document[section]).__name__}; it was not written by mmzoo's save_pretrained."
            )
    version = document.get("format_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: format_version must be a positive integer; got {version!r}.")
    if version > ALIASED_FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version}, newer than this mmzoo ({__version__}) reads "
            f"({ALIASED_FORMAT_VERSION}): upgrade mmzoo (`pip install -U mmzoo`)."
        )
    refuse_code(directory)
    return document


def _aliases(metadata: Mapping[str, str] | None, weights: Path) -> dict[str, str]:
    """The ``{alias: stored key}`` a weights file records (none in folders written before 0.3, or unshared)."""
    text = (metadata or {}).get(ALIASES_KEY)
    if text is None:
        return {}
    try:
        aliases = json.loads(text)
    except ValueError:
        aliases = None
    if not isinstance(aliases, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()):
        raise CheckpointError(
            f"{weights}: its metadata {ALIASES_KEY!r} must be a JSON object of names (alias -> stored tensor); it is "
            "corrupted or was not written by mmzoo."
        )
    return aliases


def with_aliases(
    tensors: dict[str, torch.Tensor], aliases: Mapping[str, str], weights: Path
) -> dict[str, torch.Tensor]:
    """``tensors`` with every alias filled by its stored tensor: a CheckpointError names an alias whose tensor the
    file lacks (the shared weight was removed) and a name both stored and listed as an alias."""
    lacking = sorted(f"{alias} (alias of {key})" for alias, key in aliases.items() if key not in tensors)
    doubled = sorted(alias for alias in aliases if alias in tensors)
    if lacking or doubled:
        parts = [
            f"{len(lacking)} alias(es) of a missing tensor: {', '.join(lacking[:6])}" if lacking else "",
            f"{len(doubled)} name(s) both stored and listed as aliases: {', '.join(doubled[:6])}" if doubled else "",
        ]
        raise CheckpointError(
            f"The weights in {weights} do not hold what their aliases name ({'; '.join(p for p in parts if p)}). "
            "Nothing was loaded: the file was edited or is corrupted; save the model again."
        )
    return {**tensors, **{alias: tensors[key] for alias, key in aliases.items()}}


def read_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of ``model.safetensors`` (no pickle), aliases filled (the same tensor under each of its names),
    with a CheckpointError when missing, unreadable or when an alias names no stored tensor."""
    return _read_safetensors(directory, lambda handle, key: handle.get_tensor(key))


#: safetensors' dtype names (its header) as torch dtypes.
_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def weight_shapes(directory: str | Path) -> dict[str, torch.Tensor]:
    """The tensors ``model.safetensors`` holds as ``meta`` tensors (shape and dtype from its header; nothing read or
    allocated), to check a model's sizes against before it is built; a CheckpointError when unreadable."""

    def meta(handle: Any, key: str) -> torch.Tensor:
        header = handle.get_slice(key)
        dtype = _SAFETENSORS_DTYPES.get(header.get_dtype(), torch.float32)
        return torch.empty(header.get_shape(), dtype=dtype, device="meta")

    return _read_safetensors(directory, meta)


def _read_safetensors(directory: str | Path, take: Callable[[Any, str], torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{name: take(handle, name)}`` over ``model.safetensors`` with its aliases filled: the one reader of the
    weights file, with its errors (missing, unreadable, an alias naming no stored tensor)."""
    from safetensors import safe_open

    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing: the folder holds a config but no weights.")
    try:
        with safe_open(str(weights), framework="pt") as handle:
            aliases = _aliases(handle.metadata(), weights)
            tensors = {key: take(handle, key) for key in handle.keys()}  # noqa: SIM118  (safe_open is not a mapping)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights} is not a readable safetensors file: {exc}") from None
    return with_aliases(tensors, aliases, weights)


def check_requirements(document: Mapping[str, Any]) -> None:
    """Raise a clear error naming the distribution to install when a component is not registered."""
    model = document["model"]
    for section, kind in SECTIONS.items():
        spec = model.get(section)
        if not spec:
            continue
        if spec.get("name") in get_registry(kind):
            continue
        needed = next(
            (r for r in document.get("requires", []) if f"{kind}:{spec.get('name')}" in r.get("components", [])),
            None,
        )
        dist = needed.get("distribution") if needed else None
        version = needed.get("version") if needed else None
        installed = _installed_version(dist) if dist else None
        if installed:
            hint = (
                f" It was saved with {dist} {version or '(unknown version)'}; {dist} {installed} is installed but "
                "did not register it: its plugin failed to load or is disabled (see `mmzoo plugins`), or it is "
                f"too old: `pip install -U '{dist}>={version}'`."
            )
        elif dist:
            hint = f" Install it with `pip install '{dist}{'>=' + version if version else ''}'`."
        else:
            hint = " It was registered in-process when saved: register it again before loading."
        raise UnknownComponentError(
            f"This model needs the {kind} {spec.get('name')!r}, which no installed plugin provides.{hint}"
        )


def _installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


__all__ = [
    "ALIASED_FORMAT_VERSION",
    "ALIASES_KEY",
    "CARD_NAME",
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "RESERVED",
    "WEIGHTS_NAME",
    "check_requirements",
    "config_document",
    "read_document",
    "read_weights",
    "refuse_code",
    "requirements",
    "split_aliases",
    "weight_shapes",
    "with_aliases",
    "write_folder",
]
