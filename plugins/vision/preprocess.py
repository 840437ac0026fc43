"""Preprocessing that travels with the weights: images (PIL, file paths or tensors) -> pixels (N, 3, H, W).

The settings live in the visual section of the model config (``visual.preprocess`` and
``visual.augment``), so ``config.json`` carries them beside the weights and a loaded model resizes and
normalises exactly as it was trained. The transforms themselves are timm's (``create_transform``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor

from mmzoo.errors import InputError
from mmzoo.plugin import ComponentConfig, require
from mmzoo_plugins.common.images import check_pixels

Interpolation = Literal["bilinear", "bicubic", "nearest"]


class PreprocessConfig(ComponentConfig):
    """Evaluation preprocessing; unset fields are filled from the chosen weights when the config is built."""

    image_size: int | None = Field(None, gt=0, description="Side of the square crop fed to the backbone.")
    crop_pct: float | None = Field(
        None, gt=0.0, le=1.0, description="Resize the short side to image_size / crop_pct, then crop (timm)."
    )
    crop_mode: Literal["center", "squash", "border"] = Field(
        "center", description="center: resize short side and crop; squash: resize both sides (keeps every pixel)."
    )
    mean: tuple[float, float, float] | None = Field(None, description="Per-channel mean subtracted (RGB, 0..1).")
    std: tuple[float, float, float] | None = Field(None, description="Per-channel std divided by (RGB, 0..1).")
    interpolation: Interpolation | None = Field(None, description="Resize interpolation.")


class AugmentConfig(ComponentConfig):
    """Training-time augmentation, applied by ``preprocess(images, train=True)`` and ``transform(train=True)``."""

    enabled: bool = Field(False, description="Augment training images (random resized crop, flips, jitter).")
    scale: tuple[float, float] = Field((0.5, 1.0), description="Area range of the random resized crop.")
    hflip: float = Field(
        0.0, ge=0.0, le=1.0, description="Horizontal flip probability; keep 0 when captions say left/right."
    )
    color_jitter: float = Field(
        0.0, ge=0.0, description="Brightness/contrast/saturation jitter; keep 0 when captions name colours."
    )


def build_transform(pre: PreprocessConfig, augment: AugmentConfig, train: bool) -> Callable[[Any], Tensor]:
    """timm's transform for one PIL image -> (3, H, W) normalised tensor."""
    require("timm", extra="vision", purpose="The pixel preprocessing")
    from timm.data import create_transform

    common = {"interpolation": pre.interpolation, "mean": tuple(pre.mean), "std": tuple(pre.std)}
    if train and augment.enabled:
        return create_transform(
            pre.image_size,
            is_training=True,
            scale=tuple(augment.scale),
            hflip=augment.hflip,
            color_jitter=augment.color_jitter,
            **common,
        )
    return create_transform(pre.image_size, crop_pct=pre.crop_pct, crop_mode=pre.crop_mode, **common)


def open_image(item: Any) -> Any:
    """A PIL image in RGB from a PIL image or a file path; an InputError for anything else."""
    require("PIL", extra="vision", purpose="Reading images")
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, str | Path):
        try:
            with Image.open(item) as img:
                return img.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise InputError(f"Cannot read image {item}: {exc}") from None
    raise InputError(f"Expected a PIL image or a file path; got {type(item).__name__}.")


def to_pixels(images: Any, transform: Callable[[Any], Tensor]) -> Tensor:
    """PIL images / paths (one or a sequence) -> (N, 3, H, W); a tensor is taken as already preprocessed."""
    if isinstance(images, Tensor):
        return check_pixels(images)
    items: Sequence[Any] = [images] if isinstance(images, str | Path) or hasattr(images, "convert") else images
    if not isinstance(items, Sequence) or len(items) == 0:
        raise InputError("Expected PIL images, file paths or a (N, 3, H, W) tensor; got an empty or unknown input.")
    return torch.stack([transform(open_image(item)) for item in items])
