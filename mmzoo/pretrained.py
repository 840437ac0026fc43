"""Trained weights by name: ``from_pretrained``, ``download`` and ``convert_checkpoint``.

A name is a zoo alias, ``hf-hub:ORG/REPO[@REV]``, ``local-dir:PATH`` or a folder (:mod:`mmzoo.hub.names`).
How a zoo entry's weights arrive depends on its status:

* **published**: an mmzoo folder on the Hub, downloaded and verified (:func:`mmzoo.hub.fetch_snapshot`);
* **published by the authors, converted**: the authors' own checkpoint on the Hub (e.g. VSE-infinity's
  ``model_best.pth``), downloaded, checked against the Hub's sha256, converted once by the family's registered
  converter, and kept in mmzoo's cache keyed by the source file's sha256: later loads, and
  ``HF_HUB_OFFLINE=1``, need neither a download nor a conversion;
* **native formats** (``Weights.format="transformers"``): the authors' own folder in their library's layout,
  downloaded (configs, tokenizer files and safetensors only) and verified, then built directly by the recipe's
  components (:func:`mmzoo.model.load_native`): no conversion, nothing cached twice, offline from the Hub cache;
* **download manually, then convert**: the checkpoint lives outside the Hub (a download page);
  ``mmzoo convert ALIAS FILE`` converts it into the cache, after which the alias loads offline;
* **not trained**: the error says how to train the weights.

An entry with ``members`` loads as an :class:`~mmzoo.model.Ensemble` of its members.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from mmzoo._atomic import atomic_folder, atomic_write_json, readable_folder, writable_dir
from mmzoo.checkpoint import check_requirements, config_document, read_document
from mmzoo.config import ModelConfig, apply_overrides
from mmzoo.errors import CheckpointError, ConfigError, HubError, StorageError
from mmzoo.hub import zoo
from mmzoo.hub.cards import model_card
from mmzoo.hub.names import Source, parse_name
from mmzoo.hub.transfer import fetch_file, fetch_native, fetch_snapshot, file_digest, verify_file
from mmzoo.model import Ensemble, MatchingModel, load_folder, load_native, offline
from mmzoo.model.loading import checked_device, checked_dtype
from mmzoo.registry import NATIVE_FORMATS, PretrainedEntry, converter
from mmzoo.registry import model as recipes

logger = logging.getLogger(__name__)


def from_pretrained(
    name: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> MatchingModel | Ensemble:
    """Load trained weights by zoo alias, ``hf-hub:ORG/REPO[@REV]``, ``local-dir:PATH`` or folder, strictly.

    Hub downloads use the Hugging Face cache and honour ``HF_HUB_OFFLINE``; files are verified against the Hub's
    sha256 and loaded from safetensors (never unpickled); a config naming a component no installed plugin
    provides raises an error naming the distribution to install, before any weight is downloaded. A local
    folder never touches the network and never runs code.

    Examples:
        >>> model = mmzoo.from_pretrained("vse-infinity-coco")  # doctest: +SKIP
        >>> model = mmzoo.from_pretrained("local-dir:runs/mmca/best", device="cuda")  # doctest: +SKIP
    """
    device, dtype = checked_device(device), checked_dtype(dtype)  # named errors before any download
    source = parse_name(name, revision)
    options = {"cache_dir": cache_dir, "token": token, "local_files_only": local_files_only}
    with _no_request(local_files_only):
        if source.kind == "alias" and source.entry.members:
            members = [from_pretrained(m, **options) for m in source.entry.members]
            ensemble = Ensemble(members)
            return ensemble.to(device=device, dtype=dtype).eval() if device or dtype else ensemble.eval()
        folder = _folder(source, force=False, check=True, **options)
        if source.kind == "alias" and source.entry.weights.format in NATIVE_FORMATS:
            return _load_native(folder, source, device=device, dtype=dtype)
        return load_folder(folder, device=device, dtype=dtype)


def _no_request(local_files_only: bool) -> contextlib.AbstractContextManager[None]:
    """``local_files_only=True`` promises no request at all: huggingface_hub goes offline for the call, which also
    stops its side requests (the agent registry it fetches for its user-agent, a DNS lookup of the Hub)."""
    return offline() if local_files_only else contextlib.nullcontext()


def _load_native(folder: Path, source: Source, **placement: Any) -> MatchingModel:
    """The entry's recipe built from its native folder; the entry's options are dotted overrides of the recipe."""
    entry = source.entry
    config = ModelConfig.parse(apply_overrides(recipes.get(entry.recipe).config, entry.weights.options))
    model = load_native(folder, config.to_dict(), **placement)
    model.extra_config["loaded_from"] = {
        "alias": entry.alias,
        "repo": entry.weights.repo,
        "revision": folder.name,
        "format": entry.weights.format,
        "license": entry.license,
        "paper": entry.paper,
    }
    return model


def download(
    name: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> Path | list[Path]:
    """Fetch a model into the caches (or find it there) and return its verified local folder.

    This is what ``mmzoo download NAME`` runs to prefetch for an air-gapped machine: copy ``HF_HOME`` over
    and load there with ``HF_HUB_OFFLINE=1``. A converted entry is downloaded and converted; an ensemble
    entry returns its members' folders.

    Examples:
        >>> folder = mmzoo.download("hf-hub:my-org/my-model")  # doctest: +SKIP
    """
    source = parse_name(name, revision)
    options = {"cache_dir": cache_dir, "token": token, "local_files_only": local_files_only}
    with _no_request(local_files_only):
        if source.kind == "alias" and source.entry.members:
            return [download(m, force_download=force_download, **options) for m in source.entry.members]
        return _folder(source, force=force_download, check=False, **options)


def _folder(source: Source, *, force: bool, check: bool, **options: Any) -> Path:
    """The local folder of a model name; ``check``: refuse, before any weight is fetched, a model whose plugins
    are missing (a prefetch for another machine does not need them here)."""
    if source.kind == "local":
        return run_folder_model(source.path)
    check_config = _check_config if check else None
    if source.kind == "hub":
        return fetch_snapshot(source, force_download=force, check_config=check_config, **options)
    entry = source.entry
    if entry.weights.format in NATIVE_FORMATS and entry.status == zoo.PUBLISHED:
        return fetch_native(source, force_download=force, pinned=entry.weights.sha256, **options)
    if entry.status == zoo.PUBLISHED:
        return fetch_snapshot(source, force_download=force, check_config=check_config, **options)
    if entry.status == zoo.CONVERTED:
        return _converted(source, entry, force, options)
    if entry.status == zoo.MANUAL:
        return _installed(entry)
    raise HubError(
        f"The zoo entry {entry.alias!r} has no weights to download (status: {entry.status}). {zoo.how_to_get(entry)}"
    )


def run_folder_model(path: str | Path) -> Path:
    """The model folder of ``path``: itself when it holds ``config.json``, a training run's ``best/`` when it is a
    run (as ``mmzoo eval RUN`` reads it); read, never repaired, by a reader. A run with no ``best/`` yet is an
    error naming its ``last/``."""
    path = Path(path)
    folder = readable_folder(path)
    if (folder / "config.json").is_file():
        return folder
    best = readable_folder(path / "best")
    if (best / "config.json").is_file():
        logger.info("%s is a training run: loading its best/ model", path)
        return best
    if (path / "run.json").is_file() or (path / "metrics.jsonl").is_file():
        last = readable_folder(path / "last")
        hint = (
            f"; its latest epoch is in {path / 'last'}: from_pretrained('{path / 'last'}')"
            if (last / "config.json").is_file()
            else "; no epoch has finished yet"
        )
        raise CheckpointError(f"{path} is a training run without a best/ model{hint}.")
    return folder


def _check_config(document: dict[str, Any]) -> None:
    if "model" in document:
        check_requirements(document)


def _converted(source: Source, entry: PretrainedEntry, force: bool, options: dict[str, Any]) -> Path:
    """The cached conversion of the entry's source file; downloaded, verified and converted when missing."""
    # a missing converter plugin or a bad option is named before anything is downloaded
    config = _converter_config(entry.weights.format, entry.weights.options)
    path, recorded = fetch_file(source, entry.weights.filename, force_download=force, **options)
    folder = zoo.converted_folder(entry.weights.format, config.model_dump(mode="json"), recorded)
    if not force and (folder / "config.json").is_file():
        return folder
    sha256 = verify_file(path, recorded, source, entry.weights.sha256)  # the file is hashed once, here
    logger.info("converting %s (%s) once; the result is cached in %s", entry.alias, entry.weights.filename, folder)
    return _convert(entry.weights.format, path, folder, True, entry, config, sha256)


def _installed(entry: PretrainedEntry) -> Path:
    marker = zoo.installed_marker(entry.alias)
    if marker.is_file():
        try:
            folder = Path(json.loads(marker.read_text(encoding="utf-8"))["folder"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HubError(f"{marker} is unreadable ({exc}); run `mmzoo convert {entry.alias} FILE` again.") from None
        if (folder / "config.json").is_file():
            return folder
    raise HubError(f"The zoo entry {entry.alias!r} is not installed yet. {zoo.how_to_get(entry)}")


def convert_checkpoint(
    name: str,
    checkpoint: str | Path,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    entry: PretrainedEntry | None = None,
    **options: Any,
) -> Path:
    """Convert another codebase's checkpoint with the converter ``name`` (or a zoo alias) into a saved folder.

    With a zoo alias, the entry's converter and options apply and, without ``out``, the result goes into mmzoo's
    cache, so that ``from_pretrained(alias)`` loads it from then on (offline too). The folder is written
    atomically: on any error nothing is left behind, and an existing folder is replaced only with
    ``overwrite=True``. ``config.json`` records where the weights came from (``converted_from``).

    Examples:
        >>> mmzoo.convert_checkpoint("vse-infinity", "model_best.pth", "vse-coco", bert="bert-base-uncased")  # doctest: +SKIP
    """
    checkpoint = Path(checkpoint)
    name, entry, options = _converter_for(name, entry, options)
    converter.get(name)  # an unknown converter is named before the options are checked
    config = _converter_config(name, options)
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint} is not a file: give the path of the checkpoint to convert.")
    sha256 = file_digest(checkpoint, "sha256")
    if entry is not None and entry.weights.sha256 and entry.weights.sha256 != sha256:
        raise CheckpointError(
            f"{checkpoint} has sha256 {sha256}, but the zoo entry {entry.alias!r} pins {entry.weights.sha256}: "
            "it is another file than the authors published."
        )
    return _convert(name, checkpoint, Path(out) if out is not None else None, overwrite, entry, config, sha256)


def _convert(
    name: str,
    checkpoint: Path,
    out: Path | None,
    overwrite: bool,
    entry: PretrainedEntry | None,
    config: Any,
    sha256: str,
) -> Path:
    """Convert a checkpoint whose sha256 the caller computed (and checked) into ``out`` or mmzoo's cache."""
    cls = converter.get(name)
    folder = out if out is not None else zoo.converted_folder(name, config.model_dump(mode="json"), sha256)
    if folder.exists() and not folder.is_dir():
        raise StorageError(f"{folder} is a file, not a folder: choose another --out.")
    if folder.exists() and any(folder.iterdir()) and not overwrite and out is not None:
        raise ConfigError(f"{folder} already exists and is not empty; choose another --out or pass --overwrite.")
    writable_dir(folder.parent, "folder of --out")
    model = cls(config).convert(checkpoint)
    if not isinstance(model, MatchingModel | Ensemble):
        raise CheckpointError(f"The {name!r} converter returned {type(model).__name__}, not an mmzoo model.")
    model.extra_config["converted_from"] = {
        "converter": name,
        "file": checkpoint.name,
        "sha256": sha256,
        "options": config.model_dump(mode="json"),
        "paper": cls.paper,
        "citation": cls.citation,
        "code": cls.code,
        "license": cls.license,
    }
    card = model_card(_document_of(model), entry=entry) if entry is not None else None
    with atomic_folder(folder) as tmp:
        model.save_pretrained(tmp, card=str(card) if card is not None else None)
    read_document(folder)  # what was written reads back
    if entry is not None and out is None:
        atomic_write_json(_marker(entry.alias), {"alias": entry.alias, "folder": str(folder), "sha256": sha256})
    logger.info("converted %s with %r into %s", checkpoint, name, folder)
    return folder


def _converter_config(name: str, options: dict[str, Any]) -> Any:
    """The converter's validated ``Config``: what it converts with, and (dumped) part of its cache key."""
    try:
        return converter.get(name).Config(**options)
    except ValueError as exc:
        raise ConfigError(f"Invalid options for the {name!r} converter: {exc}") from None


def _converter_for(
    name: str, entry: PretrainedEntry | None, options: dict[str, Any]
) -> tuple[str, PretrainedEntry | None, dict[str, Any]]:
    """A zoo alias stands for its entry's converter and options (the user's options win)."""
    if entry is None and zoo.is_alias(name) and name not in converter:
        entry = zoo.get_pretrained(name)
        if entry.weights.format in ("mmzoo", *NATIVE_FORMATS) or entry.members:
            raise ConfigError(
                f"The zoo entry {name!r} is not a converted checkpoint; there is nothing to convert "
                f"(`mmzoo download {name}` fetches it, `mmzoo.from_pretrained({name!r})` loads it)."
            )
        return entry.weights.format, entry, {**entry.weights.options, **options}
    return name, entry, options


def _marker(alias: str) -> Path:
    marker = zoo.installed_marker(alias)
    marker.parent.mkdir(parents=True, exist_ok=True)
    return marker


def _document_of(model: MatchingModel | Ensemble) -> dict[str, Any]:
    if isinstance(model, Ensemble):
        return model.document()
    return config_document(model.config.to_dict(), model.extra_config)


__all__ = ["convert_checkpoint", "download", "from_pretrained"]
