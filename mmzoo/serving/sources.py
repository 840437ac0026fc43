"""What an index is built from: a folder of images, a Karpathy split file, a precomputed split, a caption file.

A source lists its items in a fixed order (so shard ``k`` always holds the same items) and reads any of them back
as model inputs together with each item's size and the sha256 of its bytes. The manifest keeps
:meth:`Source.describe`, so a server can read shortlisted items again (to rerank them with another model) and
serve thumbnails, only of files under the source's root.
"""

from __future__ import annotations

import hashlib
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmzoo.data.images import ImageFolder, read_karpathy
from mmzoo.errors import DataError, InputError

Kind = Literal["images", "regions", "texts"]


@dataclass(frozen=True)
class Item:
    """One indexed item: ``key`` names it stably, ``path`` is its file relative to the source root ('' if none)."""

    key: str
    path: str = ""
    caption: str = ""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Source(ABC):
    """A collection to index; ``kind`` says what the model encodes (images as pixels, region rows, or captions)."""

    kind: Kind
    root: Path

    @abstractmethod
    def items(self) -> list[Item]:
        """Every item, in the one fixed order the index keeps."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON that :func:`open_source` turns back into this source."""

    @abstractmethod
    def read(self, items: Sequence[Item]) -> tuple[Any, list[tuple[int, str]]]:
        """The model inputs of ``items`` and, per item, (size in bytes, sha256 of its bytes)."""

    def file(self, item_path: str) -> Path | None:
        """The file of an item, only when it resolves inside the root (a thumbnail never leaves the indexed root)."""
        if not item_path:
            return None
        root = self.root.resolve()
        candidate = (root / item_path).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        return candidate


def _read_images(paths: Sequence[Path]) -> tuple[list[Any], list[tuple[int, str]]]:
    from PIL import Image, UnidentifiedImageError

    images, stats = [], []
    for path in paths:
        try:
            data = path.read_bytes()
            with Image.open(io.BytesIO(data)) as img:
                images.append(img.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"Cannot read image {path}: {exc}") from None
        stats.append((len(data), sha256_bytes(data)))
    return images, stats


class ImageFolderSource(Source):
    """Every image file under a folder, recursively, sorted by relative path; links and non-files are skipped."""

    kind: Kind = "images"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        if not self.root.is_dir():
            raise DataError(f"{self.root} is not a folder of images.")

    def items(self) -> list[Item]:
        found = []
        for path in self.root.rglob("*"):
            if path.suffix.lower() in ImageFolder.SUFFIXES and path.is_file() and not path.is_symlink():
                found.append(path.relative_to(self.root).as_posix())
        if not found:
            raise DataError(f"{self.root} holds no images ({', '.join(ImageFolder.SUFFIXES)}).")
        return [Item(key=rel, path=rel) for rel in sorted(found)]

    def describe(self) -> dict[str, Any]:
        return {"type": "image-folder", "root": str(self.root)}

    def read(self, items: Sequence[Item]) -> tuple[Any, list[tuple[int, str]]]:
        return _read_images([self.root / item.path for item in items])


class KarpathySource(Source):
    """The images of one split of a Karpathy split file, under an image root; each keeps its first caption."""

    kind: Kind = "images"

    def __init__(self, json_path: str | Path, image_root: str | Path, split: str) -> None:
        self.json_path, self.root, self.split = Path(json_path).absolute(), Path(image_root).absolute(), split
        self._records = read_karpathy(self.json_path, self.root, split)

    def items(self) -> list[Item]:
        out = []
        for record in self._records:
            rel = record.path.relative_to(self.root).as_posix()
            out.append(Item(key=rel, path=rel, caption=record.captions[0] if record.captions else ""))
        return out

    def describe(self) -> dict[str, Any]:
        return {"type": "karpathy", "json": str(self.json_path), "root": str(self.root), "split": self.split}

    def read(self, items: Sequence[Item]) -> tuple[Any, list[tuple[int, str]]]:
        return _read_images([self.root / item.path for item in items])


class PrecomputedSource(Source):
    """The images of a precomputed split (region features, one row each) for region-feature models.

    When the dataset folder also holds rendered pictures (``mmzoo make-data shapes --render``: a
    ``dataset_*.json`` split file listing the same number of images), each row keeps its picture for thumbnails.
    """

    kind: Kind = "regions"

    def __init__(self, root: str | Path, split: str) -> None:
        from mmzoo.data.precomputed import PrecomputedDataset

        self.root, self.split = Path(root).absolute(), split
        self._data = PrecomputedDataset(self.root, split)

    def _pictures(self) -> list[str]:
        n = self._data.num_images
        for json_path in sorted(self.root.glob("dataset_*.json")):
            image_root = self.root / "images" if (self.root / "images").is_dir() else self.root
            try:
                records = read_karpathy(json_path, image_root, self.split)
            except DataError:
                continue
            if len(records) == n:
                return [r.path.relative_to(self.root).as_posix() for r in records]
        return [""] * n

    def items(self) -> list[Item]:
        data, pictures = self._data, self._pictures()
        cpi = data.captions_per_image
        return [
            Item(key=f"{self.split}/{i}", path=pictures[i], caption=data.captions[i * cpi])
            for i in range(data.num_images)
        ]

    def describe(self) -> dict[str, Any]:
        return {"type": "precomputed", "root": str(self.root), "split": self.split}

    def read(self, items: Sequence[Item]) -> tuple[Any, list[tuple[int, str]]]:
        import torch

        rows = [int(item.key.rsplit("/", 1)[1]) for item in items]
        features, mask = self._data.image_features(rows)
        stats = [(f.nbytes, sha256_bytes(np.ascontiguousarray(f).tobytes())) for f in features]
        return (torch.from_numpy(features), torch.from_numpy(mask)), stats


class CaptionFileSource(Source):
    """A text file, one caption a line (blank lines skipped): an index of captions, searched with images."""

    kind: Kind = "texts"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).absolute()
        self.root = self.path.parent
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"Cannot read the caption file {self.path}: {exc}") from None
        self._captions = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]
        if not self._captions:
            raise DataError(f"{self.path} holds no captions (one per line).")

    def items(self) -> list[Item]:
        return [Item(key=f"line-{n}", caption=text) for n, text in self._captions]

    def describe(self) -> dict[str, Any]:
        return {"type": "captions", "path": str(self.path)}

    def read(self, items: Sequence[Item]) -> tuple[Any, list[tuple[int, str]]]:
        texts = [item.caption for item in items]
        return texts, [(len(t.encode("utf-8")), sha256_bytes(t.encode("utf-8"))) for t in texts]


def detect_source(spec: str | Path, split: str | None = None, image_root: str | Path | None = None) -> Source:
    """The source a command line names: a precomputed folder with ``--split``, a Karpathy ``.json`` with
    ``--image-root``, a caption ``.txt`` file, or a folder of images."""
    path = Path(spec)
    if not path.exists():
        raise DataError(
            f"The source {path} does not exist (give a folder of images, a dataset folder with "
            "--split, a Karpathy split .json with --image-root, or a caption .txt file)."
        )
    if path.is_dir() and split is not None:
        if (path / f"{split}_ims.npy").is_file():
            return PrecomputedSource(path, split)
        raise DataError(f"{path} has no {split}_ims.npy: --split names a precomputed split of a dataset folder.")
    if path.is_file() and path.suffix.lower() == ".json":
        if image_root is None:
            raise InputError(f"{path} is a Karpathy split file: give --image-root, the folder its images lie under.")
        return KarpathySource(path, image_root, split or "test")
    if path.is_file():
        return CaptionFileSource(path)
    return ImageFolderSource(path)


def open_source(description: dict[str, Any]) -> Source:
    """A source again from the manifest's description of it."""
    kind = description.get("type")
    try:
        if kind == "image-folder":
            return ImageFolderSource(description["root"])
        if kind == "karpathy":
            return KarpathySource(description["json"], description["root"], description["split"])
        if kind == "precomputed":
            return PrecomputedSource(description["root"], description["split"])
        if kind == "captions":
            return CaptionFileSource(description["path"])
    except KeyError as exc:
        raise DataError(f"The index's source description lacks {exc}: {json.dumps(description)}") from None
    raise DataError(f"Unknown source type {kind!r} in the index manifest.")


__all__ = [
    "CaptionFileSource",
    "ImageFolderSource",
    "Item",
    "KarpathySource",
    "PrecomputedSource",
    "Source",
    "detect_source",
    "open_source",
]
