"""A tiny BLIP retrieval folder written by transformers' own ``save_pretrained``, in the official file layout.

``config.json`` + ``model.safetensors`` (``BlipForImageTextRetrieval.save_pretrained``), the tokenizer files
(``BertTokenizer.save_pretrained``) beside the WordPiece ``vocab.txt`` written here, and ``preprocessor_config.json``
(``BlipImageProcessor.save_pretrained``): the file names of the official repositories. As in
the official weights, the word embeddings have two rows more than the vocabulary: BLIP's ``[DEC]`` (the text
config's ``bos_token_id``) and ``[ENC]`` (the last row). The projection is 256-d, as the recipes' ``embed_dim``.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = [
    "a",
    "an",
    "the",
    "of",
    "on",
    "in",
    "with",
    "and",
    "is",
    "are",
    "two",
    "one",
    "man",
    "woman",
    "dog",
    "cat",
    "cats",
    "dogs",
    "red",
    "blue",
    "green",
    "small",
    "big",
    "sitting",
    "standing",
    "running",
    "ball",
    "grass",
    "table",
    "plate",
    "food",
    "pizza",
    "street",
    "car",
    "bus",
    "sky",
    "water",
    "beach",
    "picture",
    "photo",
    "near",
    "next",
    "to",
    "white",
    "black",
    "brown",
    "young",
    "old",
    "person",
    "people",
    "playing",
    "holding",
    "riding",
    "field",
    "tree",
    "building",
]
VOCAB = ["[PAD]", *[f"[unused{i}]" for i in range(3)], "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ing"]
CAPTIONS = [
    "a man riding a red bus",
    "two cats sitting on a table",
    "a dog playing with a ball on the grass",
    "a woman holding a plate of food near a white building",
    "people standing next to a blue car",
]
DEC_ID, ENC_ID = len(VOCAB), len(VOCAB) + 1


def tiny_config():
    from transformers import BlipConfig

    text = {
        "vocab_size": len(VOCAB) + 2,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 48,
        "max_position_embeddings": 64,
        "bos_token_id": DEC_ID,
        "pad_token_id": 0,
        "sep_token_id": VOCAB.index("[SEP]"),
    }
    vision = {
        "hidden_size": 24,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 48,
        "image_size": 32,
        "patch_size": 8,
    }
    return BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=256)


def write_vocab(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return folder / "vocab.txt"


def write_blip_folder(folder: Path, seed: int = 0) -> Path:
    """The tiny folder, every file written by transformers itself."""
    from transformers import BertTokenizer, BlipForImageTextRetrieval, BlipImageProcessor

    write_vocab(folder)
    tokenizer = BertTokenizer.from_pretrained(str(folder))
    torch.manual_seed(seed)
    model = BlipForImageTextRetrieval(tiny_config())
    with torch.no_grad():  # BLIP's init leaves the heads near zero: spread them so scores differ visibly
        for name, param in model.named_parameters():
            if name.startswith(("itm_head", "vision_proj", "text_proj")):
                param.normal_(0.0, 0.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def photos() -> list:
    """Three real photos shipped with scikit-image, as PIL images of different sizes."""
    from PIL import Image
    from skimage import data

    return [Image.fromarray(data.astronaut()), Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())]


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
