"""Saving a model to a self-contained folder and loading it back strictly, without any network.

A saved model is a folder::

    config.json          {"mmzoo_version", "model": <the full model config>, "requires": [...]}
    model.safetensors    every weight (a frozen BERT included): no pickle, no second download
    README.md            the model card (huggingface_hub ModelCard, library_name mmzoo)
    visual/ text/ ...    each component's own files (tokenizer, vocabulary, backbone config)

Loading builds the architecture from ``config.json`` and the component folders, then copies the
weights with strict key and shape matching: a missing, unexpected or mis-shaped tensor is an error
that lists them, never a silent partial load.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mmzoo import plugins, registry
from mmzoo.config import SECTIONS
from mmzoo.errors import CheckpointError, UnknownComponentError
from mmzoo.model import MatchingModel

logger = logging.getLogger("mmzoo.serialization")

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT_VERSION = 1


def requirements(model: MatchingModel) -> list[dict[str, Any]]:
    """The plugin distributions (and versions) that provide the model's components."""
    found: dict[str, dict[str, Any]] = {}
    for section, kind in SECTIONS.items():
        spec = getattr(model.config, section)
        if spec is None:
            continue
        record = plugins.plugin_for(kind, spec.name)
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
        entry["components"].append(f"{kind}:{spec.name}")
    return list(found.values())


def config_document(model: MatchingModel) -> dict[str, Any]:
    """What ``config.json`` holds for ``model``."""
    from mmzoo import __version__

    return {
        "format_version": FORMAT_VERSION,
        "library_name": "mmzoo",
        "mmzoo_version": __version__,
        "model": model.config.to_dict(),
        "requires": requirements(model),
        **getattr(model, "extra_config", {}),
    }


def save_pretrained(model: MatchingModel, directory: str | Path, *, model_card: str | None = None) -> Path:
    """Write ``model`` to ``directory`` (config.json, model.safetensors, component files, README.md card).

    ``model_card`` replaces the generated card (see :mod:`mmzoo.cards`), e.g. one with measured results.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for section in SECTIONS:
        component = getattr(model, _attribute(section))
        if component is not None:
            component.save_assets(directory / section)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    tmp = directory / (WEIGHTS_NAME + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", "library_name": "mmzoo"})
    tmp.replace(directory / WEIGHTS_NAME)
    tmp = directory / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps(config_document(model), indent=2) + "\n", encoding="utf-8")
    tmp.replace(directory / CONFIG_NAME)
    if model_card is None:
        from mmzoo.cards import model_card as build_card

        model_card = str(build_card(config_document(model)))
    (directory / CARD_NAME).write_text(str(model_card), encoding="utf-8")
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    """Parse ``config.json`` of a saved model, with a :class:`CheckpointError` when it is missing or broken."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {directory} is not a saved mmzoo model (no config.json).")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or "model" not in document:
        raise CheckpointError(f"{path} has no 'model' section; it was not written by mmzoo's save_pretrained.")
    return document


def check_requirements(document: dict[str, Any]) -> None:
    """Raise a clear error naming the distribution to install when a component is not registered."""
    model = document["model"]
    for section, kind in SECTIONS.items():
        spec = model.get(section)
        if not spec:
            continue
        if spec.get("name") not in registry.get_registry(kind):
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
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def load_state_strict(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into ``model``; any missing, unexpected or mis-shaped key is a CheckpointError."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(tensors))
        if tensors[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:

        def show(items: list[str]) -> str:
            return ", ".join(items[:10]) + (f" and {len(items) - 10} more" if len(items) > 10 else "")

        parts = [
            f"{len(missing)} missing: {show(missing)}" if missing else "",
            f"{len(unexpected)} unexpected: {show(unexpected)}" if unexpected else "",
            f"{len(mismatched)} with another shape: {show(mismatched)}" if mismatched else "",
        ]
        raise CheckpointError(
            f"The weights in {source} do not fit this architecture ({'; '.join(p for p in parts if p)}). "
            "Nothing was loaded. Check that the config matches the checkpoint."
        )
    model.load_state_dict(tensors, strict=True)


def load_pretrained(
    directory: str | Path, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> MatchingModel:
    """Build the model saved in ``directory`` and load its weights strictly; returns it in eval mode."""
    directory = Path(directory)
    document = read_config(directory)
    check_requirements(document)
    model = MatchingModel(document["model"], assets=directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing: the folder holds a config but no weights.")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights} is not a readable safetensors file: {exc}") from None
    load_state_strict(model, tensors, str(weights))
    model.extra_config = {k: v for k, v in document.items() if k not in _RESERVED}
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model.eval()


_RESERVED = {"format_version", "library_name", "mmzoo_version", "model", "requires"}


def _attribute(section: str) -> str:
    return "loss_fn" if section == "loss" else section


__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "check_requirements",
    "load_pretrained",
    "load_state_strict",
    "read_config",
    "requirements",
    "save_pretrained",
]
