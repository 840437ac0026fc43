"""The ``precomp`` layout's one home: its file names, which files a split has, how captions are written, and
how a dataset already in a folder is replaced.

The reader (:mod:`mmzoo.data.precomputed`), the importer's writer (:mod:`mmzoo.data.importing.writer`), the shapes
generator (:mod:`mmzoo.data.shapes`) and the extractor (:mod:`mmzoo.data.extract`) all name their files through
:data:`PRECOMP`, and the format's ``files(root, split)`` (what a run's data fingerprint digests) lists them::

    {split}_ims.npy      (N, k, D) region features              {split}_caps.txt   captions, in image order
    {split}_counts.npy   (N,) valid regions per image           {split}_ids.txt    source image id per image
    {split}_boxes.npy    (N, k, 4) region boxes                 {split}_twins.npy  twin image per image (shapes)
    {split}_scenes.json  the scenes the shapes images were drawn from
    {split}_twin_types.txt  what each image and its twin differ in (:mod:`mmzoo.data.twins`)
    {split}_images.txt   the image file of each row, when the features were extracted from pictures

Example:
    >>> PRECOMP.name("train", "ims")
    'train_ims.npy'
    >>> PRECOMP.kind_of("dev_caps.txt.partial")
    ('dev', 'caps')
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmzoo._atomic import atomic_write_text, fsync_dir
from mmzoo.data.manifest import MANIFEST_NAME

#: the marker of an unfinished import (written by :mod:`mmzoo.data.importing.writer`): part of a dataset too.
IMPORT_MARKER = ".mmzoo-import.json"
#: the suffix of a file an import is still writing.
PARTIAL = ".partial"


@dataclass(frozen=True)
class PrecomputedLayout:
    """Per-split files named ``{split}_{kind}{suffix}``; ``kinds`` maps each kind to its suffix."""

    kinds: dict[str, str] = field(
        default_factory=lambda: {
            "ims": ".npy",
            "counts": ".npy",
            "boxes": ".npy",
            "twins": ".npy",
            "twin_types": ".txt",
            "caps": ".txt",
            "images": ".txt",
            "ids": ".txt",
            "scenes": ".json",
        }
    )

    def name(self, split: str, kind: str) -> str:
        """The file name of one of a split's files (``train_ims.npy``, ``dev_caps.txt``, ...)."""
        return f"{split}_{kind}{self.kinds[kind]}"

    def path(self, root: str | Path, split: str, kind: str) -> Path:
        return Path(root) / self.name(split, kind)

    def kind_of(self, name: str) -> tuple[str, str] | None:
        """``(split, kind)`` of a file name of this layout (an import's ``.partial`` included), else None."""
        name = name.removesuffix(PARTIAL)
        for kind, suffix in self.kinds.items():
            tail = f"_{kind}{suffix}"
            if name.endswith(tail) and len(name) > len(tail):
                return name[: -len(tail)], kind
        return None

    def files(self, root: str | Path, split: str) -> list[Path]:
        """The files split ``split`` has in ``root``, in the order of :attr:`kinds`."""
        return [p for kind in self.kinds if (p := self.path(root, split, kind)).is_file()]

    def splits(self, root: str | Path) -> list[str]:
        """The splits whose features are in ``root`` (``{split}_ims.npy``)."""
        return sorted(p.name.removesuffix("_ims.npy") for p in Path(root).glob("*_ims.npy"))

    def write_captions(self, root: str | Path, split: str, captions: Sequence[str], suffix: str = "") -> Path:
        """Write a split's captions (one per line, in image order) atomically; ``suffix``: an import's ``.partial``."""
        path = Path(root) / (self.name(split, "caps") + suffix)
        atomic_write_text(path, "\n".join(captions) + "\n")
        return path

    # -- replacing a dataset ---------------------------------------------------------------------------------
    def dataset_files(self, root: str | Path) -> set[str]:
        """The names of the dataset now in ``root``: every split's files (of its manifest or found), its manifest,
        an import's marker and ``.partial`` files. Other files (the user's) are not the dataset's."""
        root = Path(root)
        splits: set[str] = set()
        named: set[str] = {MANIFEST_NAME, IMPORT_MARKER}
        try:
            manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {}
        if isinstance(manifest, dict):
            splits.update(manifest.get("splits") or {})
            for table in ("scenes", "twins", "twin_types"):
                if isinstance(manifest.get(table), dict):
                    named.update(str(v) for v in manifest[table].values() if "/" not in str(v))
        for path in root.iterdir() if root.is_dir() else ():
            found = self.kind_of(path.name)
            if found and found[1] != "scenes":
                splits.add(found[0])
        named.update(self.name(split, kind) for split in splits for kind in self.kinds)
        return named | {f"{name}{PARTIAL}" for name in named}

    def holds_dataset(self, root: str | Path) -> list[str]:
        """What in ``root`` says a dataset is there (features and the manifest); empty when none is."""
        root = Path(root)
        return [
            *(self.name(s, "ims") for s in self.splits(root)),
            *([MANIFEST_NAME] if (root / MANIFEST_NAME).exists() else []),
        ]

    def replace_dataset(self, staging: Path, out: Path) -> None:
        """The replace policy: remove the dataset now in ``out`` (:meth:`dataset_files`), then move the staged one
        in, its manifest last; other files in ``out`` stay."""
        for name in sorted(self.dataset_files(out)):
            path = out / name
            if path.is_file() or path.is_symlink():
                path.unlink()
        staged = sorted((p.name for p in staging.iterdir()), key=lambda name: (name == MANIFEST_NAME, name))
        for name in staged:
            os.replace(staging / name, out / name)
        fsync_dir(out)
        staging.rmdir()


#: the layout of the ``precomp`` format.
PRECOMP = PrecomputedLayout()

__all__ = ["IMPORT_MARKER", "PARTIAL", "PRECOMP", "PrecomputedLayout"]
