"""Image splits: a Karpathy split file (or a CSV) and an image root, opened as a :class:`~mmzoo.contracts.Split`
of raw images, so that models that read pixels are evaluated by the same protocol as the region models.

:func:`open_image_split` is the sibling of :func:`mmzoo.data.open_split` for data that is images, not a dataset
folder: ``mmzoo eval MODEL --images ROOT --karpathy dataset_coco.json --split test`` (COCO 5K; ``--fold5`` for
COCO 1K; ``dataset_flickr30k.json`` for Flickr30K 1K) and ``--csv pairs.csv`` (columns ``image,caption``, one row
per caption, an image's captions together) come in here. The split's images are loaded (decoded in a few
threads) but not converted: each model's own preprocessing sees the file as it is (EXIF orientation, 16-bit,
CMYK, palette), as ``model.encode_images`` would.

Example:
    >>> test = open_image_split("flickr30k-images", karpathy="dataset_flickr30k.json", split="test")  # doctest: +SKIP
    >>> test.num_images, test.captions_per_image  # doctest: +SKIP
    (1000, 5)
    >>> images = test.load_images([0, 1])  # doctest: +SKIP
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mmzoo.contracts import Split
from mmzoo.data.images import read_karpathy
from mmzoo.errors import DataError

#: threads that decode one batch of images (PIL's decoders release the GIL).
DECODE_THREADS = 4


def _load(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()  # decoded now: the file closes, the pixels and the EXIF tags stay
            return image
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"Cannot read image {path}: {exc}") from None


class ImageSplit(Split):
    """Raw images with their captions (``pixels = True``): ``load_images(indices)`` gives PIL images as stored."""

    pixels = True
    regions = 0
    region_dim = 0

    def __init__(self, name: str, paths: Sequence[Path], captions: Sequence[Sequence[str]], per_image: int) -> None:
        if not paths:
            raise DataError(f"The {name} split has no images.")
        short = [str(p) for p, caps in zip(paths, captions, strict=True) if len(caps) < per_image]
        if short:
            raise DataError(
                f"{len(short)} image(s) of the {name} split have fewer than {per_image} captions (e.g. {short[0]})."
            )
        self.name = name
        self.paths = [Path(p) for p in paths]
        self.captions = [c for caps in captions for c in list(caps)[:per_image]]
        self.captions_per_image = per_image
        self.num_images = len(self.paths)
        missing = [str(p) for p in self.paths if not p.is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} image file(s) of the {name} split are missing (e.g. {missing[0]}): check the image "
                "root (COCO's Karpathy file names train2014/ and val2014/ sub-folders)."
            )

    def load_images(self, indices: Sequence[int] | np.ndarray) -> list[Any]:
        """The images ``indices`` as PIL images, decoded in a few threads; a DataError names an unreadable file."""
        paths = [self.paths[int(i)] for i in indices]
        with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, max(len(paths), 1))) as pool:
            return list(pool.map(_load, paths))

    def image_features(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise DataError(
            f"The {self.name} split holds images, not region features: evaluate a model that reads pixels, or "
            "extract features first (`mmzoo extract-features`)."
        )

    def __getitem__(self, index: int) -> tuple[Any, np.ndarray, str, int, int]:
        image = index // self.captions_per_image
        return self.load_images([image])[0], np.ones(1, dtype=bool), self.captions[index], index, image

    def __repr__(self) -> str:
        return f"{self.name} split: {self.num_images} images, {len(self.captions)} captions"


def read_csv_pairs(path: Path, image_root: Path) -> tuple[list[Path], list[list[str]]]:
    """Images (in order of first appearance) and their captions from a CSV with columns ``image,caption``."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"Cannot read the CSV {path}: {exc}") from None
    if not rows or not {"image", "caption"} <= set(rows[0]):
        raise DataError(f"{path} needs a header with the columns image and caption, and at least one row.")
    captions: dict[str, list[str]] = {}
    for i, row in enumerate(rows, 2):
        image, caption = (row.get("image") or "").strip(), (row.get("caption") or "").strip()
        if not image or not caption:
            raise DataError(f"{path}, line {i}: an empty image or caption.")
        captions.setdefault(image, []).append(caption)
    return [image_root / name for name in captions], list(captions.values())


def open_image_split(
    image_root: str | Path,
    *,
    karpathy: str | Path | None = None,
    csv_path: str | Path | None = None,
    split: str = "test",
    captions_per_image: int = 5,
    max_images: int | None = None,
) -> ImageSplit:
    """The ``split`` of a Karpathy split file (or every row of a CSV) with its images under ``image_root``.

    Every image keeps its first ``captions_per_image`` captions (5, the protocol's); ``max_images`` keeps the first
    N images (COCO's 5K test split and its 1K folds are the file's order).
    """
    root = Path(image_root)
    if not root.is_dir():
        raise DataError(f"The image root {root} is not a folder.")
    if (karpathy is None) == (csv_path is None):
        raise DataError("Give the captions as a Karpathy split file (--karpathy) or a CSV (--csv), not both or none.")
    if captions_per_image < 1:
        raise DataError(f"captions_per_image must be at least 1; got {captions_per_image}.")
    if karpathy is not None:
        records = read_karpathy(karpathy, root, split)
        paths, captions = [r.path for r in records], [list(r.captions) for r in records]
    else:
        paths, captions = read_csv_pairs(Path(csv_path), root)  # type: ignore[arg-type]
    if max_images is not None:
        if max_images < 1:
            raise DataError(f"max_images must be at least 1; got {max_images}.")
        paths, captions = paths[:max_images], captions[:max_images]
    return ImageSplit(split, paths, captions, captions_per_image)


__all__ = ["DECODE_THREADS", "ImageSplit", "open_image_split", "read_csv_pairs"]
