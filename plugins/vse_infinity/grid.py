"""VSE-infinity from pixels (their ``EncoderImageFull``): a ResNeXt grid, a linear map, GPO.

Pixels -> the backbone's last feature map (2048 x h x w) -> h*w grid regions -> ``fc`` (2048 -> d) per
region (the fragments) -> GPO -> L2-normalised i0. No MLP: their grid variants use ``precomp_enc_type
backbone``, which builds none.

The backbone, its preprocessing and the fc come from mmzoo's ``timm-grid`` encoder (built with no
attention units, so its output *is* ``fc(regions)``); this encoder adds GPO and their training details:
the backbone's BatchNorm layers stay in eval mode while it fine-tunes (their ``ResnetFeatureExtractor``),
and the grid size augmentation of ``EncoderImageFull`` through the mask: each image draws r ~ U(0, 1); when
r > 0.2 it drops each region with probability ``0.2 * r``, else it keeps them all. Their training-time
pixel augmentation (random crop, flip) is not part of the encoder: ``preprocess`` is their eval path.

Only backbones that are torchvision's ResNet class map onto timm strictly (WSL-Images' and torchvision's
ResNeXt-101 32x8d: the same tensor names, shapes and computation as timm's ``resnext101_32x8d``). Their
BUTD grid backbone is a Caffe-style ResNet-101 that timm has no architecture for; see docs/vse-infinity.md.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn

from mmzoo.errors import ConfigError
from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, VisualEncoder, get_registry, l2_normalize
from mmzoo_plugins.vse_infinity.gpo import GPO

#: their eval preprocessing for torchvision backbones: resize both sides to 256 * input_scale_factor
#: (no crop, aspect ratio not kept), bilinear, ImageNet mean / std (lib/datasets/image_caption.py).
IMAGENET_PREPROCESS = {
    "crop_mode": "squash",
    "crop_pct": 1.0,
    "interpolation": "bilinear",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
}


def drop_grid(mask: Tensor, p: float) -> Tensor:
    """Their grid size augmentation: an image is augmented with probability 1 - p; it then keeps each
    region with probability 1 - p * r, r ~ U(0, 1) drawn once per image; it keeps one region at least."""
    n, k = mask.shape
    r = torch.rand(n, device=mask.device)
    keep = torch.rand(n, k, device=mask.device) > p * r[:, None]
    augmented = (r > p)[:, None]
    keep = torch.where(augmented, keep & mask, mask)
    return torch.where(keep.any(1, keepdim=True), keep, mask)


class VseGridConfig(ComponentConfig):
    backbone: str = Field("resnext101_32x8d", description="timm architecture of the backbone (WSL: resnext101_32x8d).")
    weights: str = Field(
        "none",
        description="Backbone weights before training: none | timm | offline:NAME | a local file (timm-grid's). "
        "Converted checkpoints carry their own.",
    )
    frozen: bool = Field(False, description="Keep the backbone fixed; theirs fine-tunes it (BatchNorm frozen).")
    image_size: int = Field(512, gt=0, description="Side the image is resized to (theirs: 256 x input_scale_factor).")
    drop_prob: float = Field(
        0.2, ge=0.0, lt=1.0, description="Training only: grid size augmentation strength (theirs: 0.2)."
    )
    pe_dim: int = Field(32, gt=0, description="GPO position-encoding size (theirs: 32); must be even.")
    gpo_hidden: int = Field(32, gt=0, description="GPO bi-GRU hidden size (theirs: 32).")


class VseGrid(VisualEncoder):
    """Pixels (or extracted grid regions) -> timm-grid fc fragments -> GPO -> L2-normalised i0."""

    Config = VseGridConfig
    takes_pixels = True

    @classmethod
    def test_config(cls) -> dict:
        return {"backbone": "resnet18", "image_size": 64, "pe_dim": 8, "gpo_hidden": 8}

    def __init__(self, config: VseGridConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        if config.pe_dim % 2:
            raise ConfigError(f"visual.pe_dim must be even (sin/cos pairs); got {config.pe_dim}.")
        grid_cls = get_registry("visual_encoder").get("timm-grid")
        grid_config = grid_cls.Config(
            backbone=config.backbone,
            weights=config.weights,
            frozen=config.frozen,
            layers=0,  # no attention units: timm-grid's output is then fc(regions), their fragments
            heads=1,
            preprocess={**IMAGENET_PREPROCESS, "image_size": config.image_size},
        )
        self.grid = grid_cls(grid_config, context)
        self.input_dim = self.grid.input_dim
        self.gpool = GPO(config.pe_dim, config.gpo_hidden)

    def train(self, mode: bool = True) -> VseGrid:
        super().train(mode)
        for module in self.grid.backbone.modules():  # their backbone fine-tunes with BatchNorm statistics fixed
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def transform(self, train: bool = False) -> Any:
        """The per-image transform (PIL -> (3, H, W)) for a Dataset: their eval resize and normalisation."""
        return self.grid.transform(False)

    def preprocess(self, images: Any, train: bool = False) -> Tensor:
        """PIL images, paths or a (N, 3, H, W) tensor -> pixels, resized and normalised as theirs."""
        return self.grid.preprocess(images, train=False)

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Fragments:
        """Pixels (N, 3, H, W), or grid regions (N, k, C) with their mask -> image Fragments."""
        if features.dim() == 4:
            features = self.grid.regions(features)
            mask = None
        if mask is None:
            mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        if self.training and self.config.drop_prob > 0:
            mask = drop_grid(mask, self.config.drop_prob)
        x = self.grid(features, mask).features.masked_fill(~mask[..., None], 0.0)
        return Fragments(x, mask, l2_normalize(self.gpool(x, mask)))
