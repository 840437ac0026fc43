"""HDF5 feature files (h5py), in the two layouts found in the wild.

*One array and an id index*: hengyuan-hu/bottom-up-attention-vqa's ``detection_features_converter.py``
writes ``image_features`` (N, 36, 2048) float32 and ``image_bb`` (N, 36, 4), with the ids in a separate
``{split}36_imgid2idx.pkl``; adaptive-box variants (BAN) store the features flat, (total, 2048), with
``pos_boxes`` (N, 2) giving each image's ``[start, end)`` rows. The ids come from ``index`` (a file,
see :mod:`.id_index`) or ``index_key`` (a dataset of ids in the same file). A ``num_boxes`` (N,) dataset,
when present, gives the valid rows of a padded array.

*One dataset per image*: ``f[image_id]`` is a (k, D) dataset, or a group holding ``features`` (and
``boxes``) datasets.

h5py is imported only when an HDF5 source is opened (``pip install "mmzoo[features]"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmzoo._optional import require
from mmzoo.data.importing.id_index import index_from_object, read_id_index
from mmzoo.data.importing.records import Entry, FeatureSource, as_regions, check_boxes, file_stamp, region_shape
from mmzoo.errors import DataError

#: feature array names tried in the array layout, then the per-image layout's group member names.
ARRAY_KEYS = ("image_features", "features", "feats")
GROUP_KEYS = ("features", "feat", "x")
BOX_KEYS = ("image_bb", "boxes", "bbox")
INDEX_KEYS = ("image_ids", "image_id", "ids", "img_ids")
COUNT_KEYS = ("num_boxes", "counts")
OFFSETS_KEY = "pos_boxes"
#: rows read per h5py call in the array layout (a bounded buffer).
BLOCK_BYTES = 32 * 2**20


def _h5py() -> Any:
    return require("h5py", extra="features", purpose="Reading HDF5 features")


class Hdf5Source(FeatureSource):
    """HDF5 files of region features, in the array layout or one dataset per image (detected per file).

    Args:
        paths: the HDF5 files.
        key: the feature dataset (array layout) or member name (per-image groups); None tries
            ``image_features, features, feats``.
        box_key: the box dataset; None takes ``image_bb``, ``boxes`` or ``bbox`` when present.
        index: id index files, one per HDF5 file (array layout): ``.pkl`` / ``.json`` / ``.npy`` / text.
        index_key: a dataset of ids inside each file (array layout); None tries ``image_ids, image_id, ids``.
        group: the group that holds the data (default: the file's root).
        transpose: arrays are stored D x k.

    Examples:
        >>> src = Hdf5Source(["data/train36.hdf5"], index=["data/train36_imgid2idx.pkl"])  # doctest: +SKIP
    """

    format_name = "hdf5"
    sequential = True

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        key: str | None = None,
        box_key: str | None = None,
        index: Sequence[str | Path] | None = None,
        index_key: str | None = None,
        group: str | None = None,
        transpose: bool = False,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        for path in self.paths:
            if not path.is_file():
                raise DataError(f"HDF5 source {path} not found.")
        self.index = [Path(p) for p in index] if index else None
        if self.index is not None and len(self.index) != len(self.paths):
            raise DataError(f"Give one --index per HDF5 file: {len(self.paths)} files, {len(self.index)} indexes.")
        self.key, self.box_key, self.index_key, self.group = key, box_key, index_key, group
        self.transpose = transpose
        self.layouts: list[str] = []

    # -- opening ----------------------------------------------------------------------------------------
    def _open(self, path: Path) -> Any:
        h5py = _h5py()
        try:
            return h5py.File(path, "r")
        except OSError as exc:
            raise DataError(f"Cannot open {path} as an HDF5 file: {exc}") from None

    def _root(self, handle: Any, path: Path) -> Any:
        if self.group is None:
            return handle
        if self.group not in handle:
            raise DataError(f"{path} has no group {self.group!r}.")
        return handle[self.group]

    @staticmethod
    def _pick(root: Any, wanted: str | None, candidates: Sequence[str]) -> str | None:
        if wanted is not None:
            return wanted if wanted in root else None
        return next((name for name in candidates if name in root), None)

    def _array_key(self, root: Any) -> str | None:
        """The feature dataset name when ``root`` is in the array layout, else None."""
        h5py = _h5py()
        name = self._pick(root, self.key, ARRAY_KEYS)
        if name is None or not isinstance(root.get(name, getlink=False), h5py.Dataset):
            return None
        ndim = len(root[name].shape)
        return name if ndim == 3 or (ndim == 2 and OFFSETS_KEY in root) else None

    # -- the scan -------------------------------------------------------------------------------------
    def scan(self) -> list[Entry]:
        entries: list[Entry] = []
        self.layouts = []
        first: tuple[int, str] | None = None
        for number, path in enumerate(self.paths):
            with self._open(path) as handle:
                root = self._root(handle, path)
                name = self._array_key(root)
                if name is not None:
                    self.layouts.append("array")
                    found = self._scan_array(root, name, number, path)
                else:
                    self.layouts.append("per-image")
                    found = self._scan_groups(root, number, path)
            for entry in found:
                if first is None:
                    first = (entry.dim, entry.where)
                elif entry.dim != first[0]:
                    raise DataError(
                        f"Mixed feature sizes: {first[1]} has D = {first[0]} but {entry.where} has D = {entry.dim}. "
                        "Features of different extractors cannot share a dataset."
                    )
                entries.append(dataclasses.replace(entry, order=len(entries)))
        if not entries:
            raise DataError(f"No features found in {', '.join(str(p) for p in self.paths)}.")
        return entries

    def _ids(self, root: Any, number: int, path: Path, rows: int) -> dict[str, int]:
        if self.index is not None:
            index = read_id_index(self.index[number])
        else:
            name = self._pick(root, self.index_key, INDEX_KEYS)
            if name is None:
                raise DataError(
                    f"{path} holds one feature array for many images but no id index: give --index FILE "
                    "(e.g. train36_imgid2idx.pkl, a JSON list, one id per line) or --index-key DATASET."
                )
            index = index_from_object(self._load(root, name, f"{path.name}:{name}"), f"{path.name}:{name}")
        bad = [key for key, row in index.items() if not 0 <= row < rows]
        if bad:
            raise DataError(f"{path}: the id index sends image {bad[0]} to a row outside the {rows} rows.")
        return index

    @staticmethod
    def _load(root: Any, name: str, where: str, selection: Any = ()) -> np.ndarray:
        """Read ``root[name][selection]``; any failure is a DataError naming the file and dataset."""
        try:
            return np.asarray(root[name][selection])
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise DataError(f"{where}: the dataset cannot be read ({exc}); the file is damaged.") from None

    def _scan_array(self, root: Any, name: str, number: int, path: Path) -> list[Entry]:
        features = root[name]
        if features.dtype.kind != "f":
            raise DataError(f"{path.name}:{name} has dtype {features.dtype}; region features must be floating point.")
        offsets = counts = None
        if features.ndim == 2:
            offsets = self._load(root, OFFSETS_KEY, f"{path.name}:{OFFSETS_KEY}").astype(np.int64)
            rows, total = len(offsets), int(features.shape[1 if self.transpose else 0])
            if offsets.ndim != 2 or offsets.shape[1] != 2:
                raise DataError(f"{path.name}:{OFFSETS_KEY} has shape {offsets.shape}; expected (N, 2) [start, end).")
            dim = int(features.shape[0 if self.transpose else 1])
        else:
            rows, k_stored = int(features.shape[0]), int(features.shape[2 if self.transpose else 1])
            dim = int(features.shape[1 if self.transpose else 2])
            count_name = self._pick(root, None, COUNT_KEYS)
            if count_name is not None:
                counts = self._load(root, count_name, f"{path.name}:{count_name}").astype(np.int64).reshape(-1)
                if len(counts) != rows:
                    raise DataError(f"{path.name}:{count_name} holds {len(counts)} counts for {rows} rows.")
        box_name = self._pick(root, self.box_key, BOX_KEYS)
        if self.box_key is not None and box_name is None:
            raise DataError(f"{path} has no box dataset {self.box_key!r}.")
        if box_name is not None:
            if offsets is not None:
                expected: tuple[int, ...] = (int(features.shape[1 if self.transpose else 0]), 4)
            else:
                expected = (rows, k_stored, 4)
            if tuple(root[box_name].shape) != expected:
                raise DataError(f"{path.name}:{box_name} has shape {root[box_name].shape}; expected {expected}.")
        out = []
        for key, row in sorted(self._ids(root, number, path, rows).items(), key=lambda item: item[1]):
            where = f"{path.name}:{name}[{row}] (image {key})"
            if offsets is not None:  # rows no id refers to may be empty (BAN leaves unmatched ids at [0, 0])
                start, end = (int(v) for v in offsets[row])
                if not 0 <= start < end <= total:
                    raise DataError(f"{where}: {OFFSETS_KEY} gives rows [{start}, {end}) of the {total} in {name}.")
                regions, locator = end - start, (number, name, box_name, "flat", start, end)
            else:
                regions = int(counts[row]) if counts is not None else k_stored
                if not 1 <= regions <= k_stored:
                    raise DataError(f"{where}: {regions} regions; the array holds 1 to {k_stored} per row.")
                locator = (number, name, box_name, "row", row, regions)
            out.append(Entry(key, regions, dim, box_name is not None, where, locator))
        return out

    def _scan_groups(self, root: Any, number: int, path: Path) -> list[Entry]:
        h5py = _h5py()
        out = []
        for key in root:
            where = f"{path.name}:{key}"
            try:
                item = root[key]
            except (OSError, KeyError, RuntimeError) as exc:
                raise DataError(f"{where}: cannot be read ({exc}); the file is damaged.") from None
            if isinstance(item, h5py.Group):
                name = self._pick(item, self.key, GROUP_KEYS)
                if name is None:
                    raise DataError(f"{where} is a group without a features dataset; say which with --key.")
                feats, feat_name = item[name], f"{key}/{name}"
                box_name = self._pick(item, self.box_key, BOX_KEYS)
                box_name = f"{key}/{box_name}" if box_name is not None else None
            else:
                feats, feat_name, box_name = item, key, None
            if feats.dtype.kind != "f":
                raise DataError(f"{where} has dtype {feats.dtype}; region features must be floating point.")
            regions, dim = region_shape(feats.shape, where, transpose=self.transpose)
            if box_name is not None and tuple(root[box_name].shape) != (regions, 4):
                raise DataError(f"{path.name}:{box_name} has shape {root[box_name].shape}; expected ({regions}, 4).")
            out.append(Entry(key, regions, dim, box_name is not None, where, (number, feat_name, box_name, "dataset")))
        return out

    # -- the read -------------------------------------------------------------------------------------
    def read(self, entries: Sequence[Entry]) -> Iterator[tuple[Entry, np.ndarray, np.ndarray | None]]:
        number, handle, root = -1, None, None
        block: tuple[Any, ...] = ()
        try:
            for entry in entries:
                if entry.locator[0] != number:
                    if handle is not None:
                        handle.close()
                    number = entry.locator[0]
                    handle = self._open(self.paths[number])
                    root, block = self._root(handle, self.paths[number]), ()
                features, boxes, block = self._read_one(root, entry, block)
                features = as_regions(features, entry.where, transpose=self.transpose)
                if features.shape != (entry.regions, entry.dim):
                    raise DataError(f"{entry.where}: the file changed since it was scanned; rerun the import.")
                yield entry, features, check_boxes(boxes, entry.regions, entry.where) if boxes is not None else None
        finally:
            if handle is not None:
                handle.close()

    def _read_one(self, root: Any, entry: Entry, block: tuple[Any, ...]) -> tuple[Any, Any, tuple[Any, ...]]:
        _number, name, box_name, kind, *where = entry.locator
        if kind == "dataset":
            boxes = self._load(root, box_name, entry.where) if box_name is not None else None
            return self._load(root, name, entry.where), boxes, block
        if kind == "flat":
            start, end = where
            axis = (slice(None), slice(start, end)) if self.transpose else slice(start, end)
            boxes = self._load(root, box_name, entry.where, slice(start, end)) if box_name is not None else None
            return self._load(root, name, entry.where, axis), boxes, block
        row, regions = where
        if not block or not block[0] <= row < block[1]:  # read the next rows in one call: few, large reads
            dataset = root[name]
            per_row = int(np.prod(dataset.shape[1:])) * dataset.dtype.itemsize
            end = min(dataset.shape[0], row + max(1, BLOCK_BYTES // per_row))
            feats = self._load(root, name, f"{entry.where} (rows {row}-{end - 1})", slice(row, end))
            boxes = self._load(root, box_name, entry.where, slice(row, end)) if box_name is not None else None
            block = (row, end, feats, boxes)
        start, _end, feats, boxes = block
        features = feats[row - start][:, :regions] if self.transpose else feats[row - start][:regions]
        return features, None if boxes is None else boxes[row - start][:regions], block

    def fingerprint(self) -> dict[str, Any]:
        return {
            "reader": "hdf5",
            "files": [file_stamp(p) for p in self.paths],
            "index": [file_stamp(p) for p in self.index] if self.index else None,
            "key": self.key,
            "box_key": self.box_key,
            "index_key": self.index_key,
            "group": self.group,
            "transpose": self.transpose,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "files": [p.name for p in self.paths],
            "layouts": self.layouts,
            "index": [p.name for p in self.index] if self.index else None,
            "key": self.key,
            "box_key": self.box_key,
            "group": self.group,
            "transpose": self.transpose,
        }


__all__ = ["Hdf5Source"]
