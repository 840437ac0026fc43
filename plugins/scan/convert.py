"""``mmzoo convert scan``: a checkpoint written by SCAN's ``train.py`` -> an mmzoo model.

``save_checkpoint`` stores ``{'epoch', 'model': [img_enc.state_dict(), txt_enc.state_dict()],
'best_rsum', 'opt': argparse.Namespace, 'Eiters'}`` (``model_best.pth.tar``; PyTorch 0.3 / Python 2
wrote it in the legacy, non-zip format). It is read through ``read_foreign_checkpoint``
(``weights_only``, only ``argparse.Namespace`` allowed). The architecture comes from ``opt``
(``precomp_enc_type``, ``img_dim``, ``embed_size``, ``word_dim``, ``num_layers``, ``bi_gru``,
``no_imgnorm``, ``no_txtnorm``, ``cross_attn``, ``raw_feature_norm``, ``agg_func``, ``lambda_lse``,
``lambda_softmax``, ``margin``, ``max_violation``); the vocabulary is SCAN's JSON (``vocab.zip``'s
``f30k_precomp_vocab.json`` / ``coco_precomp_vocab.json``, or what their ``vocab.py`` wrote), which the
checkpoint does not contain. Every tensor is mapped by name (``visual.`` + image encoder key,
``text.`` + text encoder key) and loaded strictly.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, get_args

import torch
from pydantic import Field

import mmzoo
from mmzoo.errors import CheckpointError
from mmzoo.plugin import ComponentConfig, Converter, load_state_strict, read_foreign_checkpoint
from mmzoo_plugins.common.vocab import Vocabulary
from mmzoo_plugins.scan.attention import AggFunc, RawFeatureNorm

#: opt attributes the architecture is read from (train.py defines them all).
ARCHITECTURE = (
    "precomp_enc_type",
    "img_dim",
    "embed_size",
    "word_dim",
    "num_layers",
    "bi_gru",
    "no_imgnorm",
    "cross_attn",
    "raw_feature_norm",
    "agg_func",
    "lambda_lse",
    "lambda_softmax",
)


class SCANConverterConfig(ComponentConfig):
    vocab: str = Field(
        description="SCAN's vocabulary JSON the model was trained with (e.g. vocab/f30k_precomp_vocab.json)."
    )


def _choice(opt: argparse.Namespace, name: str, allowed: tuple[str, ...], source: str) -> str:
    value = getattr(opt, name)
    if value not in allowed:
        raise CheckpointError(f"{source}: opt.{name} is {value!r}; SCAN knows {', '.join(allowed)}.")
    return value


def model_config(opt: argparse.Namespace, source: str) -> dict[str, Any]:
    """The mmzoo model config of the run ``opt`` describes."""
    missing = [name for name in ARCHITECTURE if not hasattr(opt, name)]
    if missing:
        hint = (
            " (a VSE++ checkpoint? SCAN's opt has cross_attn and raw_feature_norm)" if "cross_attn" in missing else ""
        )
        raise CheckpointError(f"{source} is not a SCAN checkpoint: its opt lacks {', '.join(missing)}{hint}.")
    cross_attn = _choice(opt, "cross_attn", ("t2i", "i2t"), source)
    return {
        "visual": {
            "name": "scan-regions",
            "in_dim": int(opt.img_dim),
            "precomp_enc_type": _choice(opt, "precomp_enc_type", ("basic", "weight_norm"), source),
            "no_imgnorm": bool(opt.no_imgnorm),
        },
        "text": {
            "name": "scan-gru",
            "word_dim": int(opt.word_dim),
            "layers": int(opt.num_layers),
            "bidirectional": bool(opt.bi_gru),
            "no_txtnorm": bool(getattr(opt, "no_txtnorm", False)),
        },
        "fusion": {
            "name": f"scan-{cross_attn}",
            "raw_feature_norm": _choice(opt, "raw_feature_norm", get_args(RawFeatureNorm), source),
            "agg_func": _choice(opt, "agg_func", get_args(AggFunc), source),
            "lambda_softmax": float(opt.lambda_softmax),
            "lambda_lse": float(opt.lambda_lse),
        },
        "loss": {
            "name": "triplet",
            "margin": float(getattr(opt, "margin", 0.2)),
            "hardest_negative": bool(getattr(opt, "max_violation", True)),
            "reduction": "sum",
        },
        "dual_weight": 0.0,
        "alpha": 1.0,
        "embed_dim": int(opt.embed_size),
    }


def _state_dicts(ckpt: Any, source: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], argparse.Namespace]:
    if not isinstance(ckpt, dict) or "model" not in ckpt or "opt" not in ckpt:
        keys = sorted(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{source} is not a checkpoint of SCAN's train.py: expected a dict with 'model' (the encoders' "
            f"state dicts) and 'opt' (its options); found {keys}."
        )
    states, opt = ckpt["model"], ckpt["opt"]
    if not isinstance(opt, argparse.Namespace):
        raise CheckpointError(f"{source}: 'opt' should be train.py's argparse.Namespace; found {type(opt).__name__}.")
    if not isinstance(states, (list, tuple)) or not all(isinstance(s, dict) for s in states):
        raise CheckpointError(f"{source}: 'model' should be a list of state dicts; found {type(states).__name__}.")
    if len(states) != 2:
        hint = (
            " An SGRAF checkpoint (image, text and similarity encoders)? Use `mmzoo convert sgraf`."
            if len(states) == 3
            else ""
        )
        raise CheckpointError(
            f"{source} holds {len(states)} state dicts; a SCAN checkpoint holds 2 (image and text encoder).{hint}"
        )
    img, txt = states
    if not all(isinstance(v, torch.Tensor) for s in states for v in s.values()):
        raise CheckpointError(f"{source}: the state dicts hold something other than tensors.")
    return dict(img), dict(txt), opt


def _map_tensors(model: mmzoo.MatchingModel, img: dict, txt: dict) -> dict[str, torch.Tensor]:
    mapped = {f"visual.{k}": v for k, v in img.items()} | {f"text.{k}": v for k, v in txt.items()}
    # PyTorch 0.3 had no 0-d tensors: its weight_norm(dim=None) saved the norm g with shape (1,)
    g = mapped.get("visual.fc.weight_g")
    if g is not None and g.shape == (1,):
        mapped["visual.fc.weight_g"] = g.reshape(())
    expected = model.state_dict()
    return {k: (v.to(expected[k].dtype) if k in expected else v) for k, v in mapped.items()}


class SCANConverter(Converter):
    """SCAN checkpoints (kuanghuei/SCAN train.py's ``model_best.pth.tar``) plus their vocabulary JSON."""

    Config = SCANConverterConfig
    description = "SCAN checkpoints (kuanghuei/SCAN train.py's model_best.pth.tar) with their vocabulary JSON"
    paper = "Lee et al., Stacked Cross Attention for Image-Text Matching, ECCV 2018"
    citation = (
        "@inproceedings{lee2018stacked,\n  title={Stacked cross attention for image-text matching},\n"
        "  author={Lee, Kuang-Huei and Chen, Xi and Hua, Gang and Hu, Houdong and He, Xiaodong},\n"
        "  booktitle={Proceedings of the European conference on computer vision (ECCV)},\n"
        "  pages={201--216},\n  year={2018}\n}"
    )
    code = "https://github.com/kuanghuei/SCAN"
    license = "apache-2.0"

    def convert(self, checkpoint: Path) -> mmzoo.MatchingModel:
        source = f"The checkpoint {Path(checkpoint).name}"
        img, txt, opt = _state_dicts(read_foreign_checkpoint(checkpoint), source)
        vocab = Vocabulary.load(self.config.vocab)
        rows = txt.get("embed.weight")
        if rows is not None and rows.dim() == 2 and rows.shape[0] != len(vocab):
            raise CheckpointError(
                f"The vocabulary {self.config.vocab} holds {len(vocab)} words but {source.lower()[4:]}'s word "
                f"embedding has {rows.shape[0]} rows: pass the vocabulary JSON this model was trained with "
                f"(SCAN's vocab/{getattr(opt, 'data_name', 'DATA')}_vocab.json)."
            )
        model = mmzoo.create_model(model_config(opt, source))
        model.text.set_vocabulary(vocab)
        load_state_strict(model, _map_tensors(model, img, txt), source)
        return model.eval()
