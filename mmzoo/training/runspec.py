"""What a run trains: the resolved model config, the training config and the data, from CLI-level inputs.

Precedence (later wins): the recipe (model config and its training defaults) -> settings the data
implies (``visual.in_dim`` = the data's region size; the manifest's ``model_overrides``, e.g.
``text.name=gru`` for the shapes data, and ``training_overrides``) -> the config file -> ``--set``.
A suggested model key that does not fit the model (``fusion.heads`` for a model without fusion) is skipped. A data-implied setting is
skipped when the user set that very key (so ``--set text.name=bert-cnn`` keeps BERT on the shapes data,
while ``--set text.word_dim=64`` tunes the GRU the data asked for); the data's region size must agree
with an explicit ``visual.in_dim``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmzoo import registry
from mmzoo._version import __version__
from mmzoo.config import SECTIONS, apply_overrides, load_config_file, parse_yaml
from mmzoo.data import DataManifest, open_split, read_manifest
from mmzoo.errors import ConfigError
from mmzoo.factory import resolve_config
from mmzoo.training.config import TrainConfig

logger = logging.getLogger(__name__)


@dataclass
class RunSpec:
    """Everything ``run.json`` records about what is trained on what."""

    model: dict[str, Any]
    training: TrainConfig
    data: str
    recipe: str | None = None
    data_settings: dict[str, Any] = field(default_factory=dict)
    user_overrides: dict[str, Any] = field(default_factory=dict)
    #: digests of the data files when the run started (see :func:`mmzoo.training.rundir.data_fingerprint`).
    data_fingerprint: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mmzoo_version": __version__,
            "recipe": self.recipe,
            "data": self.data,
            "model": self.model,
            "training": self.training.to_dict(),
            "data_settings": self.data_settings,
            "user_overrides": self.user_overrides,
            "data_fingerprint": self.data_fingerprint,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        try:
            return cls(
                model=dict(data["model"]),
                training=TrainConfig.for_recipe(data["training"]),
                data=str(data["data"]),
                recipe=data.get("recipe"),
                data_settings=dict(data.get("data_settings") or {}),
                user_overrides=dict(data.get("user_overrides") or {}),
                data_fingerprint=dict(data.get("data_fingerprint") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"run.json lacks {exc}; it was not written by `mmzoo train`.") from None


def parse_sets(items: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``["fusion.heads=8", "training.lr=1e-4"]`` -> (model overrides, training overrides); values via YAML."""
    model: dict[str, Any] = {}
    training: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. fusion.heads=8 or training.lr=1e-4.")
        try:
            value = parse_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML: {exc}") from None
        if key.startswith("training."):
            training[key.removeprefix("training.")] = value
        else:
            model[key] = value
    return model, training


def flatten_model_section(section: Mapping[str, Any]) -> dict[str, Any]:
    """``{"fusion": {"heads": 8}, "alpha": 0.5, "loss.margin": 0.1}`` -> dotted overrides."""
    flat: dict[str, Any] = {}
    for key, value in section.items():
        if key in SECTIONS and isinstance(value, Mapping):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def is_full_config(section: Mapping[str, Any]) -> bool:
    return all(isinstance(section.get(s), Mapping) and "name" in section[s] for s in ("visual", "text", "loss"))


def data_settings(data: str | Path, region_dim: int, manifest: DataManifest | None) -> dict[str, Any]:
    """Model settings the data implies: its region size and the manifest's ``model_overrides``."""
    settings: dict[str, Any] = {"visual.in_dim": int(region_dim)}
    settings.update(dict(manifest.model_overrides if manifest else {}))
    return settings


def _applies(key: str, base: Mapping[str, Any], settings: Mapping[str, Any]) -> bool:
    """Whether a data-implied ``SECTION.param`` fits the model: the section exists and its component has the field."""
    section, _, param = key.partition(".")
    if not param or section not in SECTIONS:
        return True
    name = settings.get(f"{section}.name", (base.get(section) or {}).get("name"))
    if name is None:
        return False
    if param == "name":
        # data may swap a component only for one that would download pretrained weights (BERT on offline data)
        current = (base.get(section) or {}).get("name")
        return current is None or registry.get_registry(SECTIONS[section]).get(current).downloads
    component = registry.get_registry(SECTIONS[section]).get(str(name))
    return param.split(".")[0] in component.Config.model_fields


def prepare_run(
    data: str | Path,
    model: str | None = None,
    config_file: str | Path | None = None,
    sets: Sequence[str] = (),
    epochs: int | None = None,
    region_dim: int | None = None,
    manifest: DataManifest | Mapping[str, Any] | None = None,
) -> RunSpec:
    """Resolve the model and training configs of a new run (see the module docstring for precedence).

    ``region_dim`` and ``manifest`` describe the data; when omitted they are read from ``data``.

    Examples:
        >>> spec = prepare_run("data/shapes", "mmca", sets=["training.epochs=2"])  # doctest: +SKIP
    """
    file = load_config_file(config_file) if config_file else {}
    unknown = set(file) - {"model", "training"}
    if unknown:
        raise ConfigError(
            f"Config file {config_file}: unknown top-level key(s) {sorted(unknown)}; use model / training."
        )
    model_section = dict(file.get("model") or {})
    set_model, set_training = parse_sets(sets)
    full = is_full_config(model_section)
    if not full and model is None:
        raise ConfigError(
            "Name the model to train (--model NAME; `mmzoo list` shows them) or give a full model config."
        )
    base: dict[str, Any] = dict(model_section) if full else registry.model.get(model).config
    user = {**flatten_model_section(model_section), **set_model}
    if region_dim is None:
        region_dim = open_split(data, "train").region_dim
    if manifest is None:
        manifest = read_manifest(data)
    elif not isinstance(manifest, DataManifest):
        manifest = DataManifest.model_validate(dict(manifest))
    training_overrides = {**dict(file.get("training") or {}), **set_training}
    if epochs is not None:
        training_overrides["epochs"] = epochs
    applied = _data_model_settings(data, base, user, data_settings(data, region_dim, manifest))
    resolved = resolve_config(apply_overrides(base, applied), set_model if full else user)
    training, applied_training = _training(data, model, manifest, training_overrides, resolved.dual_weight)
    return RunSpec(
        model=resolved.to_dict(),
        training=training,
        data=str(Path(data).resolve()),
        recipe=model,
        data_settings={**applied, **applied_training},
        user_overrides=user,
    )


def _training(
    data: str | Path,
    model: str | None,
    manifest: DataManifest | None,
    overrides: Mapping[str, Any],
    dual_weight: float,
) -> tuple[TrainConfig, dict[str, Any]]:
    """The recipe's schedule, then what the data suggests (unless the user set it), then the user's settings.

    Cheap hard negatives rank candidates by ``<i0, c0>``, which a model with ``dual_weight = 0`` never trains: the
    data's suggestion of them is not applied to such a model.
    """
    recipe_training = registry.model.get(model).training if model else {}
    suggested = dict(manifest.training_overrides if manifest else {})
    if dual_weight == 0.0 and "hard_negatives" in suggested:
        logger.info("not applying the data's training.hard_negatives: this model does not train the cheap score")
        del suggested["hard_negatives"]
    applied = {}
    for key, value in suggested.items():
        if key not in overrides:
            applied[f"training.{key}"] = value
            logger.info(
                "from the data in %s: training.%s=%r (set training.%s yourself to change it)", data, key, value, key
            )
    return TrainConfig.for_recipe({**recipe_training, **suggested}, overrides), applied


def _data_model_settings(
    data: str | Path, base: Mapping[str, Any], user: Mapping[str, Any], implied: Mapping[str, Any]
) -> dict[str, Any]:
    """The data-implied model settings that apply: not set by the user, and fitting the model's components."""
    if "visual.in_dim" in user and user["visual.in_dim"] != implied["visual.in_dim"]:
        raise ConfigError(
            f"visual.in_dim={user['visual.in_dim']} but the data in {data} has regions of size "
            f"{implied['visual.in_dim']}; drop the setting (it is taken from the data)."
        )
    applied: dict[str, Any] = {}
    for key, value in sorted(implied.items(), key=lambda kv: not kv[0].endswith(".name")):
        if key in user:
            logger.info("the data suggests %s=%r; keeping your %s=%r", key, value, key, user[key])
            continue
        if not _applies(key, base, {**applied, **user}):
            logger.debug("the data's %s=%r does not apply to this model", key, value)
            continue
        applied[key] = value
        logger.info("from the data in %s: %s=%r (set %s yourself to change it)", data, key, value, key)
    return applied


__all__ = ["RunSpec", "data_settings", "flatten_model_section", "is_full_config", "parse_sets", "prepare_run"]
