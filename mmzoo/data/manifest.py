"""The dataset manifest, ``mmzoo_data.json``: what a dataset folder holds and how it was made.

Every writer of a dataset folder (``mmzoo make-data``, ``mmzoo extract-features``, ``mmzoo import-features``)
records it, and every reader checks the folder against it. It says which registered data format opens the
folder, the captions per image, the region size and count, the extractor that made the features (a trained
model records these facts, and evaluating it on features made otherwise warns), the twins, and the model and
training settings the data suggests (a setting the user gives always wins).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, model_validator

from mmzoo._atomic import atomic_write_text, read_json_object
from mmzoo.contracts import CheckedModel
from mmzoo.errors import DataError

MANIFEST_NAME = "mmzoo_data.json"
MANIFEST_VERSION = 1


class SplitInfo(CheckedModel):
    """What one split holds."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    images: int = Field(ge=0, description="Images in the split.")
    captions: int = Field(ge=0, description="Captions in the split.")
    files: dict[str, str] = Field(default_factory=dict, description="File name -> sha256 of every file written.")


class DataManifest(CheckedModel):
    """The schema of ``mmzoo_data.json``; unknown keys are kept (generators record their own details)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    manifest_version: int = Field(MANIFEST_VERSION, ge=1, description="Version of this schema.")
    format: str = Field("precomp", description="The registered data format that opens the folder.")
    name: str | None = Field(None, description="The dataset's name (shapes, coco, f30k, ...).")
    generator: str | None = Field(None, description="What wrote the folder (mmzoo make-data, import-features, ...).")
    captions_per_image: int = Field(5, ge=1, description="Consecutive caption lines per image.")
    regions: int | None = Field(None, ge=1, description="Regions per image (the most, when counts vary).")
    region_dim: int | None = Field(None, ge=1, description="Size D of a region feature.")
    region_policy: str | None = Field(None, description="How many regions an image has: fixed-36, adaptive-10-100.")
    extractor: str | dict[str, Any] | None = Field(None, description="The feature extractor, as its user named it.")
    normalisation: str | None = Field(None, description="How the features were normalised (none, l2, ...).")
    source_format: str | None = Field(None, description="The format the features were imported from.")
    source: dict[str, Any] | None = Field(None, description="What extracted the features (extract-features).")
    splits: dict[str, SplitInfo] = Field(default_factory=dict, description="Per-split counts and file digests.")
    twins: dict[str, str] = Field(default_factory=dict, description="Split -> twin table file.")
    model_overrides: dict[str, Any] = Field(default_factory=dict, description="Model settings the data suggests.")
    training_overrides: dict[str, Any] = Field(default_factory=dict, description="Training settings it suggests.")

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """Manifests of mmzoo 0.1 wrote ``"format": 1`` for the schema version."""
        if isinstance(data, dict) and isinstance(data.get("format"), int) and not isinstance(data["format"], bool):
            data = {**data, "manifest_version": data["format"], "format": "precomp"}
        return data

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def read_manifest(root: str | Path) -> DataManifest | None:
    """The dataset's manifest, or None when the folder has none; a DataError when it is broken.

    Examples:
        >>> read_manifest("data/shapes").region_dim  # doctest: +SKIP
        64
    """
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return None
    data = read_json_object(path, DataError, "this dataset manifest must be fixed or regenerated")
    try:
        manifest = DataManifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise DataError(f"The dataset manifest {path} is invalid ({problems}). Fix or regenerate it.") from None
    if manifest.manifest_version > MANIFEST_VERSION:
        raise DataError(
            f"The dataset manifest {path} has manifest_version {manifest.manifest_version}; this mmzoo reads "
            f"{MANIFEST_VERSION}. Upgrade mmzoo."
        )
    return manifest


def write_manifest(root: str | Path, manifest: DataManifest) -> Path:
    """Write ``mmzoo_data.json`` atomically."""
    text = json.dumps(manifest.to_json(), indent=1, sort_keys=True) + "\n"
    return atomic_write_text(Path(root) / MANIFEST_NAME, text)


__all__ = ["MANIFEST_NAME", "MANIFEST_VERSION", "DataManifest", "SplitInfo", "read_manifest", "write_manifest"]
