"""Reading BLIP-2's transformers-layout retrieval folders (``Blip2ForImageTextRetrieval``), strictly.

The same rules as :mod:`mmzoo_plugins.blip.hf`: explicit classes (``Blip2Config``, ``BertTokenizer``,
``BlipImageProcessor``), ``trust_remote_code=False``, weights from ``model.safetensors`` only, and each component
takes exactly the tensors whose names it owns (``vision_model.*``, ``query_tokens``, ``embeddings.*``,
``qformer.*``, ``vision_projection.*``, ``text_projection.*``, ``itm_head.*``: the names transformers writes).

Two checks transformers does not make: the folder must be a BLIP-2 one (``model_type`` ``blip-2``;
``Blip2Config.from_pretrained`` builds a default ViT-g config from a BLIP folder with only a log line), and its
Q-Former must take text (``qformer_config.use_qformer_text_input``: the retrieval checkpoints set it; the
captioning ones, e.g. ``Salesforce/blip2-opt-2.7b``, have no text feed-forward layers and cannot encode captions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field
from torch import nn

from mmzoo.errors import CheckpointError, ConfigError
from mmzoo.plugin import ComponentConfig
from mmzoo_plugins.blip.hf import resolve_source

#: a Blip2Config small enough for CPU tests (the contract tests use 32-d fragments and pooled vectors).
TINY_BLIP2 = {
    "vision_config": {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "image_size": 32,
        "patch_size": 16,
    },
    "qformer_config": {
        "vocab_size": 30524,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "use_qformer_text_input": True,
    },
    "num_query_tokens": 4,
    "image_text_hidden_size": 32,
}


def blip2_config(pretrained: Path | None, fields: dict[str, Any] | None) -> Any:
    """The Blip2Config of a folder (which must be a BLIP-2 retrieval one), or one built from fields."""
    from transformers import Blip2Config

    if pretrained is None:
        config = Blip2Config(**(fields or {}))
    else:
        path = Path(pretrained) / "config.json"
        try:
            model_type = json.loads(path.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{pretrained} holds no readable BLIP-2 config.json: {exc}") from None
        if model_type != "blip-2":
            raise CheckpointError(
                f"{path} describes a {model_type!r} model, not BLIP-2 ('blip-2'): use the blip-itm recipes for BLIP "
                "folders, and a Blip2ForImageTextRetrieval folder (e.g. Salesforce/blip2-itm-vit-g-coco) here."
            )
        config = Blip2Config.from_pretrained(pretrained, trust_remote_code=False)
    if not config.qformer_config.use_qformer_text_input:
        raise ConfigError(
            "This BLIP-2 checkpoint's Q-Former takes no text (qformer_config.use_qformer_text_input is false: a "
            "captioning checkpoint such as Salesforce/blip2-opt-2.7b). Image-text retrieval needs the ITM/ITC "
            "weights of Blip2ForImageTextRetrieval, e.g. Salesforce/blip2-itm-vit-g-coco."
        )
    return config


def check_embed_dim(config: Any, embed_dim: int) -> None:
    if config.image_text_hidden_size != embed_dim:
        raise ConfigError(
            f"The BLIP-2 weights project to {config.image_text_hidden_size} dimensions but the model's embed_dim is "
            f"{embed_dim}; set embed_dim={config.image_text_hidden_size}."
        )


class Blip2SourceConfig(ComponentConfig):
    """Where a BLIP-2 component's architecture and weights come from (shared by its four components)."""

    pretrained: str | None = Field(
        None,
        description="A transformers Blip2ForImageTextRetrieval folder or Hub id (config, tokenizer, image processor "
        "and model.safetensors), e.g. Salesforce/blip2-itm-vit-g-coco; the zoo alias sets it.",
    )
    blip2_config: dict[str, Any] | None = Field(
        None, description="Build from these Blip2Config fields with random weights instead (tests use a tiny one)."
    )


def open_source(config: Any, assets: Path | None, native: bool = False) -> tuple[Any, Path | None, Path | None]:
    """(Blip2Config, folder to take the weights from or None, folder of the tokenizer / processor files or None).

    BLIP's precedence (:func:`mmzoo_plugins.blip.hf.resolve_source`): native assets (a zoo entry's
    official folder) give everything; a saved mmzoo model's assets give the files; else ``pretrained``; else
    ``blip2_config`` fields (random weights).
    """
    return resolve_source(
        blip2_config,
        config.pretrained,
        config.blip2_config,
        assets,
        native,
        "A BLIP-2 component needs `pretrained` (a transformers Blip2ForImageTextRetrieval folder or Hub id, e.g. "
        "Salesforce/blip2-itm-vit-g-coco) or `blip2_config` (Blip2Config fields, random weights).",
    )


def shared_qformer_parts(config: Any) -> list[str]:
    """The parts of ``Blip2ForImageTextRetrieval`` that more than one BLIP-2 component holds, by their names there:
    the queries and ``vision_projection`` (``blip2-vision``, ``blip2-itm``), the Q-Former's LayerNorm and each
    layer's self-attention (all three), cross-attention and query feed-forward (``blip2-vision``, ``blip2-itm``) and
    text feed-forward (``blip2-text``, ``blip2-itm``). Shared through ``BuildContext.share``, the Q-Former exists
    once in a model, as in the official folder."""
    parts = ["query_tokens", "vision_projection", "qformer.layernorm"]
    for i in range(config.qformer_config.num_hidden_layers):
        for part in ("attention", "crossattention", "intermediate_query", "output_query", "intermediate", "output"):
            parts.append(f"qformer.encoder.layer.{i}.{part}")
    return parts


def drop_from_layers(qformer: nn.Module, *names: str) -> None:
    """Remove sub-modules a component never runs from every Q-Former layer (they are then neither held in memory
    nor read from the checkpoint): the text feed-forward of the image-only query pass, the cross-attention and
    the query feed-forward of the text-only pass."""
    for layer in qformer.encoder.layer:
        for name in names:
            if hasattr(layer, name):
                delattr(layer, name)


__all__ = [
    "TINY_BLIP2",
    "Blip2SourceConfig",
    "blip2_config",
    "check_embed_dim",
    "drop_from_layers",
    "open_source",
    "shared_qformer_parts",
]
