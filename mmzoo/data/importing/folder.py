"""Folders of per-image feature files: ``{image_id}.npy`` (k x D) or ``{image_id}.npz`` with a named array.

This is how many captioning and matching codebases keep bottom-up features after unpacking the TSV:
ruotianluo's ``scripts/make_bu_data.py`` writes ``cocobu_att/{id}.npz`` (array ``feat``, k x 2048) with
the boxes in ``cocobu_box/{id}.npy`` (k x 4); TERAN reads the same pair as ``bu_att`` / ``bu_box``;
bottom-up-attention's ``extract_feature_to_npz.py`` stores ``x`` (D x k, hence ``transpose``) with
``bbox`` in the same archive. The scan reads only each file's ``.npy`` header (inside the zip for
``.npz``), so 123,287 files are checked for shape and dtype in seconds.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from mmzoo._atomic import open_regular
from mmzoo.data.importing.records import Entry, FeatureSource, as_regions, check_boxes, region_shape
from mmzoo.errors import DataError

SUFFIXES = (".npy", ".npz")
#: array names tried, in order, in an ``.npz`` holding several arrays when no key is given.
DEFAULT_KEYS = ("feat", "features", "x", "arr_0")


_HEADER = re.compile(
    r"^\{'descr': *'([<>|=]?[a-zA-Z]\d*)', *'fortran_order': *(True|False), *'shape': *\(([\d, ]*)\), *\} *$"
)


def _read_header(handle: IO[bytes], where: str) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """Shape, dtype, Fortran order and data offset from an ``.npy`` header, reading only the header.

    The header numpy writes (``{'descr': '<f4', 'fortran_order': False, 'shape': (36, 2048), }``) is
    parsed with a regular expression, 20x faster than numpy's literal evaluation, which is the
    fallback for anything else; 123,287 headers are a noticeable part of a COCO import otherwise.
    """
    try:
        version = np.lib.format.read_magic(handle)
        if version in ((1, 0), (2, 0)):
            size_bytes = 2 if version == (1, 0) else 4
            length = int.from_bytes(handle.read(size_bytes), "little")
            text = handle.read(length).decode("latin1").strip()
            found = _HEADER.match(text)
            if found is not None:
                shape = tuple(int(n) for n in found.group(3).replace(" ", "").split(",") if n)
                dtype, fortran = np.dtype(found.group(1)), found.group(2) == "True"
                return _checked(shape, dtype, where), dtype, fortran, handle.tell()
            handle.seek(0)
            version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(handle)
    except (ValueError, OSError, EOFError, TypeError) as exc:
        raise DataError(f"{where}: not a readable .npy array ({exc}).") from None
    return _checked(tuple(shape), dtype, where), dtype, bool(fortran), handle.tell()


def _checked(shape: tuple[int, ...], dtype: np.dtype, where: str) -> tuple[int, ...]:
    if dtype.hasobject:
        raise DataError(f"{where}: holds Python objects (a pickled array); only numeric arrays are read.")
    return shape


class FolderSource(FeatureSource):
    """Per-image ``.npy`` / ``.npz`` files in one or more folders; the file name's stem is the image id.

    Args:
        folders: folders of feature files (not searched recursively).
        key: the array inside each ``.npz`` (``feat`` for cocobu_att, ``x`` for extract_feature_to_npz);
            None takes the only array, or the first of ``feat, features, x, arr_0``.
        boxes: a folder of ``{image_id}.npy`` box files (k x 4) beside the features (cocobu_box, bu_box).
        box_key: the box array inside each ``.npz`` (``bbox``), instead of a box folder.
        transpose: the arrays are stored D x k.

    Examples:
        >>> src = FolderSource(["data/cocobu_att"], key="feat", boxes="data/cocobu_box")  # doctest: +SKIP
    """

    sequential = False

    def __init__(
        self,
        folders: Sequence[str | Path],
        *,
        key: str | None = None,
        boxes: str | Path | None = None,
        box_key: str | None = None,
        transpose: bool = False,
    ) -> None:
        if boxes is not None and box_key is not None:
            raise DataError("Give box files either as a folder (--boxes) or as an array in each .npz (--box-key).")
        self.folders = [Path(f) for f in folders]
        for folder in self.folders:
            if not folder.is_dir():
                raise DataError(f"Feature folder {folder} not found (npy-folder sources are folders of {{id}}.npy).")
        self.key = key
        self.boxes = Path(boxes) if boxes is not None else None
        if self.boxes is not None and not self.boxes.is_dir():
            raise DataError(f"Box folder {self.boxes} not found.")
        self.box_key = box_key
        self.transpose = transpose
        self.format_name = "npy-folder"
        self._stamps: list[list[Any]] = []

    # -- the scan -------------------------------------------------------------------------------------
    def _files(self) -> list[Path]:
        files = []
        for folder in self.folders:
            try:
                with os.scandir(folder) as it:
                    named = [e for e in it if e.name.endswith(SUFFIXES)]
                found = sorted((e for e in named if _regular(e)), key=lambda e: e.name)
            except OSError as exc:  # a folder that is a link loop, unreadable, gone
                raise DataError(f"Cannot list the feature folder {folder}: {exc.strerror or exc}.") from None
            if not found:
                raise DataError(f"{folder} holds no .npy or .npz files.")
            for item in found:
                stat = item.stat()
                self._stamps.append([item.path, stat.st_size, stat.st_mtime_ns])
                files.append(Path(item.path))
        suffixes = {p.suffix for p in files}
        self.format_name = "npz-folder" if suffixes == {".npz"} else "npy-folder"
        return files

    def scan(self) -> list[Entry]:
        self._stamps = []
        entries: list[Entry] = []
        first: tuple[int, str] | None = None
        for order, path in enumerate(self._files()):
            where = f"{path.parent.name}/{path.name}"
            header = self._feature_header(path, where)
            shape, dtype = header[0], header[1]
            if dtype.kind != "f":
                raise DataError(f"{where}: features have dtype {dtype}; region features must be floating point.")
            regions, dim = region_shape(shape, where, transpose=self.transpose)
            box = self._box_header(path, regions, where)
            if first is None:
                first = (dim, where)
            elif dim != first[0]:
                raise DataError(
                    f"Mixed feature sizes: {first[1]} has D = {first[0]} but {where} has D = {dim}. Features of "
                    "different extractors cannot share a dataset."
                )
            has_boxes = self.boxes is not None or self.box_key is not None
            raw = (path, *header) if path.suffix == ".npy" else None  # read again without parsing the header
            entries.append(Entry(path.stem, regions, dim, has_boxes, where, (path, raw, box), order))
        return entries

    @staticmethod
    def _member(names: Sequence[str], key: str | None, where: str) -> str:
        """The array to read from an archive holding ``names``."""
        if key is not None:
            if key not in names:
                raise DataError(f"{where} has no array {key!r}; it holds {', '.join(names) or 'none'}.")
            return key
        if len(names) == 1:
            return names[0]
        for name in DEFAULT_KEYS:
            if name in names:
                return name
        raise DataError(f"{where} holds arrays {', '.join(names)}: say which one with --key.")

    def _feature_header(self, path: Path, where: str) -> tuple[tuple[int, ...], np.dtype, bool, int]:
        if path.suffix == ".npy":
            if self.box_key is not None:
                raise DataError(f"{where}: --box-key reads boxes inside .npz files; use --boxes DIR for .npy files.")
            try:
                with os.fdopen(open_regular(path, follow=True), "rb") as handle:
                    return _read_header(handle, where)
            except OSError as exc:
                raise DataError(f"Cannot read {where}: {exc}") from None
        try:
            with zipfile.ZipFile(path) as archive:
                names = [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
                name = self._member(names, self.key, where)
                with archive.open(f"{name}.npy") as handle:
                    header = _read_header(handle, f"{where}[{name}]")
                if self.box_key is not None:
                    self._member(names, self.box_key, where)
                    with archive.open(f"{self.box_key}.npy") as handle:
                        shape = _read_header(handle, f"{where}[{self.box_key}]")[0]
                    regions, _dim = region_shape(header[0], where, transpose=self.transpose)
                    if tuple(shape) != (regions, 4):
                        raise DataError(
                            f"{where}[{self.box_key}]: boxes have shape {tuple(shape)}; the features have "
                            f"{regions} regions."
                        )
                return header
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise DataError(f"Cannot read {where} as an .npz archive: {exc}") from None

    def _box_header(self, path: Path, regions: int, where: str) -> tuple[Any, ...] | None:
        """The box file beside a feature file (``--boxes DIR``) with its header, shape checked; None without."""
        if self.boxes is None:
            return None
        box_path = self.boxes / f"{path.stem}.npy"
        if not box_path.is_file():
            raise DataError(f"{where} has no box file {box_path} (every image needs one when --boxes is given).")
        try:
            with os.fdopen(open_regular(box_path, follow=True), "rb") as handle:
                header = _read_header(handle, str(box_path))
        except OSError as exc:
            raise DataError(f"Cannot read {box_path}: {exc}") from None
        if tuple(header[0]) != (regions, 4):
            raise DataError(f"{box_path}: boxes have shape {tuple(header[0])}; the features have {regions} regions.")
        return (box_path, *header)

    # -- the read -------------------------------------------------------------------------------------
    def read(self, entries: Sequence[Entry]) -> Iterator[tuple[Entry, np.ndarray, np.ndarray | None]]:
        for entry in entries:
            path, raw, box = entry.locator
            features, boxes = self._load(path, entry.where) if raw is None else (_read_raw(raw, entry.where), None)
            if box is not None:
                boxes = _read_raw(box, str(box[0]))
            features = as_regions(features, entry.where, transpose=self.transpose)
            if features.shape != (entry.regions, entry.dim):
                raise DataError(f"{entry.where}: the file changed since it was scanned; rerun the import.")
            if boxes is not None:
                boxes = check_boxes(boxes, entry.regions, entry.where)
            yield entry, features, boxes

    def _load(self, path: Path, where: str) -> tuple[np.ndarray, np.ndarray | None]:
        try:
            with np.load(path, allow_pickle=False) as archive:
                features = archive[self._member(archive.files, self.key, where)]
                boxes = archive[self.box_key] if self.box_key is not None else None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
            raise DataError(f"Cannot read {where}: {exc}") from None
        return features, boxes

    def fingerprint(self) -> dict[str, Any]:
        if not self._stamps:
            self._files()
        digest = _digest(self._stamps)
        return {
            "reader": "folder",
            "folders": [str(f.resolve()) for f in self.folders],
            "files": len(self._stamps),
            "stamps_sha256": digest,
            "key": self.key,
            "boxes": str(self.boxes.resolve()) if self.boxes else None,
            "box_key": self.box_key,
            "transpose": self.transpose,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "folders": [f.name for f in self.folders],
            "files": len(self._stamps),
            "key": self.key,
            "boxes": self.boxes.name if self.boxes else None,
            "box_key": self.box_key,
            "transpose": self.transpose,
        }


def _regular(entry: os.DirEntry) -> bool:
    """Whether a folder entry is a regular file (or a link to one): a FIFO or a device is skipped (opening one can
    block forever); a link loop is a DataError naming it."""
    try:
        return entry.is_file()
    except OSError as exc:
        raise DataError(f"{entry.path} cannot be read: {exc.strerror or exc} (a symbolic link loop?).") from None


def _read_raw(raw: tuple[Any, ...], where: str) -> np.ndarray:
    """The array of an ``.npy`` file whose header the scan read: (path, shape, dtype, fortran, offset)."""
    path, shape, dtype, fortran, offset = raw
    count = int(np.prod(shape, dtype=np.int64))
    try:
        data = np.fromfile(path, dtype=dtype, count=count, offset=offset)
    except (OSError, ValueError) as exc:
        raise DataError(f"Cannot read {where}: {exc}") from None
    if data.size != count:
        raise DataError(f"{where}: the file holds {data.size} of its {count} values: truncated.")
    return data.reshape(shape[::-1]).T if fortran else data.reshape(shape)


def _digest(stamps: list[list[Any]]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(stamps).encode("utf-8")).hexdigest()


__all__ = ["DEFAULT_KEYS", "FolderSource"]
