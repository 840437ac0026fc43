"""Raw-image datasets in the Karpathy split format that Flickr30K and COCO users already have.

A split file (``dataset_flickr30k.json``, ``dataset_coco.json``) lists images::

    {"images": [{"filename": "1000092795.jpg", "filepath": "val2014" (COCO only),
                 "split": "train" | "val" | "test" | "restval", "sentences": [{"raw": "Two young guys ..."}]}]}

and the image files lie under an image root (``ROOT/filename`` or ``ROOT/filepath/filename``).
:class:`KarpathyImages` yields one item per caption, like the precomputed-feature datasets:
``(image, caption, caption index, image index)`` where ``image`` is the PIL image or, with a
``transform`` (e.g. ``model.visual.transform()``), its pixels.

Examples:
    >>> ds = KarpathyImages("dataset_flickr30k.json", "flickr30k-images", "test",
    ...                     transform=model.visual.transform())  # doctest: +SKIP
    >>> pixels, caption, caption_index, image_index = ds[0]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from mmzoo._atomic import open_regular
from mmzoo._optional import require
from mmzoo.data.caption_table import is_caption_table, read_caption_rows
from mmzoo.errors import DataError, MMZooWarning

#: split names accepted besides those found in the file: ``train+restval`` is Karpathy's bigger training set.
SPLIT_ALIASES = {"train+restval": ("train", "restval")}


@dataclass(frozen=True)
class ImageRecord:
    """One image of a split file: its path and its captions."""

    path: Path
    captions: tuple[str, ...]
    split: str


def read_karpathy(json_path: str | Path, image_root: str | Path, split: str) -> list[ImageRecord]:
    """The images of ``split`` in a Karpathy split file, with paths resolved under ``image_root``."""
    json_path, image_root = Path(json_path), Path(image_root)
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
        images = document["images"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{json_path} is not a readable Karpathy split file (need an 'images' list): {exc}") from None
    wanted = SPLIT_ALIASES.get(split, (split,))
    records = []
    for i, entry in enumerate(images):
        try:
            if entry["split"] not in wanted:
                continue
            folder = image_root / entry["filepath"] if entry.get("filepath") else image_root
            captions = tuple(s["raw"].strip() for s in entry["sentences"])
            records.append(ImageRecord(folder / entry["filename"], captions, entry["split"]))
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{json_path}: image {i} lacks 'filename', 'split' or 'sentences[].raw' ({exc}).") from None
    if not records:
        found = sorted({str(e.get("split")) for e in images if isinstance(e, dict)})
        raise DataError(f"{json_path} has no images in split {split!r}; its splits are {', '.join(found)}.")
    return records


def karpathy_splits(json_path: str | Path) -> list[str]:
    """The split names a Karpathy split file uses, in first-appearance order."""
    try:
        images = json.loads(Path(json_path).read_text(encoding="utf-8"))["images"]
        return list(dict.fromkeys(str(e["split"]) for e in images))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{json_path} is not a readable Karpathy split file (need an 'images' list): {exc}") from None


def caption_file_splits(path: str | Path) -> list[str]:
    """The split names of a caption file: a Karpathy JSON or a CSV / JSON Lines table."""
    return read_caption_rows(path).splits() if is_caption_table(path) else karpathy_splits(path)


def read_records(path: str | Path, image_root: str | Path, split: str) -> list[ImageRecord]:
    """The images of ``split`` in a caption file (Karpathy JSON, or CSV / JSON Lines rows), paths under
    ``image_root``."""
    if not is_caption_table(path):
        return read_karpathy(path, image_root, split)
    table = read_caption_rows(path)
    records = [ImageRecord(Path(image_root) / r.image, tuple(r.captions), r.split) for r in table.of_split(split)]
    if not records:
        raise DataError(f"{path} has no images in split {split!r}; its splits are {', '.join(table.splits())}.")
    return records


def unreadable_reason(path: Path) -> str | None:
    """Why ``path`` cannot be read as an image, or None. Only regular files are opened: a FIFO would block the
    reader and a device could stream forever, so they are refused by their type, unopened."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if not stat.S_ISREG(mode):
        kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a device"}
        kind = next((name for test, name in kinds.items() if test(mode)), "a device or special file")
        return f"{kind}, not an image file (never opened)"
    try:
        open_rgb(path)
    except DataError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def skip_unreadable(paths: Sequence[Path], workers: int = 0, what: str = "images") -> list[int]:
    """Indices of the ``paths`` that decode as images; the others are named in one :class:`MMZooWarning`.

    Each image is decoded once here (threads: Pillow releases the GIL while decoding), so a broken file found
    halfway through a long extraction cannot abort it or shift the rows of the ones after it.
    """
    threads = max(workers, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        reasons = list(pool.map(unreadable_reason, [Path(p) for p in paths]))
    bad = [(p, r) for p, r in zip(paths, reasons, strict=True) if r is not None]
    if bad:
        listed = "; ".join(f"{p} ({r})" for p, r in bad[:10]) + ("; ..." if len(bad) > 10 else "")
        message = f"Skipped {len(bad)} of {len(paths)} {what} that cannot be read: {listed}"
        warnings.warn(message, MMZooWarning, stacklevel=2)
    return [i for i, r in enumerate(reasons) if r is None]


def open_rgb(path: Path) -> Any:
    """Read an image file as RGB, with a DataError naming the file."""
    require("PIL", extra="vision", purpose="Reading images")
    from PIL import Image, UnidentifiedImageError

    try:
        with os.fdopen(open_regular(path, follow=True), "rb") as handle, Image.open(handle) as img:
            return img.convert("RGB")
    except Image.DecompressionBombError as exc:  # PIL refuses images over 2 x MAX_IMAGE_PIXELS: a memory bomb
        raise DataError(
            f"Cannot read image {path}: {exc} It is refused as a decompression bomb (a small file that would "
            "decode to gigabytes); if it is a real photo this large, raise PIL.Image.MAX_IMAGE_PIXELS."
        ) from None
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"Cannot read image {path}: {exc}") from None


class KarpathyImages(Dataset):
    """Captions of a split with their images: ``(image or pixels, caption, caption index, image index)``.

    Args:
        json_path: the Karpathy split file, or a CSV / JSON Lines table of (image, caption[, split]) rows
            (:mod:`mmzoo.data.caption_table`).
        image_root: the folder the file's image paths are relative to.
        split: ``train``, ``val``, ``test``, ``restval`` or ``train+restval`` (any split the file uses).
        transform: applied to each PIL image (e.g. ``model.visual.transform(train=True)``); None keeps PIL.
        captions_per_image: captions kept per image (the precomputed layout uses 5); None keeps all,
            an image with fewer is a DataError.
    """

    def __init__(
        self,
        json_path: str | Path,
        image_root: str | Path,
        split: str,
        *,
        transform: Callable[[Any], Any] | None = None,
        captions_per_image: int | None = 5,
        records: Sequence[ImageRecord] | None = None,
    ) -> None:
        self.records = list(records) if records is not None else read_records(json_path, image_root, split)
        self.split = split
        self.transform = transform
        self.captions: list[str] = []
        self.image_of: list[int] = []
        #: captions of image i are captions[starts[i]:starts[i + 1]] (consecutive, in file order).
        self.starts: list[int] = [0]
        for i, record in enumerate(self.records):
            kept = record.captions if captions_per_image is None else record.captions[:captions_per_image]
            if captions_per_image is not None and len(kept) < captions_per_image:
                raise DataError(
                    f"{record.path.name} has {len(kept)} captions; {captions_per_image} are needed "
                    "(--captions-per-image sets how many each image keeps)."
                )
            self.captions.extend(kept)
            self.image_of.extend([i] * len(kept))
            self.starts.append(len(self.captions))

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> tuple[Any, str, int, int]:
        image = self.image_of[index]
        return self.load_image(image), self.captions[index], index, image

    def load_image(self, image: int) -> Any:
        """The image with index ``image`` (PIL, or transformed)."""
        pil = open_rgb(self.records[image].path)
        return self.transform(pil) if self.transform is not None else pil

    def images(self) -> ImageFolder:
        """One item per image, ``(image, image index)``: what a feature extractor iterates over."""
        return ImageFolder([r.path for r in self.records], transform=self.transform)

    def image_captions(self, image: int) -> list[str]:
        """The captions of image ``image``, in file order."""
        return self.captions[self.starts[image] : self.starts[image + 1]]


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a link loop
        return False


class ImageFolder(Dataset):
    """A list of image files (or every image in a folder): ``(image or pixels, image index)``."""

    SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

    def __init__(self, paths: Sequence[Path] | str | Path, transform: Callable[[Any], Any] | None = None) -> None:
        if isinstance(paths, str | Path):
            folder = Path(paths)
            if not folder.is_dir():
                raise DataError(f"{folder} is not a folder of images.")
            # regular files only (or links to them): a FIFO named pipe.jpg would block the reader forever
            paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in self.SUFFIXES and _is_file(p))
            if not paths:
                raise DataError(f"{folder} holds no images ({', '.join(self.SUFFIXES)}).")
        self.paths = [Path(p) for p in paths]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        pil = open_rgb(self.paths[index])
        return (self.transform(pil) if self.transform is not None else pil), index


def collate_images(items: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Batch dataset items field by field: tensors are stacked, anything else (PIL, str, int) kept in a list."""
    columns = list(zip(*items, strict=True))
    return [torch.stack(list(c)) if isinstance(c[0], torch.Tensor) else list(c) for c in columns]


__all__ = [
    "ImageFolder",
    "ImageRecord",
    "KarpathyImages",
    "caption_file_splits",
    "collate_images",
    "karpathy_splits",
    "open_rgb",
    "read_karpathy",
    "read_records",
    "skip_unreadable",
    "unreadable_reason",
]
