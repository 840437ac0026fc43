"""Captions and splits for an import: a Karpathy split file, or per-split caption files.

A Karpathy file (``dataset_coco.json``, ``dataset_flickr30k.json``) lists every image with its split
(``train``, ``restval``, ``val``, ``test``) and sentences; COCO entries carry ``cocoid`` (the id
bottom-up-attention's TSV rows use), Flickr30K entries only a file name (``1000092795.jpg``, whose stem
the TSV rows use). ``val`` becomes our ``dev``; ``restval`` (30,504 COCO images) joins ``train`` as
VSE++, SCAN and VSE-infinity train on it (113,287 images), or is left out (``restval="skip"``, 82,783).
Each image keeps its first ``captions_per_image`` ``raw`` sentences (a few COCO images have 6 or 7).

Per-split caption files are SCAN's precomp text files: ``{split}_caps.txt`` (one caption per line,
``captions_per_image`` lines per image) and ``{split}_ids.txt`` (the image ids, one per image, or one per
caption as in ``f30k_precomp``, where each id repeats for its captions).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mmzoo.data.caption_table import read_caption_rows
from mmzoo.data.layout import PRECOMP
from mmzoo.data.precomputed import read_captions
from mmzoo.errors import DataError

#: Karpathy split name -> ours.
KARPATHY_SPLITS = {"train": "train", "val": "dev", "test": "test"}
SPLIT_ORDER = ("train", "dev", "test", "testall")
Match = Literal["auto", "cocoid", "filename", "imgid"]


@dataclass(frozen=True)
class CaptionedImage:
    """An image the captions describe: its match key, captions and a label for messages."""

    key: str
    captions: tuple[str, ...]
    label: str


@dataclass
class CaptionTable:
    """The splits to import (name -> images in output order) and every key the caption source knows.

    Attributes:
        splits: images per split, in the caption source's order.
        known: every image key in the caption source, also those in splits left out.
        match: how feature ids are matched to ``key`` (``cocoid``, ``filename``, ``imgid``).
        source: the caption file or folder, for the manifest.
        dataset: ``coco``, ``flickr30k``, ... (the Karpathy file's ``dataset`` field) or None.
        captions_per_image: captions kept per image.
        settings: how the table was made (restval handling, split names), for the manifest.
    """

    splits: dict[str, list[CaptionedImage]]
    known: set[str]
    match: str
    source: Path
    dataset: str | None
    captions_per_image: int
    settings: dict[str, object] = field(default_factory=dict)


def clean_caption(text: str) -> str:
    """One line of caption text: inner newlines and tabs become spaces, ends stripped."""
    return re.sub(r"[\r\n\t]+", " ", text).strip()


def read_karpathy_captions(
    path: str | Path,
    *,
    restval: Literal["train", "skip"] = "train",
    captions_per_image: int = 5,
    match: Match = "auto",
    splits: tuple[str, ...] | None = None,
) -> CaptionTable:
    """The captions and splits of a Karpathy split file.

    Args:
        path: ``dataset_coco.json`` / ``dataset_flickr30k.json`` / ``dataset_flickr8k.json``.
        restval: ``train`` folds ``restval`` into train; ``skip`` leaves those images out.
        captions_per_image: captions kept per image; an image with fewer is an error.
        match: the key feature ids are matched on: ``cocoid``, ``filename`` (the stem), ``imgid`` (the
            file's own running index); ``auto`` takes ``cocoid`` when the entries have it, else ``filename``.
        splits: our split names to write (``train``, ``dev``, ``test``); None writes all three.

    Examples:
        >>> table = read_karpathy_captions("dataset_coco.json")  # doctest: +SKIP
        >>> len(table.splits["train"]), table.match  # doctest: +SKIP
        (113287, 'cocoid')
    """
    path = Path(path)
    if restval not in ("train", "skip"):
        raise DataError(f"restval must be 'train' or 'skip'; got {restval!r}.")
    if captions_per_image < 1:
        raise DataError(f"captions_per_image must be >= 1; got {captions_per_image}.")
    if splits is not None:  # Karpathy's name for dev is accepted too
        splits = tuple("dev" if split == "val" else split for split in splits)
    wanted = _wanted_splits(splits, ("train", "dev", "test"))
    try:
        document = json.loads(path.read_text(encoding="utf-8"), object_hook=_without_tokens)
        images = document["images"]
        if not isinstance(images, list):
            raise TypeError("'images' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a readable Karpathy split file (need an 'images' list): {exc}") from None
    if match == "auto":
        match = "cocoid" if images and isinstance(images[0], dict) and "cocoid" in images[0] else "filename"
    table = CaptionTable({name: [] for name in wanted}, set(), match, path, document.get("dataset"), captions_per_image)
    table.settings = {"restval": restval, "karpathy_val": "dev"}
    seen: dict[str, int] = {}
    for number, entry in enumerate(images):
        key, label, split, sentences = _karpathy_entry(path, entry, match, number)
        if key in seen:
            raise DataError(f"{path}: images {seen[key]} and {number} have the same {match} {key}.")
        seen[key] = number
        table.known.add(key)
        ours = "train" if split == "restval" and restval == "train" else KARPATHY_SPLITS.get(split)
        if ours not in table.splits:
            continue
        kept = tuple(sentences[:captions_per_image])
        if len(kept) < captions_per_image or not all(kept):
            raise DataError(
                f"{path}: {label} has {sum(1 for s in sentences if s)} non-empty captions; "
                f"{captions_per_image} are needed (--captions-per-image)."
            )
        table.splits[ours].append(CaptionedImage(key, kept, label))
    found = sorted({str(e.get("split")) for e in images if isinstance(e, dict)})
    for name, items in list(table.splits.items()):
        if not items and (splits is not None or len(table.splits) == 1):
            raise DataError(f"{path} has no images for split {name!r}; its splits are {', '.join(found)}.")
        if not items:  # a default split the file does not have
            del table.splits[name]
    if not table.splits:
        raise DataError(f"{path} has no train, val or test images; its splits are {', '.join(found)}.")
    return table


def _karpathy_entry(path: Path, entry: dict, match: str, number: int) -> tuple[str, str, str, list[str]]:
    """(key, label, Karpathy split, cleaned sentences) of one image entry."""
    try:
        key, label = _karpathy_key(entry, match, number)
        return key, label, entry["split"], [clean_caption(s["raw"]) for s in entry["sentences"]]
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise DataError(f"{path}: image {number} lacks 'split', 'sentences[].raw' or its {match} ({exc}).") from None


def _without_tokens(item: dict) -> dict:
    """Drop a sentence's ``tokens`` as soon as it is parsed: half the memory of reading dataset_coco.json."""
    item.pop("tokens", None)
    return item


def _karpathy_key(entry: dict, match: str, number: int) -> tuple[str, str]:
    filename = entry["filename"]
    if match == "cocoid":
        return str(int(entry["cocoid"])), f"cocoid {int(entry['cocoid'])} ({filename})"
    if match == "imgid":
        imgid = int(entry.get("imgid", number))
        return str(imgid), f"imgid {imgid} ({filename})"
    if match == "filename":
        return Path(filename).stem, filename
    raise DataError(f"match must be auto, cocoid, filename or imgid; got {match!r}.")


def _wanted_splits(splits: tuple[str, ...] | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if splits is None:
        return default
    if not splits:
        raise DataError("No splits to import.")
    bad = [s for s in splits if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", s)]
    if bad:
        raise DataError(f"Split names must be plain file-name words; got {bad}.")
    return tuple(dict.fromkeys(splits))


def read_caption_files(
    folder: str | Path,
    *,
    captions_per_image: int = 5,
    match: Match = "auto",
    splits: tuple[str, ...] | None = None,
) -> CaptionTable:
    """Captions from ``{split}_caps.txt`` + ``{split}_ids.txt`` in ``folder`` (SCAN's precomp text files).

    Args:
        folder: holds the two files per split.
        captions_per_image: consecutive caption lines per image.
        match: ``auto`` / ``cocoid`` compare ids as numbers (``000123`` = ``123``); ``filename`` and
            ``imgid`` compare the id text as written (a file stem).
        splits: the splits to read; None reads every split with both files (train, dev, test, testall, ...).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"Caption folder {folder} not found.")
    if splits is None:
        found = sorted(p.name[: -len("_caps.txt")] for p in folder.glob("*_caps.txt"))
        order = {name: i for i, name in enumerate(SPLIT_ORDER)}
        splits = tuple(sorted(found, key=lambda s: (order.get(s, len(order)), s)))
        if not splits:
            raise DataError(f"{folder} holds no {{split}}_caps.txt files.")
    wanted = _wanted_splits(splits, ())
    match = "cocoid" if match == "auto" else match
    table = CaptionTable({}, set(), match, folder, None, captions_per_image)
    for split in wanted:
        caps_path, ids_path = PRECOMP.path(folder, split, "caps"), PRECOMP.path(folder, split, "ids")
        if not ids_path.is_file():
            raise DataError(f"{ids_path} not found: per-split captions need {split}_caps.txt and {split}_ids.txt.")
        captions = [clean_caption(c) for c in read_captions(caps_path)]
        ids = [line.strip() for line in ids_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(captions) % captions_per_image:
            raise DataError(f"{caps_path} holds {len(captions)} captions, not a multiple of {captions_per_image}.")
        images = len(captions) // captions_per_image
        ids = _one_id_per_image(ids, images, captions_per_image, ids_path, caps_path)
        items = []
        for row, raw in enumerate(ids):
            key = normalise_key(raw, match)
            caps = tuple(captions[row * captions_per_image : (row + 1) * captions_per_image])
            items.append(CaptionedImage(key, caps, f"id {raw} ({ids_path.name}, line {row + 1})"))
        table.splits[split] = items
        table.known.update(item.key for item in items)
    return table


def read_caption_table(
    path: str | Path, *, captions_per_image: int | None = None, splits: tuple[str, ...] | None = None
) -> CaptionTable:
    """Captions from a CSV / TSV / JSON Lines table of (image, caption[, split]) rows (:mod:`mmzoo.data.caption_table`).

    Features are matched on the image's file stem (``photos/beach.jpg`` -> ``beach``), as ``npy-folder``
    sources name their files. ``val`` is written as ``dev``; other split names are kept. Each image keeps its
    first ``captions_per_image`` captions (default: the fewest any image of the written splits has).
    """
    rows = read_caption_rows(path)
    available = list(dict.fromkeys("dev" if s == "val" else s for s in rows.splits()))
    wanted = _wanted_splits(tuple("dev" if s == "val" else s for s in splits) if splits else None, tuple(available))
    missing = [s for s in wanted if s not in available]
    if missing:
        raise DataError(f"{path} has no split {', '.join(map(repr, missing))}; its splits are {', '.join(available)}.")
    chosen = [image for image in rows.images if ("dev" if image.split == "val" else image.split) in wanted]
    fewest = min(len(image.captions) for image in chosen)
    per_image = fewest if captions_per_image is None else captions_per_image
    short = [image for image in chosen if len(image.captions) < per_image]
    if per_image < 1 or short:
        named = ", ".join(f"{image.image} ({len(image.captions)})" for image in short[:5])
        raise DataError(
            f"{path}: {len(short)} images have fewer than {per_image} captions ({named}); "
            f"lower --captions-per-image (at most {fewest} here)."
        )
    table = CaptionTable({name: [] for name in wanted}, set(), "filename", Path(path), None, per_image)
    table.settings = {"caption_table": True, "karpathy_val": "dev"}
    seen: dict[str, str] = {}
    for image in rows.images:
        key = Path(image.image).stem
        if key in seen and seen[key] != image.image:
            raise DataError(f"{path}: {seen[key]} and {image.image} have the same file stem {key!r}; rename one.")
        seen[key] = image.image
        table.known.add(key)
        split = "dev" if image.split == "val" else image.split
        if split in table.splits:
            table.splits[split].append(CaptionedImage(key, tuple(image.captions[:per_image]), image.image))
    return table


def _one_id_per_image(ids: list[str], images: int, cpi: int, ids_path: Path, caps_path: Path) -> list[str]:
    if len(ids) == images:
        return ids
    if len(ids) == images * cpi:  # one id per caption: each image's id repeats cpi times
        grouped = [ids[i * cpi : (i + 1) * cpi] for i in range(images)]
        for row, group in enumerate(grouped):
            if len(set(group)) != 1:
                raise DataError(
                    f"{ids_path}, lines {row * cpi + 1}-{(row + 1) * cpi}: one image's captions name ids {group}."
                )
        return [group[0] for group in grouped]
    raise DataError(
        f"{ids_path} holds {len(ids)} ids but {caps_path} holds {images} images ({images * cpi} captions): "
        "expected one id per image or one per caption."
    )


def normalise_key(raw: str, match: str) -> str:
    """A feature id in the form the caption side uses for ``match``.

    ``cocoid`` takes the trailing number of the id (``COCO_val2014_000000391895`` and ``391895.npy`` both
    give ``391895``); ``imgid`` the number itself; ``filename`` the stem (``1000092795.jpg`` ->
    ``1000092795``).
    """
    text = raw.strip()
    stem = Path(text).stem if Path(text).suffix.lower() in (".jpg", ".jpeg", ".png", ".npy", ".npz") else text
    if match in ("cocoid", "imgid"):
        found = re.search(r"(\d+)$", stem)
        return str(int(found.group(1))) if found else stem
    return stem


__all__ = [
    "KARPATHY_SPLITS",
    "CaptionTable",
    "CaptionedImage",
    "clean_caption",
    "normalise_key",
    "read_caption_files",
    "read_caption_table",
    "read_karpathy_captions",
]
