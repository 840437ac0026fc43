"""What every feature source hands the importer: entries (metadata, from a cheap scan) and their arrays.

An import reads its sources twice. The *scan* reads only what is cheap (a TSV row's fields without
decoding the base64, an ``.npy`` header, an HDF5 dataset's shape), so that duplicate ids, mixed feature
sizes, ``num_boxes`` that disagrees with the array and images missing on either side are all reported
before one byte of output exists, and so that the padded shape ``(N, k_max, D)`` is known up front. The
*read* then decodes the arrays, in the order the source reads best, and the writer puts each one at
its row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmzoo.errors import DataError


@dataclass(frozen=True)
class Entry:
    """One image in a feature source, as the scan found it.

    Attributes:
        key: the image id as the source spells it (``"391895"``, ``"COCO_val2014_000000391895"``,
            a file stem, an HDF5 dataset name).
        regions: number of region features k.
        dim: size D of one region feature.
        has_boxes: whether the source holds a (k, 4) box array for it.
        where: file and row/line/dataset, for error messages (``"train.tsv.0, line 17"``).
        locator: what the source needs to read it again (a byte offset, a path, a row), opaque to others.
        order: position in the source's own reading order (shard, then row).
    """

    key: str
    regions: int
    dim: int
    has_boxes: bool
    where: str
    locator: Any = field(compare=False)
    order: int = 0


class FeatureSource:
    """Base class of the readers: a set of files holding region features for many images.

    Subclasses set ``format_name`` (recorded as the manifest's ``source_format``) and ``sequential``
    (True when the files must be read front to back, as a TSV; the importer then reads entries in scan
    order and writes each at its row; False when any entry can be read directly, as per-image files,
    and the importer reads in output order).
    """

    format_name: str = ""
    sequential: bool = False

    def scan(self) -> list[Entry]:
        """Every image in the sources, with ``order`` set, without decoding features."""
        raise NotImplementedError

    def read(self, entries: Sequence[Entry]) -> Iterator[tuple[Entry, np.ndarray, np.ndarray | None]]:
        """Yield ``(entry, features (k, D), boxes (k, 4) or None)`` for ``entries``, in that order."""
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the sources and reading options (names, sizes, mtimes): a resumed import must match."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the sources (file names and the reader's options)."""
        return {"files": [p.name for p in getattr(self, "paths", [])]}


def file_stamp(path: Path) -> list[Any]:
    """``[name, size, mtime_ns]`` of a file: enough to notice that a source changed between two runs."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


#: floating dtypes accepted in sources; float16/float64 are converted to float32 (float16 exactly).
FLOAT_KINDS = ("f",)


def as_regions(array: np.ndarray, where: str, *, transpose: bool = False) -> np.ndarray:
    """A source array as (k, D) float32: 1-D global features become one region; ``transpose`` reads (D, k)."""
    if array.dtype.kind not in FLOAT_KINDS:
        raise DataError(f"{where}: features have dtype {array.dtype}; region features must be floating point.")
    if array.ndim == 1:
        array = array[None, :]
    elif array.ndim != 2:
        raise DataError(f"{where}: features have shape {array.shape}; expected (k, D) region features.")
    if transpose:
        array = array.T
    return np.ascontiguousarray(array, dtype=np.float32)


def region_shape(shape: Sequence[int], where: str, *, transpose: bool = False) -> tuple[int, int]:
    """(k, D) from a stored shape, with the same rules as :func:`as_regions`."""
    shape = tuple(int(n) for n in shape)
    if len(shape) == 1:
        shape = (1, *shape)
    if len(shape) != 2:
        raise DataError(f"{where}: features have shape {shape}; expected (k, D) region features.")
    k, d = (shape[1], shape[0]) if transpose else shape
    if k < 1 or d < 1:
        raise DataError(f"{where}: features have shape {shape}: an image needs at least one region.")
    return k, d


def check_boxes(boxes: np.ndarray, regions: int, where: str) -> np.ndarray:
    """Boxes as (k, 4) float32 matching the features' k."""
    boxes = np.asarray(boxes)
    if boxes.dtype.kind not in "fiu" or boxes.ndim != 2 or boxes.shape != (regions, 4):
        raise DataError(
            f"{where}: boxes have shape {boxes.shape} (dtype {boxes.dtype}); expected ({regions}, 4) numbers, "
            "one box per region feature."
        )
    return np.ascontiguousarray(boxes, dtype=np.float32)


__all__ = ["Entry", "FeatureSource", "as_regions", "check_boxes", "file_stamp", "region_shape"]
