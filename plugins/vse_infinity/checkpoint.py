"""Reading woodfrog/vse_infty checkpoints: their layout, their architecture, and every tensor's new name.

Their ``train.py`` writes ``torch.save({'epoch', 'model': [img_enc.state_dict(), txt_enc.state_dict()],
'best_rsum', 'opt': argparse.Namespace, 'Eiters'})``. On the BERT (master) branch both encoders are
wrapped in ``nn.DataParallel`` before saving, so every key starts with ``module.``; on the ``bigru`` branch
only grid models are. Both spellings are accepted, each encoder all-or-nothing.

Tensors their forward never reads are dropped by name, and only those: the second BatchNorm of the
region MLP (``mlp.bns.1``: built, never applied), BERT's pooler (they read the token states), the
ResNet classifier head and the ``base`` / ``top`` aliases of the backbone (the same tensors under a second
name; checked equal). Every other tensor maps to exactly one mmzoo tensor; what is left over, missing or
mis-shaped is a :class:`~mmzoo.errors.CheckpointError` naming it.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mmzoo.errors import CheckpointError
from mmzoo.plugin import require

REGION_UNUSED = re.compile(r"^mlp\.bns\.1\.")
BERT_UNUSED = re.compile(r"^bert\.(pooler\.|embeddings\.position_ids$)")
#: backbone sources whose network is torchvision's ResNet class (torch.hub), which timm mirrors exactly.
TORCHVISION_SOURCES = ("wsl", "imagenet_resnext")
#: the others ("detector", "imagenet", "imagenet_res50", "imagenet_res152") build their own lib/modules/resnet.py:
#: stride on the 1x1 conv, max-pool padding 0 / ceil_mode; refused.


def split_checkpoint(ckpt: Any, source: str) -> tuple[argparse.Namespace, dict[str, Tensor], dict[str, Tensor]]:
    """Check their train.py layout -> (opt, image-encoder tensors, text-encoder tensors), ``module.`` removed."""
    hint = (
        f"{source} is not a VSE-infinity checkpoint: their train.py writes a dict with 'model' = "
        "[img_enc.state_dict(), txt_enc.state_dict()] and 'opt' (an argparse.Namespace)"
    )
    if not isinstance(ckpt, Mapping) or "model" not in ckpt or "opt" not in ckpt:
        keys = sorted(map(str, ckpt)) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(f"{hint}; it holds {keys}.")
    model, opt = ckpt["model"], ckpt["opt"]
    if not isinstance(opt, argparse.Namespace):
        raise CheckpointError(f"{hint}; its 'opt' is a {type(opt).__name__}.")
    if not isinstance(model, list | tuple) or len(model) != 2 or not all(isinstance(m, Mapping) for m in model):
        raise CheckpointError(f"{hint}; its 'model' is not a list of two state dicts.")
    parts = []
    for name, state in zip(("image encoder", "text encoder"), model, strict=True):
        bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
        if bad:
            raise CheckpointError(f"{source}: the {name} state holds non-tensors: {bad[:5]}.")
        parts.append(strip_data_parallel(dict(state), f"{source} ({name})"))
    if not any(k.startswith("gpool.") for k in parts[1]):
        raise CheckpointError(
            f"{hint}; its text encoder has no GPO (gpool.*) tensors, so it is another model's checkpoint "
            f"(VSE++ / SCAN write the same layout). Text tensors: {sorted(parts[1])[:6]}."
        )
    return opt, parts[0], parts[1]


def strip_data_parallel(state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """Remove the ``module.`` prefix nn.DataParallel adds, when every key has it."""
    prefixed = [k.startswith("module.") for k in state]
    if state and all(prefixed):
        return {k.removeprefix("module."): v for k, v in state.items()}
    if any(prefixed):
        raise CheckpointError(f"{source}: only some keys start with 'module.'; the state dict is mixed up.")
    return state


def text_kind(txt: Mapping[str, Tensor], source: str) -> str:
    """``bert`` or ``bigru``, from the text encoder's tensors."""
    if any(k.startswith("bert.") for k in txt) and "linear.weight" in txt:
        return "bert"
    if "embed.weight" in txt and any(k.startswith("rnn.") for k in txt):
        return "bigru"
    raise CheckpointError(f"{source}: the text encoder is neither their BERT nor their bi-GRU one: {sorted(txt)[:6]}.")


def option(opt: argparse.Namespace, name: str, default: Any = None) -> Any:
    return getattr(opt, name, default)


def check_region_opt(opt: argparse.Namespace, source: str) -> None:
    """Refuse what the region converter cannot express: grid checkpoints and un-normalised embeddings."""
    kind = option(opt, "precomp_enc_type", "basic")
    if kind != "basic":
        raise CheckpointError(
            f"{source} is a grid checkpoint (precomp_enc_type={kind!r}, backbone_source="
            f"{option(opt, 'backbone_source')!r}): it takes pixels, not region features. Convert it with "
            "`mmzoo convert vse-infinity-grid` (WSL / torchvision backbones only; docs/vse-infinity.md)."
        )
    check_norms(opt, source)


def check_norms(opt: argparse.Namespace, source: str) -> None:
    if option(opt, "no_imgnorm", False) or option(opt, "no_txtnorm", False):
        raise CheckpointError(
            f"{source} was trained without L2-normalised embeddings (no_imgnorm / no_txtnorm); mmzoo's "
            "VSE-infinity always normalises, so its similarities would differ. Not converted."
        )


def region_model_config(
    opt: argparse.Namespace, img: Mapping[str, Tensor], txt: Mapping[str, Tensor], kind: str, text: dict[str, Any]
) -> dict[str, Any]:
    """The mmzoo model config of a region checkpoint; ``text`` holds the text section's extra fields."""
    embed = int(option(opt, "embed_size", img["fc.weight"].shape[0]))
    in_dim = int(option(opt, "img_dim", img["fc.weight"].shape[1]))
    has_mlp = "mlp.layers.0.weight" in img
    visual = {"name": "vse-infinity-regions", "in_dim": in_dim, "mlp": has_mlp}
    if has_mlp:
        visual["mlp_hidden"] = int(img["mlp.layers.0.weight"].shape[0])
    visual.update(gpo_sizes(img))
    text = {"name": f"vse-infinity-{kind}", **text, **gpo_sizes(txt)}
    if kind == "bigru":
        text["word_dim"] = int(txt["embed.weight"].shape[1])
        text["layers"] = 1 + max(int(m.group(1)) for k in txt if (m := re.match(r"rnn\.weight_ih_l(\d+)", k)))
    return {
        "visual": visual,
        "text": text,
        "fusion": None,
        "loss": loss_section(opt),
        "alpha": 0.0,
        "embed_dim": embed,
    }


def loss_section(opt: argparse.Namespace) -> dict[str, Any]:
    # their train.py switches to the hardest negative after vse_mean_warmup_epochs, so the final model used it
    return {"name": "triplet", "margin": float(option(opt, "margin", 0.2)), "hardest_negative": True}


def gpo_sizes(state: Mapping[str, Tensor]) -> dict[str, int]:
    """GPO's position-encoding and hidden sizes from its GRU tensors."""
    weight = state.get("gpool.gru.weight_ih_l0")
    if weight is None:
        raise CheckpointError("the checkpoint has no GPO GRU (gpool.gru.weight_ih_l0).")
    return {"pe_dim": int(weight.shape[1]), "gpo_hidden": int(weight.shape[0] // 3)}


def map_region_state(img: Mapping[str, Tensor], txt: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Their tensors -> mmzoo names (``visual.*``, ``text.*``); the unused ones dropped by name."""
    mapped = {f"visual.{k}": v for k, v in img.items() if not REGION_UNUSED.match(k)}
    mapped.update({f"text.{k}": v for k, v in txt.items() if not BERT_UNUSED.match(k)})
    return mapped


# -- grid checkpoints -----------------------------------------------------------------------------------
def check_grid_opt(opt: argparse.Namespace, source: str) -> str:
    """The backbone source of a grid checkpoint, refused unless its network maps onto timm strictly."""
    kind = option(opt, "precomp_enc_type", "basic")
    if kind != "backbone":
        raise CheckpointError(
            f"{source} is a region-feature checkpoint (precomp_enc_type={kind!r}); convert it with "
            "`mmzoo convert vse-infinity`."
        )
    backbone = str(option(opt, "backbone_source", "detector"))
    if not any(s in backbone for s in TORCHVISION_SOURCES):
        raise CheckpointError(
            f"{source} uses the backbone_source={backbone!r}: their own Caffe-style ResNet (lib/modules/resnet.py: "
            "stride 2 on the first 1x1 conv of a block, max-pool with padding 0 and ceil_mode, Caffe BGR "
            "inputs). Its tensors have torchvision's names and shapes but compute something else in timm / "
            "torchvision, so mmzoo does not load it. Only WSL and torchvision ResNeXt grids convert."
        )
    check_norms(opt, source)
    return backbone


def timm_architecture(backbone: Mapping[str, Tensor], source: str) -> str:
    """The timm name of a torchvision ResNet / ResNeXt from its tensors (depth, groups, width)."""
    blocks = []
    for layer in range(1, 5):
        indices = {int(m.group(1)) for k in backbone if (m := re.match(rf"layer{layer}\.(\d+)\.", k))}
        if not indices:
            raise CheckpointError(f"{source}: the backbone has no layer{layer}; it is not a ResNet.")
        blocks.append(max(indices) + 1)
    bottleneck = "layer1.0.conv3.weight" in backbone
    depth = (3 if bottleneck else 2) * sum(blocks) + 2
    conv2 = backbone["layer1.0.conv2.weight"]
    groups = int(conv2.shape[0] // conv2.shape[1])
    if groups == 1:
        name = f"resnet{depth}" if conv2.shape[0] == 64 else f"wide_resnet{depth}_2"
    else:
        name = f"resnext{depth}_{groups}x{conv2.shape[0] // groups}d"
    require("timm", extra="vision", purpose="Converting a VSE-infinity grid checkpoint")
    import timm

    if not timm.is_model(name):
        raise CheckpointError(f"{source}: its backbone ({name}, blocks {blocks}) has no timm architecture.")
    return name


def map_grid_state(img: Mapping[str, Tensor], txt: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """Their grid model's tensors -> mmzoo names; ``backbone.base`` / ``backbone.top`` must alias ``resnet``."""
    resnet = {k.removeprefix("backbone.resnet."): v for k, v in img.items() if k.startswith("backbone.resnet.")}
    aliases = {f"backbone.base.{i}.": f"{name}." for i, name in ((0, "conv1"), (1, "bn1"), (4, "layer1"))}
    aliases.update({"backbone.base.5.": "layer2.", "backbone.base.6.": "layer3.", "backbone.top.0.": "layer4."})
    mapped: dict[str, Tensor] = {}
    for key, value in img.items():
        if key.startswith("backbone.resnet."):
            if not key.startswith("backbone.resnet.fc."):  # the classifier head their forward never reaches
                mapped[f"visual.grid.backbone.{key.removeprefix('backbone.resnet.')}"] = value
            continue
        alias = next((a for a in aliases if key.startswith(a)), None)
        if alias is not None:
            twin = resnet.get(aliases[alias] + key.removeprefix(alias))
            if twin is None or twin.shape != value.shape or not torch.equal(twin, value):
                raise CheckpointError(f"{source}: {key} should be the same tensor as its backbone.resnet twin.")
            continue
        if key.startswith("image_encoder.fc."):
            mapped[f"visual.grid.fc.{key.removeprefix('image_encoder.fc.')}"] = value
        elif key.startswith("image_encoder.gpool."):
            mapped[f"visual.{key.removeprefix('image_encoder.')}"] = value
        else:
            mapped[f"visual.{key}"] = value  # unknown: left for the strict load to name
    mapped.update({f"text.{k}": v for k, v in txt.items() if not BERT_UNUSED.match(k)})
    return mapped


def backbone_tensors(img: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k.removeprefix("backbone.resnet."): v for k, v in img.items() if k.startswith("backbone.resnet.")}
