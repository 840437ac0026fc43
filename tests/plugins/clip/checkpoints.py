"""Tiny checkpoints in the official layout, written by transformers' own ``save_pretrained``.

``config.json`` and ``model.safetensors`` come from ``CLIPModel`` / ``SiglipModel.save_pretrained`` (tiny random
configs); the tokenizer files are written by hand as the official repositories hold them (CLIP: a byte-level BPE
``vocab.json`` + ``merges.txt``; SigLIP: a sentencepiece ``spiece.model`` trained here on a few sentences;
SigLIP 2 and its NaFlex variant: a Gemma-style ``tokenizer.json``), then the processor (image processor + tokenizer) is
saved beside them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmzoo_plugins.clip.processing import write_clip_vocabulary, write_sentencepiece
from mmzoo_plugins.clip.towers import tiny_architecture

CAPTIONS = [
    "A red circle left of a blue square.",
    "two purple squares below an orange triangle",
    "a dog catching a frisbee in a park",
]


def images(n: int = 3) -> list[Image.Image]:
    """Photos of different sizes and aspect ratios (random pixels, fixed seed)."""
    rng = np.random.default_rng(0)
    sizes = [(40, 50), (64, 37), (33, 33), (80, 45)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes[:n]]


def write_clip(folder: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    torch.manual_seed(0)
    data = tiny_architecture("clip")
    config = CLIPConfig(
        text_config=data["text_config"], vision_config=data["vision_config"], projection_dim=data["projection_dim"]
    )
    CLIPModel(config).eval().save_pretrained(str(folder))
    write_clip_vocabulary(folder)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    size = config.vision_config.image_size
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    processor.save_pretrained(str(folder))  # preprocessor_config.json, as the official repositories hold it
    tokenizer.save_pretrained(str(folder))
    return folder


def write_siglip(folder: Path) -> Path:
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipTokenizer

    torch.manual_seed(0)
    data = tiny_architecture("siglip")
    data["text_config"]["vocab_size"] = 64
    config = SiglipConfig(text_config=data["text_config"], vision_config=data["vision_config"])
    model = SiglipModel(config).eval()
    with torch.no_grad():  # the official values are far from the random init: log(10) and -10
        model.logit_scale.fill_(2.3)
        model.logit_bias.fill_(-1.5)
    model.save_pretrained(str(folder))
    write_sentencepiece(folder)
    tokenizer = SiglipTokenizer.from_pretrained(str(folder), model_max_length=64)
    size = config.vision_config.image_size
    processor = SiglipImageProcessor(size={"height": size, "width": size})
    processor.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def hub_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def gemma_vocab() -> dict[str, int]:
    """A tiny Gemma vocabulary: its special tokens, the 256 byte-fallback pieces, the word start and a-z."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    pieces = specials + [f"<0x{b:02X}>" for b in range(256)] + ["▁", *"abcdefghijklmnopqrstuvwxyz"]
    return {piece: i for i, piece in enumerate(pieces)}


def write_siglip2(folder: Path) -> Path:
    """SigLIP 2's fixed-resolution layout: SigLIP's architecture (model_type 'siglip') with a Gemma tokenizer
    (``tokenizer.json``: byte-fallback BPE, here with single characters and no merges)."""
    from transformers import GemmaTokenizer, SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.manual_seed(1)
    vocab = gemma_vocab()
    data = tiny_architecture("siglip")
    data["text_config"]["vocab_size"] = len(vocab)
    config = SiglipConfig(text_config=data["text_config"], vision_config=data["vision_config"])
    model = SiglipModel(config).eval()
    with torch.no_grad():
        model.logit_scale.fill_(2.3)
        model.logit_bias.fill_(-1.5)
    model.save_pretrained(str(folder))
    GemmaTokenizer(vocab=vocab, merges=[]).save_pretrained(str(folder))
    size = config.vision_config.image_size
    SiglipImageProcessor(size={"height": size, "width": size}).save_pretrained(str(folder))
    return folder


def write_siglip2_naflex(folder: Path, patch_size: int = 16, max_num_patches: int = 256) -> Path:
    """SigLIP 2 NaFlex's layout as transformers' conversion script writes it (``convert_siglip2_to_hf.py``):
    ``Siglip2Model`` (model_type 'siglip2'), a ``Siglip2ImageProcessor`` with the checkpoint's patch size and patch
    budget (Google's: 16 and 256), and Gemma's tokenizer saved without ``<bos>``, with ``<eos>`` appended, padded on
    the right and returning no attention mask (here a byte-fallback BPE over single characters, no merges)."""
    from transformers import GemmaTokenizer, Siglip2Config, Siglip2ImageProcessor, Siglip2Model

    torch.manual_seed(2)
    vocab = gemma_vocab()
    data = tiny_architecture("siglip2")
    data["text_config"]["vocab_size"] = len(vocab)
    data["vision_config"].update(patch_size=patch_size, num_patches=max_num_patches)
    config = Siglip2Config(text_config=data["text_config"], vision_config=data["vision_config"])
    model = Siglip2Model(config).eval()
    with torch.no_grad():
        model.logit_scale.fill_(2.3)
        model.logit_bias.fill_(-1.5)
    model.save_pretrained(str(folder))
    GemmaTokenizer(
        vocab=vocab,
        merges=[],
        add_bos_token=False,
        add_eos_token=True,
        padding_side="right",
        model_input_names=["input_ids"],
    ).save_pretrained(str(folder))
    Siglip2ImageProcessor(patch_size=patch_size, max_num_patches=max_num_patches).save_pretrained(str(folder))
    return folder
