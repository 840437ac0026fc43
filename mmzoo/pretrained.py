"""Trained weights by name: ``from_pretrained``, ``download`` and ``convert_checkpoint``.

A name is a zoo alias, ``hf-hub:ORG/REPO[@REV]``, ``local-dir:PATH`` or a folder (:mod:`mmzoo.hub.names`).
How a zoo entry's weights arrive depends on its status:

* **published**: an mmzoo folder on the Hub, downloaded and verified (:func:`mmzoo.hub.fetch_snapshot`);
* **published by the authors, converted**: the authors' own checkpoint on the Hub (e.g. VSE-infinity's
  ``model_best.pth``), downloaded, checked against the Hub's sha256, converted once by the family's registered
  converter, and kept in mmzoo's cache keyed by the source file's sha256: later loads, and
  ``HF_HUB_OFFLINE=1``, need neither a download nor a conversion;
* **download manually, then convert**: the checkpoint lives outside the Hub (a download page);
  ``mmzoo convert ALIAS FILE`` converts it into the cache, after which the alias loads offline;
* **not trained**: the error says how to train the weights.

A published entry whose weights have the format ``"transformers"`` is the authors' own transformers folder
(``Salesforce/blip-itm-base-coco``): its allowed files are downloaded and verified
(:func:`mmzoo.hub.transfer.fetch_transformers_snapshot`), and the entry's recipe is built with every component
that has a ``pretrained`` field pointed at that folder, so each reads its own tensors from it (no conversion, no
copy); the saved config names the repository, not the cache path.

An entry with ``members`` loads as an :class:`~mmzoo.model.Ensemble` of its members.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from mmzoo._atomic import atomic_folder, atomic_write_json, readable_folder, writable_dir
from mmzoo.checkpoint import check_requirements, config_document, read_document
from mmzoo.config import SECTIONS
from mmzoo.errors import CheckpointError, ConfigError, HubError, InputError, StorageError
from mmzoo.hub import zoo
from mmzoo.hub.cards import model_card
from mmzoo.hub.names import Source, parse_name
from mmzoo.hub.transfer import fetch_file, fetch_snapshot, fetch_transformers_snapshot, file_digest, verify_file
from mmzoo.model import Ensemble, MatchingModel, load_pretrained, offline
from mmzoo.registry import PretrainedEntry, converter, get_registry, model

logger = logging.getLogger("mmzoo.pretrained")

#: ``Weights.format`` of an entry whose repository is a transformers folder, read natively by its components.
TRANSFORMERS = "transformers"


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

    Example:
        >>> model = mmzoo.from_pretrained("vse-infinity-coco")  # doctest: +SKIP
        >>> model = mmzoo.from_pretrained("local-dir:runs/mmca/best", device="cuda")  # doctest: +SKIP
    """
    source = parse_name(name, revision)
    options = {"cache_dir": cache_dir, "token": token, "local_files_only": local_files_only}
    if source.kind == "alias" and source.entry.members:
        members = [from_pretrained(m, **options) for m in source.entry.members]
        ensemble = Ensemble(members)
        return ensemble.to(device=device, dtype=dtype).eval() if device or dtype else ensemble.eval()
    if source.kind == "alias" and source.entry.weights.format == TRANSFORMERS:
        folder = _folder(source, force=False, check=True, **options)
        return _transformers_model(source.entry, folder, device=device, dtype=dtype)
    return load_pretrained(_folder(source, force=False, check=True, **options), device=device, dtype=dtype)


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

    Example:
        >>> folder = mmzoo.download("hf-hub:my-org/my-model")  # doctest: +SKIP
    """
    source = parse_name(name, revision)
    options = {"cache_dir": cache_dir, "token": token, "local_files_only": local_files_only}
    if source.kind == "alias" and source.entry.members:
        return [download(m, force_download=force_download, **options) for m in source.entry.members]
    return _folder(source, force=force_download, check=False, **options)


def _folder(source: Source, *, force: bool, check: bool, **options: Any) -> Path:
    """The local folder of a model name; ``check``: refuse, before any weight is fetched, a model whose plugins
    are missing (a prefetch for another machine does not need them here)."""
    if source.kind == "local":
        return readable_folder(source.path)  # read, never repaired, by a reader
    check_config = _check_config if check else None
    if source.kind == "hub":
        return fetch_snapshot(source, force_download=force, check_config=check_config, **options)
    entry = source.entry
    if entry.status == zoo.PUBLISHED and entry.weights.format == TRANSFORMERS:
        return fetch_transformers_snapshot(source, force_download=force, **options)
    if entry.status == zoo.PUBLISHED:
        return fetch_snapshot(source, force_download=force, check_config=check_config, **options)
    if entry.status == zoo.CONVERTED:
        return _converted(source, entry, force, options)
    if entry.status == zoo.MANUAL:
        return _installed(entry)
    raise HubError(
        f"The zoo entry {entry.alias!r} has no weights to download (status: {entry.status}). {zoo.how_to_get(entry)}"
    )


def _transformers_model(
    entry: PretrainedEntry, folder: Path, *, device: str | torch.device | None, dtype: torch.dtype | None
) -> MatchingModel:
    """The entry's recipe with each component that has a ``pretrained`` field reading it from ``folder``."""
    if device is not None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r}, but torch sees no GPU here; load with device='cpu'.")
    document = json.loads(json.dumps(model.get(entry.recipe).config))  # a deep copy of plain data
    local = json.loads(json.dumps(document))
    for section, kind in SECTIONS.items():
        spec = local.get(section)
        if isinstance(spec, dict) and "pretrained" in get_registry(kind).get(spec["name"]).Config.model_fields:
            spec["pretrained"] = str(folder)
            document[section]["pretrained"] = entry.weights.repo  # what a saved copy records
    with offline():  # everything is in the folder: nothing may be fetched behind the verified snapshot
        built = MatchingModel(local)
    built.config = type(built.config).parse(document)
    built.extra_config["pretrained"] = {"alias": entry.alias, "repo": entry.weights.repo, "commit": folder.name}
    if device is not None or dtype is not None:
        built.to(device=device, dtype=dtype)
    return built.eval()


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
    verify_file(path, recorded, source, entry.weights.sha256)
    logger.info("converting %s (%s) once; the result is cached in %s", entry.alias, entry.weights.filename, folder)
    return convert_checkpoint(entry.weights.format, path, folder, overwrite=True, entry=entry, **entry.weights.options)


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

    Example:
        >>> mmzoo.convert_checkpoint("vse-infinity", "model_best.pth", "vse-coco", bert="bert-base-uncased")  # doctest: +SKIP
    """
    checkpoint = Path(checkpoint)
    name, entry, options = _converter_for(name, entry, options)
    cls = converter.get(name)
    config = _converter_config(name, options)
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint} is not a file: give the path of the checkpoint to convert.")
    sha256 = file_digest(checkpoint, "sha256")
    if entry is not None and entry.weights.sha256 and entry.weights.sha256 != sha256:
        raise CheckpointError(
            f"{checkpoint} has sha256 {sha256}, but the zoo entry {entry.alias!r} pins {entry.weights.sha256}: "
            "it is another file than the authors published."
        )
    folder = Path(out) if out is not None else zoo.converted_folder(name, config.model_dump(mode="json"), sha256)
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
        if entry.weights.format == "mmzoo" or entry.members:
            raise ConfigError(f"The zoo entry {name!r} is not a converted checkpoint; there is nothing to convert.")
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
