"""Reading SGRAF checkpoints: validate the layout, derive the architecture from ``opt``, map every tensor.

Their ``train.py`` saves ``{'epoch', 'model': [img_enc, txt_enc, sim_enc] state dicts, 'best_rsum', 'opt':
argparse.Namespace, 'Eiters'}``. The three state dicts map onto mmzoo's ``visual.``, ``text.`` and ``fusion.``
sections one to one (the modules keep their attribute names). Everything that does not fit is a
:class:`~mmzoo.errors.CheckpointError` saying what it is and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mmzoo.errors import CheckpointError
from mmzoo_plugins.common.vocab import Vocabulary
from mmzoo_plugins.sgraf.recipes import model_config

#: options of their opts.py that decide the architecture (train.py adds vocab_size).
ARCH_OPTIONS = ("module_name", "img_dim", "word_dim", "embed_size", "sim_dim", "num_layers", "bi_gru")
SECTIONS = ("visual", "text", "fusion")
SLOTS_KEY = "v_global_w.embedding_local.1.weight"


def _option(opt: Any, name: str, default: Any = None) -> Any:
    return opt.get(name, default) if isinstance(opt, Mapping) else getattr(opt, name, default)


def split_checkpoint(ckpt: Any, source: str) -> tuple[list[dict[str, Tensor]], Any]:
    """The three state dicts and ``opt`` of an SGRAF checkpoint; anything else is a named CheckpointError."""
    if not isinstance(ckpt, Mapping) or "model" not in ckpt or "opt" not in ckpt:
        keys = sorted(ckpt) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(
            f"{source} is not an SGRAF checkpoint: their train.py saves a dict with 'epoch', 'model', 'best_rsum', "
            f"'opt' and 'Eiters'; this holds {keys}."
        )
    states, opt = ckpt["model"], ckpt["opt"]
    if not isinstance(states, (list, tuple)) or not all(isinstance(s, Mapping) for s in states):
        raise CheckpointError(f"{source}: 'model' must be a list of state dicts [img_enc, txt_enc, sim_enc].")
    if len(states) == 2:
        raise CheckpointError(
            f"{source} looks like a SCAN checkpoint (two state dicts, img_enc and txt_enc, and no similarity "
            "encoder); convert it with `mmzoo convert scan`."
        )
    if len(states) != 3:
        raise CheckpointError(
            f"{source}: an SGRAF checkpoint holds 3 state dicts (img_enc, txt_enc, sim_enc); this one holds {len(states)}."
        )
    missing = [name for name in ARCH_OPTIONS if _option(opt, name) is None]
    if missing:
        raise CheckpointError(
            f"{source}: its options lack {', '.join(missing)}, which SGRAF's opts.py always saves; "
            "this is not an SGRAF (python3.6 branch) checkpoint."
        )
    return [dict(s) for s in states], opt


def architecture(opt: Any, states: list[dict[str, Tensor]], source: str) -> dict[str, Any]:
    """The mmzoo model config the checkpoint's options (and its tensor shapes where opts are silent) describe."""
    module = str(_option(opt, "module_name"))
    if module not in ("SGR", "SAF"):
        raise CheckpointError(f"{source}: module_name is {module!r}; SGRAF checkpoints are SGR or SAF.")
    slots = states[2].get(SLOTS_KEY)
    if not isinstance(slots, Tensor) or slots.dim() != 1:
        raise CheckpointError(f"{source}: the similarity encoder lacks {SLOTS_KEY}, the region BatchNorm of VisualSA.")
    config = model_config(module.lower())
    config["embed_dim"] = int(_option(opt, "embed_size"))
    config["visual"].update(in_dim=int(_option(opt, "img_dim")), normalize=not bool(_option(opt, "no_imgnorm", False)))
    config["text"].update(
        word_dim=int(_option(opt, "word_dim")),
        layers=int(_option(opt, "num_layers")),
        bidirectional=bool(_option(opt, "bi_gru")),
        normalize=not bool(_option(opt, "no_txtnorm", False)),
    )
    config["fusion"].update(sim_dim=int(_option(opt, "sim_dim")), regions=int(slots.shape[0]))
    if module == "SGR":
        config["fusion"]["steps"] = int(_option(opt, "sgr_step", 3))
    config["loss"].update(
        margin=float(_option(opt, "margin", 0.2)), hardest_negative=bool(_option(opt, "max_violation", True))
    )
    return config


def check_vocabulary(vocab: Vocabulary, opt: Any, states: list[dict[str, Tensor]], source: str, vocab_source: str):
    """The vocabulary must have one word per embedding row (and agree with opt.vocab_size when saved)."""
    embed = states[1].get("embed.weight")
    if not isinstance(embed, Tensor) or embed.dim() != 2:
        raise CheckpointError(f"{source}: the text encoder lacks embed.weight, the word embedding.")
    rows = embed.shape[0]
    saved = _option(opt, "vocab_size")
    data_name = _option(opt, "data_name", "?")
    if len(vocab) != rows or (saved is not None and int(saved) != rows):
        raise CheckpointError(
            f"The vocabulary {vocab_source} has {len(vocab)} words but the checkpoint's embedding has {rows} rows "
            f"(opt.vocab_size = {saved}); it was trained on {data_name}: pass their vocab/{data_name}_vocab.json."
        )


def map_tensors(states: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """img_enc -> visual., txt_enc -> text., sim_enc -> fusion. (the attribute names are theirs)."""
    return {
        f"{section}.{key}": value
        for section, state in zip(SECTIONS, states, strict=True)
        for key, value in state.items()
    }


def fill_batch_counters(mapped: dict[str, Tensor], expected: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Checkpoints from PyTorch < 0.4.1 have no BatchNorm ``num_batches_tracked``; it never changes a score."""
    out = dict(mapped)
    for key, value in expected.items():
        if key.endswith(".num_batches_tracked") and key not in out:
            out[key] = torch.zeros_like(value)
    return out
