"""The converters ``vse-infinity`` (region features) and ``vse-infinity-grid`` (pixels, WSL ResNeXt).

``mmzoo convert vse-infinity model_best.pth --out DIR [--bert NAME_OR_FOLDER] [--vocab FILE]`` reads a
checkpoint their ``train.py`` wrote (only through ``mmzoo.plugin.read_foreign_checkpoint``: ``torch.load`` with
``weights_only=True`` and ``argparse.Namespace`` the one allowed class), takes the architecture from its
``opt`` and its tensors, builds the mmzoo model and loads every tensor strictly (see ``checkpoint.py``).
BERT's config and tokenizer come from ``--bert`` (its weights come from the checkpoint); a bi-GRU checkpoint
needs SCAN's vocabulary file (``--vocab``), which must fit its embedding exactly.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import Field

import mmzoo
from mmzoo.errors import CheckpointError, HubError
from mmzoo.plugin import ComponentConfig, Converter, load_state_strict, read_foreign_checkpoint, require
from mmzoo_plugins.vse_infinity import checkpoint as ckpt
from mmzoo_plugins.vse_infinity.bigru import MASK, read_scan_vocabulary
from mmzoo_plugins.vse_infinity.zoo import CITATION, CODE, LICENSE, PAPER


class ConverterOptions(ComponentConfig):
    bert: str = Field(
        "bert-base-uncased",
        description="BERT config + tokenizer: a Hub id or a local folder (the weights come from the checkpoint).",
    )
    vocab: str | None = Field(
        None, description="bi-GRU checkpoints: SCAN's vocabulary JSON (coco_precomp_vocab.json / f30k_...)."
    )


def bert_section(bert: str, txt: dict[str, Any], source: str) -> dict[str, Any]:
    """The text section's BERT fields: the config of ``bert`` checked against the checkpoint's tensors."""
    require("transformers", extra="vse-infinity", purpose="Converting a VSE-infinity BERT checkpoint")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(bert, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise HubError(
            f"Cannot read the BERT config of --bert {bert!r}: {exc}. Pass a local folder holding config.json and "
            "the tokenizer files of bert-base-uncased, or allow the Hub download."
        ) from None
    words = txt.get("bert.embeddings.word_embeddings.weight")
    layers = 1 + max((int(k.split(".")[3]) for k in txt if k.startswith("bert.encoder.layer.")), default=-1)
    if words is not None and (
        tuple(words.shape) != (config.vocab_size, config.hidden_size) or layers != config.num_hidden_layers
    ):
        raise CheckpointError(
            f"{source}: its BERT has {layers} layers and word embeddings {tuple(words.shape)}, but --bert {bert!r} "
            f"describes {config.num_hidden_layers} layers and ({config.vocab_size}, {config.hidden_size}). "
            "Point --bert to the BERT the checkpoint was trained from (theirs: bert-base-uncased)."
        )
    fields = {k: v for k, v in config.to_dict().items() if not k.startswith("_")}
    for key in ("transformers_version", "architectures", "torch_dtype", "dtype", "model_type"):
        fields.pop(key, None)
    return {"pretrained": bert, "tokenizer": bert, "bert_config": fields}


def load_strict(model: mmzoo.MatchingModel, tensors: dict[str, Any], source: str) -> mmzoo.MatchingModel:
    load_state_strict(model, tensors, source)
    return model.eval()


class _VseInfinityConverter(Converter):
    """What both VSE-infinity converters share: their options and the paper, code, citation and licence."""

    Config = ConverterOptions
    paper = PAPER
    code = CODE
    citation = CITATION
    license = LICENSE


class RegionConverter(_VseInfinityConverter):
    """VSE-infinity on BUTD region features: their ``basic`` precomp models, BERT or bi-GRU text."""

    description = "VSE-infinity region-feature checkpoints (woodfrog/vse_infty train.py's model_best.pth)"

    def convert(self, checkpoint: Path) -> mmzoo.MatchingModel:
        source = str(checkpoint)
        opt, img, txt = ckpt.split_checkpoint(read_foreign_checkpoint(checkpoint), source)
        ckpt.check_region_opt(opt, source)
        if "fc.weight" not in img or any(k.startswith("backbone.") for k in img):
            raise CheckpointError(f"{source}: the image encoder is not their region encoder: {sorted(img)[:6]}.")
        kind = ckpt.text_kind(txt, source)
        text = bert_section(self.config.bert, txt, source) if kind == "bert" else {}
        model = mmzoo.create_model(ckpt.region_model_config(opt, img, txt, kind, text))
        if kind == "bigru":
            install_vocabulary(model, self.config.vocab, txt, opt, source)
        return load_strict(model, ckpt.map_region_state(img, txt), source)


def install_vocabulary(
    model: mmzoo.MatchingModel, vocab: str | None, txt: dict[str, Any], opt: argparse.Namespace, source: str
) -> None:
    """Give the bi-GRU encoder SCAN's vocabulary (+ <mask>); it must have as many words as the embedding rows."""
    rows = int(txt["embed.weight"].shape[0])
    if vocab is None:
        data = ckpt.option(opt, "data_name", "coco")
        name = "coco_precomp_vocab.json" if "coco" in str(data) else "f30k_precomp_vocab.json"
        raise CheckpointError(
            f"{source} is a bi-GRU checkpoint: its {rows}-word embedding needs the vocabulary it was trained with, "
            f"SCAN's {name} (from SCAN's data download). Pass it with --vocab FILE."
        )
    words = read_scan_vocabulary(vocab)
    if len(words) != rows:
        raise CheckpointError(
            f"The vocabulary {vocab} has {len(words)} entries with {MASK} but the checkpoint's embedding has {rows} "
            f"rows (opt.vocab_size={ckpt.option(opt, 'vocab_size')}): it is another vocabulary (COCO vs Flickr30K?)."
        )
    model.text.set_vocabulary(words)


class GridConverter(_VseInfinityConverter):
    """VSE-infinity from pixels: their ``backbone`` models whose ResNet is torchvision's (WSL, ImageNet ResNeXt)."""

    description = "VSE-infinity WSL-grid checkpoints (torchvision / WSL ResNeXt backbones, BERT text)"

    def convert(self, checkpoint: Path) -> mmzoo.MatchingModel:
        source = str(checkpoint)
        opt, img, txt = ckpt.split_checkpoint(read_foreign_checkpoint(checkpoint), source)
        ckpt.check_grid_opt(opt, source)
        if ckpt.text_kind(txt, source) != "bert":
            raise CheckpointError(f"{source}: bi-GRU grid checkpoints use the BUTD backbone, which does not convert.")
        backbone = ckpt.backbone_tensors(img)
        if not backbone:
            raise CheckpointError(f"{source}: the image encoder has no backbone.resnet.* tensors: {sorted(img)[:6]}.")
        visual = {
            "name": "vse-infinity-grid",
            "backbone": ckpt.timm_architecture(backbone, source),
            "image_size": int(256 * float(ckpt.option(opt, "input_scale_factor", 1.0))),
            **ckpt.gpo_sizes({k.removeprefix("image_encoder."): v for k, v in img.items()}),
        }
        config = {
            "visual": visual,
            "text": {"name": "vse-infinity-bert", **bert_section(self.config.bert, txt, source), **ckpt.gpo_sizes(txt)},
            "fusion": None,
            "loss": ckpt.loss_section(opt),
            "alpha": 0.0,
            "embed_dim": int(ckpt.option(opt, "embed_size", img["image_encoder.fc.weight"].shape[0])),
        }
        model = mmzoo.create_model(config)
        return load_strict(model, ckpt.map_grid_state(img, txt, source), source)
