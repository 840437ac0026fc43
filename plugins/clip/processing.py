"""Raw inputs to what the towers take: images to RGB as the weights expect, captions to token ids.

The image processor and the tokenizer are the checkpoint's own (``AutoImageProcessor`` / ``AutoTokenizer``
``.from_pretrained(folder)``, never built from ``vocab_file=...``: ``CLIPTokenizer(vocab_file=..., merges_file=...)``
and ``BertTokenizer(vocab_file=...)`` silently map every word to the unknown token). What this module adds:

* :func:`to_rgb`: a PIL image in the orientation its EXIF tag says, 16-bit and float images scaled to 8 bits
  (``Image.convert("RGB")`` clips a 16-bit image to white), transparency composited on white as transformers'
  ``convert_to_rgb`` does, CMYK / grey / palette converted; so every mode reaches the processor as the RGB image
  a person sees;
* :func:`tokenize`: the family's text rules (SigLIP: lower-cased, padded to the maximum length, 64) and a warning,
  never an error or a dropped caption, for captions longer than the tower reads;
* :func:`preprocess_naflex`: SigLIP 2 NaFlex's patch sequences (``pixel_values``, ``pixel_attention_mask``,
  ``spatial_shapes``) packed into one 4-D tensor (:func:`pack_naflex`), so they travel where pixels travel
  (``encode_images``, a DataLoader's collation, ``.to(device)``) and are never mistaken for cached regions;
* :func:`make_tokenizer`: a tokenizer made from nothing for randomly initialised towers (a byte-level BPE
  vocabulary for CLIP, a small trained sentencepiece model for SigLIP, a Gemma-style character vocabulary for
  SigLIP 2 NaFlex), written to a folder and loaded back with ``from_pretrained``, so it saves and reloads like
  any other.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmzoo.errors import InputError, MMZooWarning
from mmzoo.plugin import TokenBatch
from mmzoo_plugins.common.images import check_pixels

#: families whose text was lower-cased and padded to the maximum length in training (big_vision; not doing so
#: cost ~4 R@1 points: big_vision#166).
PAD_TO_MAX = ("siglip", "siglip2")
#: SigLIP's text length (big_vision), used when a tokenizer does not say.
SIGLIP_MAX_LENGTH = 64


# -- images ---------------------------------------------------------------------------------------------------
def to_rgb(image: Any) -> Any:
    """A PIL image (or a file path) as the 8-bit RGB image a person sees: EXIF orientation applied, 16-bit and
    float images scaled, transparency on white, CMYK, grey and palette converted."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(image, str | Path):
        try:
            with Image.open(image) as opened:
                opened.load()
                return to_rgb(opened)
        except (OSError, UnidentifiedImageError) as exc:
            raise InputError(f"Cannot read image {image}: {exc}") from None
    if not isinstance(image, Image.Image):
        raise InputError(f"Expected a PIL image, a file path or a pixel tensor; got {type(image).__name__}.")
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        # 16-bit files open as I;16 or I (values up to 65535); float images as F, taken as 0..1 when they are
        top = 65535.0 if image.mode != "F" or values.max(initial=0.0) > 1.0 else 1.0
        image = Image.fromarray(np.clip(np.rint(values / top * 255.0), 0, 255).astype(np.uint8), mode="L")
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def preprocess_images(processor: Any, images: Any) -> Tensor:
    """PIL images / paths (one or a sequence) -> (N, 3, H, W) with the checkpoint's processor; a tensor is taken as
    already preprocessed."""
    if isinstance(images, Tensor):
        return check_pixels(images)
    single = isinstance(images, str | Path) or hasattr(images, "getbands")
    items: Sequence[Any] = [images] if single else images
    if not isinstance(items, Sequence) or len(items) == 0:
        raise InputError("Expected PIL images, file paths or a (N, 3, H, W) tensor; got an empty or unknown input.")
    rgb = [to_rgb(item) for item in items]
    return processor(images=rgb, return_tensors="pt")["pixel_values"].float()


# -- SigLIP 2 NaFlex: patch sequences as one tensor -----------------------------------------------------------
def pack_naflex(pixel_values: Tensor, spatial_shapes: Tensor) -> Tensor:
    """The image processor's patches (N, P, p*p*3) and patch grids (N, 2) -> one (N, 1 + P, p*p, 3) tensor.

    Row 0 of each image holds its grid (patch rows, patch columns) in its first two values, zeros elsewhere; rows
    1.. are the processor's patches, the real ``rows * columns`` first and the padding after, as
    ``Siglip2ImageProcessor`` lays them out, so the padding mask follows from the grid (:func:`unpack_naflex`).
    Four dimensions, because ``encode_images`` reads a 3-D tensor as cached (N, k, D) regions."""
    n, patches, width = pixel_values.shape
    header = pixel_values.new_zeros(n, 1, width)
    header[:, 0, :2] = spatial_shapes.to(header.dtype)
    return torch.cat([header, pixel_values], dim=1).reshape(n, 1 + patches, width // 3, 3)


def unpack_naflex(packed: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A packed batch -> what ``Siglip2VisionModel`` takes: ``pixel_values`` (N, P, p*p*3), ``pixel_attention_mask``
    (N, P) bool (True for the real patches) and ``spatial_shapes`` (N, 2) long."""
    n, rows = packed.shape[:2]
    flat = packed.reshape(n, rows, -1)
    shapes = flat[:, 0, :2].float().round().long()
    mask = torch.arange(rows - 1, device=packed.device)[None, :] < shapes.prod(dim=-1)[:, None]
    return flat[:, 1:], mask, shapes


def check_naflex(packed: Tensor, patch_size: int) -> Tensor:
    """A packed NaFlex batch (:func:`pack_naflex`): (N, 1 + P, patch_size**2, 3), float32 (or 64), finite, each
    image's patch grid a whole number of patches that fits in P."""
    expected = f"(N, 1 + max_num_patches, {patch_size * patch_size}, 3)"
    if packed.dim() != 4 or packed.shape[0] == 0 or packed.shape[2:] != (patch_size * patch_size, 3):
        raise InputError(
            f"This SigLIP 2 NaFlex tower takes images (PIL or paths) or the packed patches its own preprocess returns, "
            f"{expected}; got a tensor of shape {tuple(packed.shape)}. Square (N, 3, H, W) pixels belong to the "
            "fixed-resolution towers."
        )
    if packed.shape[1] < 2:
        raise InputError(f"A packed NaFlex batch needs its grid row and at least one patch; got {tuple(packed.shape)}.")
    if packed.dtype not in (torch.float32, torch.float64):
        raise InputError(
            f"Packed NaFlex patches must be float32 (the tower casts them to its own dtype); got {packed.dtype}: "
            "half precision cannot hold every patch grid exactly (bfloat16 stops at 256)."
        )
    if not bool(torch.isfinite(packed).all()):
        raise InputError("Packed NaFlex patches must be finite floating-point values (already normalised).")
    header = packed.reshape(packed.shape[0], packed.shape[1], -1)[:, 0]
    shapes = header[:, :2]
    whole = bool((shapes == shapes.round()).all()) and bool((shapes >= 1).all()) and not bool(header[:, 2:].any())
    if not whole or bool((shapes.prod(dim=-1) > packed.shape[1] - 1).any()):
        raise InputError(
            "Row 0 of each packed NaFlex image must hold its patch grid (rows, columns >= 1, rows * columns <= "
            f"{packed.shape[1] - 1} patches) and zeros; got grids {shapes[:4].tolist()}. Make the tensor with the "
            "tower's own preprocess."
        )
    return packed


def refuse_raw_naflex_pixels(features: Tensor) -> None:
    """A 3-D tensor reaches a NaFlex tower as cached regions (N, 1 + P, d). The processor's own ``pixel_values``
    (N, P, 16*16*3) look the same to a shape check (768 = SigLIP 2 B's width) but lie in [-1, 1] everywhere, which
    cached tower outputs never do (layer-normed tokens, an unnormalised pooled row): refused rather than misread."""
    if features.numel() and float(features.detach().abs().amax()) <= 1.0:
        raise InputError(
            f"This (N, k, D) = {tuple(features.shape)} tensor lies in [-1, 1]: it looks like Siglip2ImageProcessor's "
            "raw pixel_values, not cached tower outputs. Pass the images (PIL or paths), or pack the processor's "
            "output with mmzoo_plugins.clip.processing.pack_naflex(pixel_values, spatial_shapes)."
        )


def preprocess_naflex(processor: Any, images: Any, max_num_patches: int) -> Tensor:
    """PIL images / paths (one or a sequence) -> packed NaFlex patches (:func:`pack_naflex`) with the checkpoint's
    ``Siglip2ImageProcessor``: each image resized, aspect ratio kept, to at most ``max_num_patches`` patches; a
    tensor is taken as already packed."""
    if isinstance(images, Tensor):
        return check_naflex(images, int(processor.patch_size))
    single = isinstance(images, str | Path) or hasattr(images, "getbands")
    items: Sequence[Any] = [images] if single else images
    if not isinstance(items, Sequence) or len(items) == 0:
        raise InputError("Expected PIL images, file paths or packed NaFlex patches; got an empty or unknown input.")
    rgb = [to_rgb(item) for item in items]
    batch = processor(images=rgb, max_num_patches=max_num_patches, return_tensors="pt")
    return pack_naflex(batch["pixel_values"].float(), batch["spatial_shapes"])


# -- captions -------------------------------------------------------------------------------------------------
def max_length(tokenizer: Any, positions: int) -> int:
    """The most tokens the tower reads: its position embeddings, or less when the tokenizer says so."""
    stated = getattr(tokenizer, "model_max_length", None)
    return min(positions, int(stated)) if isinstance(stated, int) and stated > 0 else positions


def tokenize(tokenizer: Any, family: str, captions: Sequence[str], length: int) -> TokenBatch:
    """Captions -> ids and the mask of real tokens, as the weights were trained: truncated to ``length`` with an
    ``MMZooWarning`` (never dropped); SigLIP lower-cased and padded to ``length``; CLIP padded to the longest."""
    texts = [c.lower() for c in captions] if family in PAD_TO_MAX else list(captions)
    full = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    too_long = [i for i, ids in enumerate(full) if len(ids) > length]
    if too_long:
        warnings.warn(
            f"{len(too_long)} caption(s) (e.g. #{too_long[0]}, {len(full[too_long[0]])} tokens) are longer than the "
            f"{length} tokens the text tower reads: they are truncated, as the authors' code does.",
            MMZooWarning,
            stacklevel=3,
        )
    padding = "max_length" if family in PAD_TO_MAX else "longest"
    encoded = tokenizer(texts, padding=padding, truncation=True, max_length=length, return_tensors="pt")
    ids = encoded["input_ids"]
    mask = encoded["attention_mask"].bool() if "attention_mask" in encoded else ids != tokenizer.pad_token_id
    return TokenBatch(ids.long(), mask)


# -- tokenizers made from nothing (randomly initialised towers) -----------------------------------------------
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, which CLIP's BPE vocabulary is written in."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def write_clip_vocabulary(folder: Path) -> None:
    """A byte-level CLIP BPE vocabulary without merges (every byte, alone and word-final, plus the two specials)."""
    symbols = list(_bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({f"{s}</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")


#: sentences a made-up sentencepiece model is trained on (shapes, colours, relations: the rendered shapes data).
CORPUS = [
    "a red circle left of a blue square",
    "a small green triangle above a big yellow circle",
    "two purple squares below an orange triangle",
    "a large white star right of a small black heart",
    "the cyan diamond is next to the pink hexagon",
    "a man riding a horse on the beach at sunset",
    "people walking down a city street with shops",
    "a dog catching a frisbee in a park",
]


def write_sentencepiece(
    folder: Path,
    vocab_size: int = 64,
    name: str = "spiece.model",
    corpus: Sequence[str] | None = None,
    model_type: str = "unigram",
) -> Path:
    """A small sentencepiece model (``unigram``, or ``word``: one piece per word of the corpus) trained on ``corpus``
    (default :data:`CORPUS`; deterministic), as ``folder/name``. ``vocab_size`` is an upper bound."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(corpus or CORPUS) * 4),
        model_writer=model,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        model_type=model_type,
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(model.getvalue())
    return path


def make_tokenizer(family: str, folder: Path, corpus: Sequence[str] | None = None) -> Any:
    """A tokenizer for a randomly initialised tower of ``family``, written to ``folder`` and read back (SigLIP's
    sentencepiece model is trained on ``corpus``, default :data:`CORPUS`)."""
    from transformers import AutoTokenizer, CLIPTokenizer, SiglipTokenizer

    if family == "siglip2":
        return make_gemma_tokenizer(folder)
    if family == "clip":
        write_clip_vocabulary(folder)
        CLIPTokenizer.from_pretrained(str(folder), trust_remote_code=False).save_pretrained(str(folder))
    else:
        # a corpus of the data's own captions: one piece per word, so captions are as short as their words
        write_sentencepiece(folder, vocab_size=4000, corpus=corpus, model_type="word" if corpus else "unigram")
        SiglipTokenizer.from_pretrained(
            str(folder), model_max_length=SIGLIP_MAX_LENGTH, trust_remote_code=False
        ).save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)


def make_gemma_tokenizer(folder: Path) -> Any:
    """SigLIP 2's tokenizer layout for a random tower: a Gemma-style ``tokenizer.json`` (byte-fallback BPE over single
    characters, no merges) saved as the official conversion saves Gemma's (no ``<bos>``, ``<eos>`` appended, padded
    on the right, no attention mask), read back with ``AutoTokenizer`` (transformers' ``Siglip2Tokenizer``)."""
    from transformers import AutoTokenizer, GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    pieces = specials + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581", *"abcdefghijklmnopqrstuvwxyz0123456789"]
    GemmaTokenizer(
        vocab={piece: i for i, piece in enumerate(pieces)},
        merges=[],
        add_bos_token=False,
        add_eos_token=True,
        padding_side="right",
        model_input_names=["input_ids"],
        model_max_length=SIGLIP_MAX_LENGTH,
    ).save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)


__all__ = [
    "CORPUS",
    "PAD_TO_MAX",
    "check_naflex",
    "check_pixels",
    "make_gemma_tokenizer",
    "make_tokenizer",
    "max_length",
    "pack_naflex",
    "preprocess_images",
    "preprocess_naflex",
    "refuse_raw_naflex_pixels",
    "to_rgb",
    "tokenize",
    "unpack_naflex",
    "write_clip_vocabulary",
    "write_sentencepiece",
]
