"""The towers: transformers' ``CLIPModel`` / ``SiglipModel`` / ``Siglip2Model`` vision and text sides as mmzoo
encoders.

mmzoo wraps transformers' networks, it does not rewrite them. A tower is built in one of four ways:

* **native** (``BuildContext.native``: a zoo entry whose ``Weights.format`` is ``transformers``): the official
  folder itself, weights included, read by transformers' ``from_pretrained`` (safetensors only, local files only,
  no remote code) and checked strictly: a missing, unexpected or mis-shaped tensor is a ``CheckpointError``;
* **from a saved mmzoo folder** (``BuildContext.assets``): the transformers config, image processor and tokenizer
  saved beside the weights; the weights then come from ``model.safetensors``;
* **from ``source``**: a zoo alias or a local folder in the transformers layout (``mmzoo.create_model("siglip")``);
* **from ``architecture``**: a transformers config as plain data, randomly initialised, with a tokenizer made
  from nothing (tests, or a tower to train on the shapes data).

Outputs (``Fragments``): images -> patch tokens (CLIP: post-layernormed and projected like its class token;
SigLIP: the last hidden states its attention-pooling head reads) with the pooled embedding (CLIP:
``visual_projection(pooler_output)``; SigLIP: ``pooler_output``) L2-normalised; captions -> token states (CLIP:
``text_projection`` of every token; SigLIP: its ``head`` of every token) with the pooled embedding likewise.
transformers 5's ``get_image_features`` / ``get_text_features`` return an output object whose ``pooler_output``
is that projected embedding, **unnormalised**; mmzoo normalises it, so the score is its cosine. The
checkpoint's ``logit_scale`` (and SigLIP's ``logit_bias``) are kept as buffers of the text tower for calibrated
probabilities (:mod:`mmzoo_plugins.clip.calibration`).

SigLIP 2 NaFlex (``Siglip2Model``, model_type ``siglip2``) keeps each image's aspect ratio: its image processor
resizes it to at most ``max_num_patches`` patches and pads the sequence; the pixels it takes are those patch
sequences, packed with their patch grids into one tensor (:func:`mmzoo_plugins.clip.processing.pack_naflex`), and
only the real patches are fragments (the mask). Its text side is SigLIP's (lower-cased, padded to 64, no mask).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

import mmzoo
from mmzoo.errors import CheckpointError, ConfigError
from mmzoo.plugin import (
    BuildContext,
    ComponentConfig,
    Fragments,
    TextEncoder,
    TokenBatch,
    VisualEncoder,
    get_registry,
    l2_normalize,
    masked_mean,
)
from mmzoo_plugins.clip import processing


@dataclass(frozen=True)
class Family:
    """Where a transformers dual encoder keeps its parts: the attribute names of its model class."""

    model_class: str
    vision: tuple[str, ...]
    text: tuple[str, ...]
    projected: bool  # CLIP: separate projections after the towers; SigLIP: heads inside the towers


FAMILIES = {
    "clip": Family("CLIPModel", ("vision_model", "visual_projection"), ("text_model", "text_projection"), True),
    "siglip": Family("SiglipModel", ("vision_model",), ("text_model",), False),
    "siglip2": Family("Siglip2Model", ("vision_model",), ("text_model",), False),
}
#: the model types transformers writes in config.json that mmzoo reads as each family.
MODEL_TYPES = {"clip": "clip", "siglip": "siglip", "siglip2": "siglip2"}
#: the text tower's scale (and bias) of the score, kept for calibrated probabilities.
CALIBRATION = {
    "clip": ("logit_scale",),
    "siglip": ("logit_scale", "logit_bias"),
    "siglip2": ("logit_scale", "logit_bias"),
}


class TowerConfig(ComponentConfig):
    source: str | None = Field(
        None,
        description="Weights to start from: a zoo alias in the transformers layout (siglip-base-patch16-224) or a "
        "local folder written by transformers' save_pretrained. Ignored when loading a saved model.",
    )
    architecture: dict[str, Any] | None = Field(
        None,
        description="A transformers config (with its model_type: clip, siglip or siglip2) for a randomly initialised "
        "tower, when there is no source.",
    )
    frozen: bool = Field(True, description="Keep the tower fixed (eval mode, no gradients).")
    head: bool = Field(
        False,
        description="A trainable linear map (d -> d) over the tower's outputs, pooled and fragments: a projection "
        "head trained over a frozen tower (the dual-encoder baseline of benchmarks/mmca_modern.py).",
    )
    head_hidden: int = Field(
        0,
        ge=0,
        le=1 << 16,
        description="With head: 0 makes it one linear map; more makes it an MLP projection head (linear map to this "
        "hidden size, GELU, linear map back to d).",
    )
    head_centre: bool = Field(
        False,
        description="With head: subtract from the tower's tokens (and from its pooled embedding) their running mean "
        "over the training batches before the head, as BatchNorm keeps one. A randomly initialised tower gives every "
        "token nearly the same direction (mean cosine ~0.9 on rendered shapes), which a head otherwise needs many "
        "epochs to unlearn.",
    )
    pool: Literal["tower", "mean"] = Field(
        "tower",
        description="The pooled embedding: the tower's own (CLIP's projected class / end token, SigLIP's "
        "attention-pooling head / last position) or the mean of the fragments (after the head).",
    )

    @model_validator(mode="after")
    def _one_origin(self) -> TowerConfig:
        if self.source is None and self.architecture is None:
            raise ValueError("give a source (zoo alias or folder) or an architecture (a transformers config)")
        if self.architecture is not None and self.architecture.get("model_type") not in MODEL_TYPES:
            raise ValueError(f"architecture.model_type must be one of {', '.join(MODEL_TYPES)}")
        if not self.head and (self.head_hidden or self.head_centre):
            raise ValueError("head_hidden and head_centre shape the projection head: set head=true as well")
        return self


class VisionTowerConfig(TowerConfig):
    in_dim: int | None = Field(
        None,
        gt=0,
        description="Size of the cached tower outputs (`mmzoo extract-features` with this encoder: row 0 the pooled "
        "embedding, then the patch tokens) that the trainer sets from the data; must be the tower's embedding size.",
    )
    max_num_patches: int | None = Field(
        None,
        gt=0,
        le=65536,
        description="SigLIP 2 NaFlex only: the most patches (of the checkpoint's size, 16x16 for Google's) an image is "
        "resized to, aspect ratio kept (more: finer detail, quadratic cost). None: the image processor's own setting "
        "(preprocessor_config.json; 256 for Google's checkpoints, the length their published numbers use).",
    )


class TextTowerConfig(TowerConfig):
    cache_captions: int = Field(
        0,
        ge=0,
        le=10_000_000,
        description="With a frozen tower: keep the outputs of up to this many distinct captions in memory, so "
        "that each caption runs through the tower once in training (0: off). Costs its real tokens x d floats.",
    )


class ProjectionHead(nn.Module):
    """A trainable projection over a frozen tower's outputs: one linear map, or an MLP (``hidden`` > 0), after
    optionally subtracting the running mean of each output (``centre``: the tokens' over their real positions, the
    pooled embedding's over the batch), updated in training mode as BatchNorm's running mean is (the first batches
    averaged cumulatively, then momentum 0.1) and saved with the model."""

    MOMENTUM = 0.1

    def __init__(self, dim: int, hidden: int = 0, centre: bool = False) -> None:
        super().__init__()
        if hidden:
            self.proj: nn.Module = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        else:
            self.proj = nn.Linear(dim, dim)
        self.centre = centre
        if centre:
            self.register_buffer("token_mean", torch.zeros(dim))
            self.register_buffer("pooled_mean", torch.zeros(dim))
            self.register_buffer("batches", torch.zeros((), dtype=torch.long))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # models saved before the head could be an MLP hold the linear head's weight and bias under the head itself
        if isinstance(self.proj, nn.Linear):
            for name in ("weight", "bias"):
                if prefix + name in state_dict:
                    state_dict[f"{prefix}proj.{name}"] = state_dict.pop(prefix + name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, tokens: Tensor, valid: Tensor, pooled: Tensor) -> tuple[Tensor, Tensor]:
        """(N, L, d) tokens with their (N, L) mask and (N, d) pooled -> both projected."""
        if self.centre:
            if self.training and bool(valid.any()):
                with torch.no_grad():
                    weight = max(1.0 / float(self.batches + 1), self.MOMENTUM)
                    real = tokens.detach()[valid].float()
                    self.token_mean.lerp_(real.mean(0).to(self.token_mean.dtype), weight)
                    self.pooled_mean.lerp_(pooled.detach().float().mean(0).to(self.pooled_mean.dtype), weight)
                    self.batches += 1
            tokens, pooled = tokens - self.token_mean.to(tokens.dtype), pooled - self.pooled_mean.to(pooled.dtype)
        return self.proj(tokens), self.proj(pooled)


def make_head(config: TowerConfig, dim: int) -> ProjectionHead | None:
    return ProjectionHead(dim, config.head_hidden, config.head_centre) if config.head else None


def tiny_architecture(model_type: str) -> dict[str, Any]:
    """A transformers config small enough for a CPU test (embed 32, two layers, 32-pixel images; NaFlex: at most 16
    patches of 8 pixels)."""
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    }
    text = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": 520,
        "max_position_embeddings": 77 if model_type == "clip" else 64,
    }
    if model_type == "clip":
        text.update({"bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513})
        return {"model_type": "clip", "projection_dim": 32, "vision_config": vision, "text_config": text}
    if model_type == "siglip2":
        vision = {k: v for k, v in vision.items() if k != "image_size"} | {"num_patches": 16}
    return {"model_type": model_type, "vision_config": vision, "text_config": text}


def save_random_tower(folder: Path, architecture: dict[str, Any], corpus: Any = None, seed: int = 0) -> Path:
    """A randomly initialised checkpoint in the transformers layout (weights, image processor, a tokenizer trained
    on ``corpus``): a tower to train fusion blocks over offline, loaded like an official one (``source=folder``)."""
    folder = Path(folder)
    torch.manual_seed(seed)
    config = config_from_data(architecture)
    tokenizer = processing.make_tokenizer(MODEL_TYPES[config.model_type], folder, corpus)
    config.text_config.vocab_size = max(int(config.text_config.vocab_size), len(tokenizer))
    build_model(config, None).save_pretrained(str(folder))
    default_processor(config).save_pretrained(str(folder))
    return folder


def default_processor(hf_config: Any) -> Any:
    """The image processor of a tower with no files: the family's defaults at the tower's resolution."""
    from transformers import CLIPImageProcessor, Siglip2ImageProcessor, SiglipImageProcessor

    if hf_config.model_type == "siglip2":
        vc = hf_config.vision_config
        return Siglip2ImageProcessor(patch_size=int(vc.patch_size), max_num_patches=int(vc.num_patches))
    size = int(hf_config.vision_config.image_size)
    if hf_config.model_type == "clip":
        return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return SiglipImageProcessor(size={"height": size, "width": size})


# -- building ---------------------------------------------------------------------------------------------------
def refuse_code(folder: Path) -> None:
    """A folder that would run code (a ``.py`` file, an ``auto_map``) is refused, as mmzoo refuses it everywhere."""
    code = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.py"))
    mapped = []
    for path in folder.glob("*.json"):
        try:
            if "auto_map" in json.loads(path.read_text(encoding="utf-8")):
                mapped.append(path.name)
        except (OSError, ValueError):
            continue
    if code or mapped:
        raise CheckpointError(
            f"{folder} carries code ({', '.join(code + mapped)}); mmzoo never runs code from a model folder."
        )


def source_folder(source: str) -> Path:
    """The local folder of a ``source``: a zoo alias (downloaded and verified by mmzoo) or a folder."""
    if source in get_registry("pretrained"):
        folder = mmzoo.download(source)
        if not isinstance(folder, Path):
            raise ConfigError(f"source={source!r} is an ensemble, not one tower.")
        return folder
    folder = Path(source).expanduser()
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"source={source!r} is neither a zoo alias in the transformers layout (`mmzoo list --pretrained clip*`) "
            "nor a folder with a transformers config.json."
        )
    refuse_code(folder)
    return folder


def read_config(folder: Path) -> Any:
    """The transformers config of ``folder``; a CheckpointError for a model type this family does not read."""
    from transformers import AutoConfig

    path = folder / "config.json"
    try:
        model_type = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path} is not a readable transformers config: {exc}") from None
    if model_type not in MODEL_TYPES:
        raise CheckpointError(
            f"{path} has model_type {model_type!r}; the clip family reads {', '.join(MODEL_TYPES)} "
            "(SigLIP 2's fixed-resolution checkpoints are 'siglip', its NaFlex ones 'siglip2')."
        )
    return AutoConfig.from_pretrained(str(folder), trust_remote_code=False)


def config_from_data(data: dict[str, Any]) -> Any:
    from transformers import AutoConfig

    values = dict(data)
    return AutoConfig.for_model(values.pop("model_type"), **values)


def build_model(hf_config: Any, folder: Path | None) -> nn.Module:
    """The whole transformers model: with ``folder``, its weights loaded strictly from the folder's safetensors."""
    import transformers

    cls = getattr(transformers, FAMILIES[MODEL_TYPES[hf_config.model_type]].model_class)
    if folder is None:
        return cls(hf_config).float()
    try:
        model, info = cls.from_pretrained(
            str(folder),
            config=hf_config,
            use_safetensors=True,
            local_files_only=True,
            output_loading_info=True,
            trust_remote_code=False,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"transformers could not load the weights in {folder}: {exc}") from None
    problems = {
        kind: sorted(k for k in map(str, info.get(kind, ())) if not k.endswith("position_ids"))
        for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")
    }
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        listed = "; ".join(f"{kind.replace('_', ' ')}: {', '.join(v[:8])}" for kind, v in problems.items())
        raise CheckpointError(f"The weights in {folder} do not fit {cls.__name__} exactly ({listed}).")
    return model.float()


class _Tower:
    """Shared building of one side: the transformers config, the parts of the model, and where they came from."""

    side: str = ""

    def _build(self, config: TowerConfig, context: BuildContext) -> Path | None:
        """Set ``hf_config``, ``family`` and the side's modules; return the folder the preprocessing comes from."""
        if context.assets is not None:
            folder: Path | None = context.assets
            weights = folder if context.native else None
        elif config.source is not None:
            folder = weights = source_folder(config.source)
        else:
            folder = weights = None
        self.hf_config = read_config(folder) if folder is not None else config_from_data(config.architecture or {})
        self.family = MODEL_TYPES[self.hf_config.model_type]
        model = build_model(self.hf_config, weights)
        for name in getattr(FAMILIES[self.family], self.side):
            setattr(self, name, getattr(model, name))
        self._calibration = {n: getattr(model, n).detach().clone() for n in CALIBRATION[self.family]}
        return folder

    def _check_dim(self, dim: int, embed_dim: int) -> None:
        if dim != embed_dim:
            raise ConfigError(
                f"This {self.family} checkpoint's {self.side} embedding has size {dim}, but embed_dim={embed_dim}: "
                f"set embed_dim={dim}."
            )

    def _freeze(self, frozen: bool) -> None:
        if frozen:
            self.requires_grad_(False)
            nn.Module.train(self, False)


class TowerVisual(VisualEncoder, _Tower):
    """Pixels -> the vision tower -> patch tokens as fragments and the pooled embedding, L2-normalised."""

    Config = VisionTowerConfig
    takes_pixels = True
    side = "vision"

    def __init__(self, config: VisionTowerConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        folder = self._build(config, context)
        del self._calibration  # the text tower keeps it
        self.image_processor = self._processor(folder)
        vc = self.hf_config.vision_config
        self._check_dim(self.hf_config.projection_dim if self.family == "clip" else vc.hidden_size, context.embed_dim)
        self._freeze(config.frozen)
        self.input_dim = context.embed_dim  # cached tower outputs (regions) have the embedding's size
        if config.in_dim is not None and config.in_dim != context.embed_dim:
            raise ConfigError(
                f"visual.in_dim={config.in_dim}, but this tower's outputs have size {context.embed_dim}: the features "
                "were extracted with another tower."
            )
        self.head = make_head(config, context.embed_dim)
        self.max_num_patches = self._max_num_patches(config)

    def _max_num_patches(self, config: VisionTowerConfig) -> int | None:
        """NaFlex's patch budget: the config's, else the image processor's own."""
        if self.family != "siglip2":
            if config.max_num_patches is not None:
                raise ConfigError(
                    f"visual.max_num_patches is a SigLIP 2 NaFlex setting; this {self.family} tower takes "
                    "fixed-size images: leave it unset."
                )
            return None
        return int(config.max_num_patches or self.image_processor.max_num_patches)

    def _processor(self, folder: Path | None) -> Any:
        from transformers import AutoImageProcessor

        if folder is not None and any(
            (folder / n).is_file() for n in ("preprocessor_config.json", "processor_config.json")
        ):
            return AutoImageProcessor.from_pretrained(str(folder), trust_remote_code=False)
        if folder is not None:
            raise CheckpointError(f"{folder} has no preprocessor_config.json: the weights' preprocessing is unknown.")
        return default_processor(self.hf_config)

    @classmethod
    def test_config(cls) -> dict[str, Any]:
        return {"architecture": tiny_architecture("clip"), "frozen": False}

    @classmethod
    def describe_inputs(cls, config: ComponentConfig) -> str:
        return "images (PIL, file paths, or pixels preprocessed by the checkpoint's own image processor)"

    def train(self, mode: bool = True) -> TowerVisual:
        super().train(mode)
        if self.config.frozen:
            self.vision_model.eval()
        return self

    def save_assets(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.hf_config.save_pretrained(str(directory))
        self.image_processor.save_pretrained(str(directory))

    def preprocess(self, images: Any, train: bool = False) -> Tensor:
        if self.family == "siglip2":
            return processing.preprocess_naflex(self.image_processor, images, self.max_num_patches)
        return processing.preprocess_images(self.image_processor, images)

    def transform(self, train: bool = False) -> Any:
        processor, budget = self.image_processor, self.max_num_patches
        if self.family == "siglip2":
            return lambda image: processing.preprocess_naflex(processor, [image], budget)[0]
        return lambda image: processing.preprocess_images(processor, [image])[0]

    def tower(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3, H, W), or NaFlex's packed patches -> the tower's patch tokens (N, P, d) and pooled embedding
        (N, d), unnormalised (NaFlex: the padded patches' tokens too; :meth:`patch_mask` says which are real)."""
        dtype = next(self.vision_model.parameters()).dtype
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.frozen):
            if self.family == "siglip2":
                values, mask, shapes = processing.unpack_naflex(pixels)
                out = self.vision_model(pixel_values=values.to(dtype), pixel_attention_mask=mask, spatial_shapes=shapes)
            else:
                out = self.vision_model(pixel_values=pixels.to(dtype))
            if self.family == "clip":
                tokens = self.visual_projection(self.vision_model.post_layernorm(out.last_hidden_state[:, 1:]))
                return tokens, self.visual_projection(out.pooler_output)
            if out.pooler_output is None:
                raise CheckpointError("This SigLIP vision tower has no pooling head (vision_use_head=False).")
            return out.last_hidden_state, out.pooler_output

    def patch_mask(self, pixels: Tensor) -> Tensor | None:
        """NaFlex: (N, P) bool, True for an image's real patches (the rest is padding); None for square pixels."""
        return processing.unpack_naflex(pixels)[1] if self.family == "siglip2" else None

    def regions(self, pixels: Tensor) -> Tensor:
        """What `mmzoo extract-features` caches per image: (N, 1 + P, d), row 0 the pooled embedding, then the
        patch tokens (NaFlex: padded patches all zeros); :meth:`forward` takes these rows back as they are."""
        tokens, pooled = self.tower(pixels)
        real = self.patch_mask(pixels)
        if real is not None:
            tokens = tokens.masked_fill(~real[..., None], 0.0)
        return torch.cat([pooled[:, None], tokens], dim=1)

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Fragments:
        """Pixels (N, 3, H, W), or cached tower outputs (N, 1 + P, d) from :meth:`regions` with their mask."""
        if features.dim() == 3:
            pooled, tokens = features[:, 0], features[:, 1:]
            valid = mask[:, 1:] if mask is not None else None
            if self.family == "siglip2":  # NaFlex's padded patches were cached as zero rows
                processing.refuse_raw_naflex_pixels(features)
                valid = (tokens != 0).any(dim=-1) & (valid if valid is not None else True)
        else:
            tokens, pooled = self.tower(features)
            valid = self.patch_mask(features)
        if valid is None:
            valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        if self.head is not None:
            tokens, pooled = self.head(tokens, valid, pooled)
        if self.config.pool == "mean":
            pooled = masked_mean(tokens, valid)
        return Fragments(tokens.masked_fill(~valid[..., None], 0.0), valid, l2_normalize(pooled))


class TowerText(TextEncoder, _Tower):
    """Captions -> the checkpoint's tokenizer -> the text tower -> token states and the pooled embedding."""

    Config = TextTowerConfig
    side = "text"

    def __init__(self, config: TextTowerConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        folder = self._build(config, context)
        self.tokenizer = self._tokenizer(folder)
        tc = self.hf_config.text_config
        self.max_length = processing.max_length(self.tokenizer, int(tc.max_position_embeddings))
        dim = self.hf_config.projection_dim if self.family == "clip" else getattr(tc, "projection_size", tc.hidden_size)
        self._check_dim(int(dim or tc.hidden_size), context.embed_dim)
        self._keep_calibration()
        self._freeze(config.frozen)
        self.head = make_head(config, context.embed_dim)
        #: token ids of a caption -> its tower outputs (states of its real tokens, pooled), on the CPU
        self._cache: dict[bytes, tuple[Tensor, Tensor]] = {}

    def _tokenizer(self, folder: Path | None) -> Any:
        from transformers import AutoTokenizer

        if folder is not None:  # always from_pretrained(folder): the vocab_file=... constructors ignore the files
            return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
        self._made = tempfile.TemporaryDirectory(prefix="mmzoo-tokenizer-")
        return processing.make_tokenizer(self.family, Path(self._made.name))

    def _keep_calibration(self) -> None:
        """The checkpoint's logit scale (and bias) as buffers: saved with the model, never trained."""
        for name, value in self._calibration.items():
            self.register_buffer(name, value.float().reshape(()))

    @classmethod
    def test_config(cls) -> dict[str, Any]:
        return {"architecture": tiny_architecture("clip"), "frozen": False}

    def train(self, mode: bool = True) -> TowerText:
        super().train(mode)
        if self.config.frozen:
            self.text_model.eval()
        return self

    def save_assets(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.hf_config.save_pretrained(str(directory))
        self.tokenizer.save_pretrained(str(directory))

    def tokenize(self, captions: Any) -> TokenBatch:
        return processing.tokenize(self.tokenizer, self.family, captions, self.max_length)

    def forward(self, tokens: TokenBatch) -> Fragments:
        if self.config.frozen and self.config.cache_captions > 0:
            states, pooled = self._cached(tokens)
        else:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.frozen):
                states, pooled = self.tower(tokens)
        # SigLIP's ids are padded to 64 for the tower; the fragments keep only the columns some caption uses, so a
        # fusion block over them pays for the real tokens (ten or so), not for 64
        keep = tokens.mask.any(dim=0)
        states, mask = states[:, keep], tokens.mask[:, keep]
        if self.head is not None:
            states, pooled = self.head(states, mask, pooled)
        if self.config.pool == "mean":
            pooled = masked_mean(states, mask)
        states = states.masked_fill(~mask[..., None], 0.0)
        return Fragments(states, mask, l2_normalize(pooled))

    def _cached(self, tokens: TokenBatch) -> tuple[Tensor, Tensor]:
        """The tower's outputs, each distinct caption computed once (up to ``cache_captions`` kept)."""
        keys = [ids[valid].cpu().numpy().tobytes() for ids, valid in zip(tokens.ids, tokens.mask, strict=True)]
        todo = sorted({i for i, k in enumerate(keys) if k not in self._cache})
        fresh: dict[bytes, tuple[Tensor, Tensor]] = {}
        if todo:
            with torch.no_grad():
                states, pooled = self.tower(tokens[torch.tensor(todo, device=tokens.ids.device)])
            for row, i in enumerate(todo):
                kept = (states[row][tokens.mask[i]].cpu(), pooled[row].cpu())
                fresh[keys[i]] = kept
                if len(self._cache) < self.config.cache_captions:
                    self._cache[keys[i]] = kept
        device, length = tokens.ids.device, tokens.ids.shape[1]
        dtype = next(self.text_model.parameters()).dtype
        out_states = torch.zeros(len(keys), length, self.context.embed_dim, device=device, dtype=dtype)
        out_pooled = torch.zeros(len(keys), self.context.embed_dim, device=device, dtype=dtype)
        for i, key in enumerate(keys):
            states_i, pooled_i = self._cache.get(key) or fresh[key]
            out_states[i, tokens.mask[i]] = states_i.to(device, out_states.dtype)
            out_pooled[i] = pooled_i.to(device, out_pooled.dtype)
        return out_states, out_pooled

    def tower(self, tokens: TokenBatch) -> tuple[Tensor, Tensor]:
        """Token ids -> the tower's token states (N, L, d) and pooled embedding (N, d), projected, unnormalised."""
        # SigLIP was trained without an attention mask (big_vision): its pooled token, the last position, reads
        # the padding; transformers 5's processor returns a mask that would change the scores, so it is not passed.
        if self.family == "clip":
            out = self.text_model(input_ids=tokens.ids, attention_mask=tokens.mask.long())
            return self.text_projection(out.last_hidden_state), self.text_projection(out.pooler_output)
        out = self.text_model(input_ids=tokens.ids)
        return self.text_model.head(out.last_hidden_state), out.pooler_output


__all__ = [
    "FAMILIES",
    "ProjectionHead",
    "TextTowerConfig",
    "TowerConfig",
    "TowerText",
    "TowerVisual",
    "VisionTowerConfig",
    "build_model",
    "default_processor",
    "read_config",
    "save_random_tower",
    "tiny_architecture",
]
