"""The model config: four component sections plus model-level values, validated by pydantic.

A config is plain data (``config.json`` holds it as is)::

    {"visual": {"name": "mmca-regions", "in_dim": 2048}, "text": {"name": "bert-cnn"},
     "fusion": {"name": "mmca-cross"}, "loss": {"name": "triplet"}, "alpha": 1.0, "dual_weight": 1.0,
     "embed_dim": 1024}

Each section names a registered component; its other keys are validated by that component's
``Config`` class, and the defaults are filled in, so a saved config is complete.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mmzoo import registry
from mmzoo.contracts import CheckedModel, ComponentConfig
from mmzoo.errors import ConfigError

#: config section -> registry kind.
SECTIONS: dict[str, str] = {"visual": "visual_encoder", "text": "text_encoder", "fusion": "fusion", "loss": "loss"}


class ComponentSpec(BaseModel):
    """One section: the registered component's ``name`` plus its parameters."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="Registered name of the component.")

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ModelConfig(CheckedModel):
    """A whole matching model: which components, their parameters, and how scores combine.

    The score of an image and a caption is ``S = dual_weight * <i0, c0> + alpha * fused``. The dual term
    ``<i0, c0>`` (the cosine of the pooled embeddings) is also the *cheap score* every model offers for
    shortlisting, whatever its weight in ``S``: SCAN and SGRAF score with the fused term alone
    (``dual_weight = 0``).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    visual: ComponentSpec = Field(description="Visual encoder: region features -> image fragments.")
    text: ComponentSpec = Field(description="Text encoder: captions -> word fragments.")
    fusion: ComponentSpec | None = Field(None, description="Fusion block scoring pairs; null for a dual encoder.")
    loss: ComponentSpec = Field(description="Training loss over a (B, B) score matrix.")
    alpha: float = Field(
        1.0, ge=0.0, description="Weight of the fused score: S = dual_weight * <i0, c0> + alpha * fused."
    )
    dual_weight: float = Field(
        1.0, ge=0.0, description="Weight of the dual-encoder cosine <i0, c0> in S (0: the fused term alone)."
    )
    embed_dim: int = Field(1024, gt=0, le=65536, description="Joint embedding size d shared by all components.")

    @model_validator(mode="after")
    def _validate_sections(self) -> ModelConfig:
        for section in SECTIONS:
            spec = getattr(self, section)
            if spec is not None:
                validated = self.component_config(section)
                setattr(self, section, ComponentSpec(name=spec.name, **validated.model_dump(mode="json")))
        return self

    @model_validator(mode="after")
    def _some_score(self) -> ModelConfig:
        if self.dual_weight == 0.0 and (self.fusion is None or self.alpha == 0.0):
            raise ValueError("dual_weight = 0 needs a fusion block with alpha > 0: the model would score nothing")
        return self

    def component_config(self, section: str) -> ComponentConfig:
        """The section's parameters validated by its component's ``Config`` class."""
        spec: ComponentSpec | None = getattr(self, section)
        if spec is None:
            raise ConfigError(f"The config has no {section!r} section.")
        cls = registry.get_registry(SECTIONS[section]).get(spec.name)
        try:
            return cls.Config.model_validate(spec.params)
        except ValidationError as exc:
            raise ConfigError(
                _describe(exc, prefix=f"{section}.", owner=f"{section} {spec.name!r}", model=cls.Config)
            ) from None

    @classmethod
    def parse(cls, data: Mapping[str, Any] | ModelConfig) -> ModelConfig:
        """Validate plain data into a config, raising :class:`ConfigError` with every problem listed."""
        if isinstance(data, ModelConfig):
            return data
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(_describe(exc, prefix="", owner="model config", model=cls)) from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted overrides applied: ``{"fusion.heads": 8, "alpha": 0.5}``.

    Setting ``SECTION.name`` to another component starts that section afresh, because the old
    component's parameters would not fit the new one.
    """
    result = copy.deepcopy(dict(data))
    ordered = sorted(overrides.items(), key=lambda kv: (not kv[0].endswith(".name"), kv[0]))
    for key, value in ordered:
        head, _, rest = key.partition(".")
        if not rest:
            result[head] = copy.deepcopy(value)
            continue
        if head not in SECTIONS:
            raise ConfigError(
                f"Override {key!r}: {head!r} is not a section;{did_you_mean(head, SECTIONS)} "
                f"Sections are {', '.join(SECTIONS)}."
            )
        section = result.get(head)
        if rest == "name":
            if not section or section.get("name") != value:
                result[head] = {"name": value}
            continue
        if section is None:
            raise ConfigError(f"Override {key!r}: the {head!r} section is empty; set {head}.name first.")
        node = section
        *parents, leaf = rest.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"Override {key!r}: {part!r} is not a nested mapping.")
        node[leaf] = copy.deepcopy(value)
    return result


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.2's numbers: PyYAML (YAML 1.1) reads ``1e-4`` (an exponent without a dot) as text."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """YAML text -> plain data, with ``1e-4`` a number (as JSON and YAML 1.2 read it)."""
    return yaml.load(text, Loader=_YamlLoader)


def shipped_folder(name: str) -> Path | None:
    """A folder of files that ship with mmzoo (``configs``, ``model_cards``): inside the installed package, where
    the wheel puts them (``mmzoo/_configs``), or beside ``mmzoo/`` in a source checkout (or an editable install)."""
    package = Path(__file__).resolve().parent
    if (package / f"_{name}").is_dir():
        return package / f"_{name}"
    if (package.parent / name).is_dir() and (package.parent / "pyproject.toml").is_file():
        return package.parent / name
    return None


def shipped_configs() -> list[str]:
    """The names of the training configs that ship with mmzoo (``mmca-coco``, ...), for ``--config NAME``."""
    folder = shipped_folder("configs")
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder else []


def find_config_file(spec: str | Path) -> Path:
    """``--config``'s file: a path that exists wins; otherwise a shipped config, by name (``mmca-coco``) or by the
    repository path the docs and the zoo print (``configs/mmca-coco.yaml``), found from any folder.

    Examples:
        >>> find_config_file("mmca-coco").name
        'mmca-coco.yaml'
    """
    path = Path(spec)
    if path.exists() or len(path.parts) > 2 or (len(path.parts) == 2 and path.parts[0] != "configs"):
        return path
    folder = shipped_folder("configs")
    shipped = (
        folder / (path.name if path.suffix in (".yaml", ".yml", ".json") else f"{path.name}.yaml") if folder else None
    )
    return shipped if shipped is not None and shipped.is_file() else path


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into plain data, with a :class:`ConfigError` naming the file.

    ``path`` may also name a shipped config (``mmca-coco``; :func:`find_config_file`)."""
    path = find_config_file(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        names = ", ".join(shipped_configs()) or "none found"
        raise ConfigError(
            f"Cannot read config file {path}: {exc.strerror}. Give a path, or the name of a config that ships with "
            f"mmzoo: {names}."
        ) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else parse_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"Config file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping at the top level.")
    return data


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` Did you mean 'heads'?`` for a mistyped field, or ``""`` when nothing is close (difflib's ratio >= 0.6)."""
    close = difflib.get_close_matches(str(name), list(known), n=3)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def known_fields(model: Any, loc: Sequence[Any]) -> list[str]:
    """The field names a pydantic model accepts at ``loc[:-1]`` (nested config models walked), for did-you-mean."""
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        model = getattr(field, "annotation", None) if field is not None else None
        if not isinstance(model, type):
            return []
    return list(getattr(model, "model_fields", {}))


def _describe(exc: ValidationError, prefix: str, owner: str, model: Any = None) -> str:
    lines = []
    for err in exc.errors():
        loc = prefix + ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, ConfigError):  # a section already described itself
            lines.append(str(inner))
            continue
        if err["type"] == "extra_forbidden":
            hint = did_you_mean(err["loc"][-1], known_fields(model, err["loc"])) if model is not None else ""
            msg = f"unknown field.{hint} (`mmzoo components` lists each component's fields)"
        lines.append(f"  {loc or '<root>'}: {msg}")
    return f"Invalid {owner}:\n" + "\n".join(lines)


__all__ = [
    "SECTIONS",
    "ComponentSpec",
    "ModelConfig",
    "apply_overrides",
    "did_you_mean",
    "find_config_file",
    "known_fields",
    "load_config_file",
    "parse_yaml",
    "shipped_configs",
    "shipped_folder",
]
