"""Precomputed region features in the layout SCAN and VSE++ made standard, read memory-mapped.

A dataset folder holds, per split (``train``, ``dev``, ``test``, ``testall``)::

    {split}_ims.npy      (N, k, D) floating point: k region features of size D per image
    {split}_caps.txt     one caption per line, ``captions_per_image`` consecutive lines per image
    {split}_counts.npy   optional (N,) integers: the valid regions of each image, for variable region counts
                         (adaptive 10-100 boxes); the rows beyond an image's count are padding, masked out
    {split}_boxes.npy    optional (N, k, 4) float32 boxes (x1, y1, x2, y2) of the regions
    {split}_ids.txt      optional: the source image id of each image, one per line
    {split}_twins.npy    optional twin tables, as .npy or .txt, and their types (:mod:`mmzoo.data.twins`)

The features are opened with ``np.load(..., mmap_mode="r")`` and one row is copied per item, so
memory is bounded by the batch, not by the file (COCO's training features are about 33 GB).

Two feature layouts exist in the wild and are detected as the reference code does (SCAN's
``im_div``): one row per image (``N_rows * captions_per_image == N_captions``) or one row per
caption (``N_rows == N_captions``, the rows of an image's captions repeat it). Either way image
``j`` is the logical image of captions ``j*cpi .. j*cpi + cpi - 1`` and ``ds[i][4] == i // cpi``.

The file names have one home, :data:`mmzoo.data.layout.PRECOMP`, shared with every writer of the layout.
This is the ``precomp`` data format (:class:`PrecomputedFormat`); open folders through
:func:`mmzoo.data.open_split`, which picks the format the folder's manifest names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmzoo.contracts import DataFormat, Split
from mmzoo.data.layout import PRECOMP
from mmzoo.data.manifest import MANIFEST_NAME, DataManifest, read_manifest
from mmzoo.data.twins import read_twin_types, read_twins
from mmzoo.errors import DataError

logger = logging.getLogger(__name__)

#: rows of features checked per step by :meth:`PrecomputedDataset.validate`.
VALIDATE_CHUNK_BYTES = 64 * 2**20


def read_captions(path: Path) -> list[str]:
    """Captions, one per line (stripped); an empty line is an error naming its line number."""
    if not path.is_file():
        raise DataError(f"Caption file {path} not found: a split needs {{split}}_ims.npy and {{split}}_caps.txt.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read the caption file {path} as UTF-8 text: {exc}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":  # the final newline ends the last caption, it does not start a new one
        lines.pop()
    captions = [line.strip() for line in lines]
    for number, caption in enumerate(captions, start=1):
        if not caption:
            raise DataError(f"{path}, line {number}: empty caption. Every line must hold one caption.")
    if not captions:
        raise DataError(f"Caption file {path} holds no captions.")
    return captions


def npy_sizes(path: Path) -> tuple[int, int] | None:
    """(the size the ``.npy`` header promises, the file's size), or None when the header is not readable (the
    caller's loader reports that)."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _fortran, dtype = reader(handle)
            offset = handle.tell()
            size = os.fstat(handle.fileno()).st_size
    except (OSError, ValueError, EOFError):
        return None
    if dtype.hasobject:
        return None
    return offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, size


def _check_size(path: Path) -> None:
    """A feature file shorter than its header says (a copy or a download cut short, a file being rewritten) is a
    DataError before it is memory-mapped: reading past the end of a mapping kills the process (SIGBUS)."""
    sizes = npy_sizes(path)
    if sizes is not None and sizes[1] < sizes[0]:
        raise DataError(
            f"{path} is truncated: its header promises {sizes[0]:,} bytes, the file holds {sizes[1]:,}. It was cut "
            "short (a copy, a download or an import that did not finish, or it is being rewritten); copy or "
            "create it again."
        )


def open_features(path: Path) -> np.ndarray:
    """Memory-map ``path`` and check that it is a non-empty (N, k, D) floating-point array."""
    if path.is_dir():
        raise DataError(f"Feature file {path} is a folder; a split needs the file {{split}}_ims.npy.")
    if not path.is_file():
        raise DataError(f"Feature file {path} not found: a split needs {{split}}_ims.npy and {{split}}_caps.txt.")
    _check_size(path)
    try:
        features = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "pickled" in str(exc):  # numpy's own hint would suggest unsafe loading: say what the file really is
            raise DataError(
                f"{path} is not a .npy array of numbers (it is garbage, or an object array that only unpickling "
                "could read, which mmzoo never does). Save the features with np.save(path, float32_array)."
            ) from None
        raise DataError(f"Cannot open {path} as a .npy array: {exc}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"Cannot open {path} as a .npy array: {exc}") from None
    if not isinstance(features, np.ndarray):
        raise DataError(f"{path} is not a single .npy array (an .npz archive?); save it with np.save.")
    if features.ndim != 3:
        raise DataError(
            f"{path} has shape {features.shape}; region features must be (N, k, D). "
            "Global features (N, D) can be saved as (N, 1, D) with x[:, None, :]."
        )
    if features.dtype.kind != "f":
        raise DataError(
            f"{path} has dtype {features.dtype}; region features must be floating point (float32; float16 and "
            "float64 are read and cast)."
        )
    if 0 in features.shape:
        raise DataError(f"{path} is empty: shape {features.shape}.")
    return features


class PrecomputedDataset(torch.utils.data.Dataset, Split):
    """One split of a precomputed-feature dataset: item ``i`` is caption ``i`` with its image's regions.

    Args:
        root: the dataset folder.
        split: ``train``, ``dev``, ``test``, ``testall`` or any name with the two files.
        captions_per_image: consecutive caption lines per image; None takes the manifest's value or 5.
        max_images: keep only the first ``max_images`` images and their captions (the reference code
            validates on the first 1,000 COCO dev images); None keeps all.

    Examples:
        >>> ds = PrecomputedDataset("data/shapes", "train")  # doctest: +SKIP
        >>> features, mask, caption, caption_id, image_id = ds[7]  # (k, D), (k,), str, 7, 1  # doctest: +SKIP
        >>> loader = DataLoader(ds, batch_size=128, shuffle=True, collate_fn=collate_pairs)  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        captions_per_image: int | None = None,
        max_images: int | None = None,
        manifest: DataManifest | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = self.name = split
        if not self.root.is_dir():
            raise DataError(f"Dataset folder {self.root} not found.")
        self.manifest = manifest if manifest is not None else read_manifest(self.root)
        if captions_per_image is None:
            captions_per_image = self.manifest.captions_per_image if self.manifest else 5
        if isinstance(captions_per_image, bool) or not isinstance(captions_per_image, int) or captions_per_image < 1:
            raise DataError(f"captions_per_image must be an integer >= 1; got {captions_per_image!r}.")
        self.captions_per_image = captions_per_image
        self.features_path = PRECOMP.path(self.root, split, "ims")
        self.captions_path = PRECOMP.path(self.root, split, "caps")
        self.captions: list[str] = read_captions(self.captions_path)
        self._features = open_features(self.features_path)
        rows, self.regions, self.region_dim = (int(n) for n in self._features.shape)
        for key, actual in (("regions", self.regions), ("region_dim", self.region_dim)):
            stated = getattr(self.manifest, key) if self.manifest else None
            if stated is not None and stated != actual:
                raise DataError(
                    f"{self.features_path} has {key} = {actual} but {self.root / MANIFEST_NAME} says {stated}: "
                    "the manifest belongs to other data; regenerate the folder or fix the manifest."
                )
        n_caps = len(self.captions)
        if n_caps % captions_per_image:
            raise DataError(
                f"{self.captions_path} holds {n_caps} captions, not a multiple of {captions_per_image} per image."
            )
        self.num_images = n_caps // captions_per_image
        if rows == self.num_images:
            self.rows_per_caption = captions_per_image  # one feature row per image (SCAN im_div = 5)
        elif rows == n_caps:
            self.rows_per_caption = 1  # one row per caption (SCAN im_div = 1), image j = row j * cpi
        else:
            raise DataError(
                f"{self.features_path} holds {rows} feature rows but {self.captions_path} holds {n_caps} captions: "
                f"expected {self.num_images} rows (one per image, {captions_per_image} captions each) "
                f"or {n_caps} (one per caption)."
            )
        self.counts = self._read_counts(rows)
        self.twins = self._read_twins()
        self.twin_types = read_twin_types(self.root, self.split, self.twins)
        if max_images is not None:
            self._truncate(max_images)

    def _truncate(self, max_images: int) -> None:
        if max_images < 1:
            raise DataError(f"max_images must be >= 1; got {max_images}.")
        if max_images >= self.num_images:
            return
        self.num_images = max_images
        self.captions = self.captions[: max_images * self.captions_per_image]
        if self.twins is not None:
            twins = self.twins[:max_images].copy()
            twins[twins >= max_images] = -1  # a twin cut off is no twin
            self.twins = twins
        if self.twin_types is not None:
            self.twin_types = self.twin_types[:max_images]

    # -- pickling: DataLoader workers started with "spawn" get the path, never the mapped array ---------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_features"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._features = open_features(self.features_path)

    # -- the Dataset protocol -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, str, int, int]:
        """(features (k, D) float32 copy, mask (k,) bool, caption, caption index, image index)."""
        index = int(index)
        if not 0 <= index < len(self.captions):
            raise IndexError(f"caption index {index} out of range for {len(self.captions)} captions")
        row = index // self.rows_per_caption
        return self._read_row(row), self._mask(row), self.captions[index], index, index // self.captions_per_image

    # -- images -----------------------------------------------------------------------------------------
    def image_index(self, caption_index: int) -> int:
        """The logical image a caption describes (``caption_index // captions_per_image``)."""
        return int(caption_index) // self.captions_per_image

    def _rows(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.num_images):
            raise IndexError(f"image indices must lie in [0, {self.num_images}); got {indices.min()}..{indices.max()}")
        return indices * (self.captions_per_image // self.rows_per_caption)

    def image_features(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Regions of the given (unique) images: (features (n, k, D) float32, mask (n, k) bool), for evaluation."""
        rows = self._rows(indices)
        out = np.empty((len(rows), self.regions, self.region_dim), dtype=np.float32)
        mask = np.empty((len(rows), self.regions), dtype=bool)
        for n, row in enumerate(rows):
            out[n] = self._read_row(int(row))
            mask[n] = self._mask(int(row))
        return out, mask

    def boxes(self, indices: Sequence[int] | np.ndarray) -> np.ndarray | None:
        """Boxes (n, k, 4) of the given images' regions when the split has them (``{split}_boxes.npy``), else None."""
        path = PRECOMP.path(self.root, self.split, "boxes")
        if not path.is_file():
            return None
        boxes = np.load(path, mmap_mode="r", allow_pickle=False)
        return np.asarray(boxes[self._rows(indices)], dtype=np.float32)

    def _mask(self, row: int) -> np.ndarray:
        if self.counts is None:
            return np.ones(self.regions, dtype=bool)
        return np.arange(self.regions) < self.counts[row]

    def _read_counts(self, rows: int) -> np.ndarray | None:
        """Valid regions per feature row (``{split}_counts.npy``), None when every row is full."""
        path = PRECOMP.path(self.root, self.split, "counts")
        if not path.is_file():
            return None
        try:
            counts = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"Cannot read the region counts {path}: {exc}") from None
        if counts.shape != (rows,) or counts.dtype.kind not in "iu":
            raise DataError(f"{path} must be an integer array of shape ({rows},), one count per feature row.")
        if len(counts) and (counts.min() < 1 or counts.max() > self.regions):
            bad = int(np.flatnonzero((counts < 1) | (counts > self.regions))[0])
            raise DataError(
                f"{path}: row {bad} has {counts[bad]} regions; every image needs 1..{self.regions} (the padded length)."
            )
        return counts.astype(np.int64)

    # -- checks -----------------------------------------------------------------------------------------
    def validate(self, progress: bool = False) -> None:
        """Scan every feature row for NaN/inf in chunks (bounded memory); raise DataError at the first bad row."""
        from tqdm.auto import tqdm

        rows = self._features.shape[0]
        chunk = max(1, VALIDATE_CHUNK_BYTES // (self.regions * self.region_dim * self._features.itemsize))
        for start in tqdm(range(0, rows, chunk), desc=f"validate {self.split}", disable=not progress, unit="chunk"):
            block = np.asarray(self._features[start : start + chunk])
            valid = np.isfinite(block)
            if self.counts is not None:
                valid |= np.arange(self.regions)[None, :, None] >= self.counts[start : start + chunk, None, None]
            finite = valid.reshape(len(block), -1).all(axis=1)
            if not finite.all():
                self._bad_row(start + int(np.argmin(finite)))

    def _read_row(self, row: int) -> np.ndarray:
        values = np.array(self._features[row], dtype=np.float32)  # a copy: the memmap stays untouched
        valid = values if self.counts is None else values[: self.counts[row]]
        if not np.isfinite(valid).all():
            self._bad_row(row)
        if self.counts is not None:
            values[self.counts[row] :] = 0.0  # padding holds zeros, whatever the file has there
        return values

    def _bad_row(self, row: int) -> None:
        raise DataError(
            f"{self.features_path}: feature row {row} holds NaN or infinite values "
            f"(captions at lines {self._lines_of_row(row)} of {self.captions_path.name}). Recompute or drop that image."
        )

    def _lines_of_row(self, row: int) -> str:
        first = row * self.rows_per_caption
        last = first + self.rows_per_caption - 1
        return f"{first + 1}-{last + 1}" if last > first else str(first + 1)

    def _read_twins(self) -> np.ndarray | None:
        """Twin image of each image (-1 for none) when the split has hard distractors (:mod:`mmzoo.data.twins`)."""
        return read_twins(self.root, self.split, self.num_images)

    def __repr__(self) -> str:
        return (
            f"PrecomputedDataset({str(self.root)!r}, {self.split!r}: {self.num_images} images x "
            f"{self.captions_per_image} captions, regions {self.regions} x {self.region_dim})"
        )


@dataclass
class PairBatch:
    """A training batch: B (image regions, caption) pairs with their indices in the dataset.

    Attributes:
        features: (B, k, D) float32 region features.
        mask: (B, k) bool, True for the valid regions.
        captions: the B captions.
        caption_ids: (B,) long, caption indices (dataset item indices).
        image_ids: (B,) long, the image each caption describes; equal ids mark the same image.
    """

    features: Tensor
    mask: Tensor
    captions: list[str]
    caption_ids: Tensor
    image_ids: Tensor

    def __len__(self) -> int:
        return len(self.captions)

    def to(self, device: torch.device | str) -> PairBatch:
        return PairBatch(
            self.features.to(device), self.mask.to(device), self.captions, self.caption_ids, self.image_ids
        )


def collate_pairs(items: Sequence[tuple[np.ndarray, np.ndarray, str, int, int]]) -> PairBatch:
    """``DataLoader`` collate function: split items -> :class:`PairBatch`."""
    if not items:
        raise DataError("collate_pairs got an empty batch.")
    features = torch.from_numpy(np.stack([item[0] for item in items]).astype(np.float32, copy=False))
    return PairBatch(
        features=features,
        mask=torch.from_numpy(np.stack([item[1] for item in items])),
        captions=[item[2] for item in items],
        caption_ids=torch.tensor([item[3] for item in items], dtype=torch.long),
        image_ids=torch.tensor([item[4] for item in items], dtype=torch.long),
    )


class PrecomputedFormat(DataFormat):
    """The ``precomp`` layout above; options: ``captions_per_image``, ``max_images``."""

    description = "precomputed region features: {split}_ims.npy (+ counts, boxes, ids) and {split}_caps.txt"
    #: the file names, caption writer and replace policy every writer of this format shares.
    layout = PRECOMP

    def open_split(self, root: Path, split: str, manifest: DataManifest | None, **options: Any) -> PrecomputedDataset:
        return PrecomputedDataset(root, split, manifest=manifest, **options)

    def files(self, root: Path, split: str) -> list[Path]:
        """Every file of the split the layout names (features, captions, counts, boxes, ids, twins, scenes)."""
        return PRECOMP.files(root, split)


__all__ = [
    "MANIFEST_NAME",
    "PairBatch",
    "PrecomputedDataset",
    "PrecomputedFormat",
    "collate_pairs",
    "open_features",
    "read_captions",
    "read_manifest",
]
