"""The streaming, resumable writer of an import: padded feature rows into ``.npy`` files, row by row.

The file names, the caption writer and the replace policy are the ``precomp`` layout's
(:data:`mmzoo.data.layout.PRECOMP`).

Files of a split, in the precomputed layout (``docs/data.md``)::

    {split}_ims.npy     (N, k_max, D) float32, rows past an image's count are zero
    {split}_counts.npy  (N,) int64 regions per image
    {split}_boxes.npy   (N, k_max, 4) float32, when the source has boxes
    {split}_ids.txt     the source's image id of each row
    {split}_caps.txt    captions_per_image lines per image

Each array is created at its full size with its ``.npy`` header (``np.lib.format.open_memmap``), under
the name ``NAME.partial``; rows are then written at their offsets (``os.pwrite``), so memory holds one
row at a time whatever the input size, and a row can arrive in any order (TSV shards are shuffled).
Every ``checkpoint_bytes`` the files are fsync'ed and the marker ``.mmzoo-import.json`` records how
many work items are done; a killed import rerun with the same sources and settings continues from
there, rewriting at most the rows after the last checkpoint with the same bytes. Nothing is
accumulated, so a resumed import gives the same files as one uninterrupted run.

When every row is in, the text files are written, every file is hashed (sha256, recorded in the
marker), and the ``.partial`` names are renamed to the final ones, ``{split}_ims.npy`` last: a split
looks complete (``{split}_ims.npy`` beside ``{split}_caps.txt``) only once it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmzoo._atomic import (
    atomic_write_json,
    atomic_write_text,
    create_npy,
    is_storage_error,
    open_regular,
    replace,
    storage_error,
    writable_dir,
)
from mmzoo.data.layout import IMPORT_MARKER, PARTIAL, PRECOMP
from mmzoo.data.manifest import MANIFEST_NAME, DataManifest, write_manifest
from mmzoo.errors import DataError

logger = logging.getLogger(__name__)

MARKER_NAME = IMPORT_MARKER
#: the files of a split an import writes, in the order they are renamed into place (the features last).
KINDS = ("boxes", "counts", "ids", "caps", "ims")


def split_file(split: str, kind: str) -> str:
    """File name of one of a split's files (``train_ims.npy``, ``dev_caps.txt``, ...): the layout's."""
    return PRECOMP.name(split, kind)


@dataclass(frozen=True)
class Layout:
    """The shape of the output: images per split, padded regions k_max, feature size D, boxes or not."""

    splits: dict[str, int]
    regions: int
    dim: int
    boxes: bool

    def kinds(self) -> tuple[str, ...]:
        return KINDS if self.boxes else tuple(k for k in KINDS if k != "boxes")

    def files(self) -> list[str]:
        return [split_file(split, kind) for split in self.splits for kind in self.kinds()]


def _normalised(data: Any) -> Any:
    """JSON round trip, so a fingerprint compares equal to the one read back from the marker."""
    return json.loads(json.dumps(data, sort_keys=True))


def sha256_file(path: Path, chunk: int = 8 * 2**20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class _Hasher:
    """sha256 updates on a worker thread (hashlib releases the GIL), so hashing overlaps reading and writing.

    The queue is bounded: at most ``depth`` rows wait, whatever the input size.
    """

    def __init__(self, depth: int = 16) -> None:
        self._queue: queue.Queue[tuple[Any, Any] | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="mmzoo-import-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            digest, data = item
            digest.update(data)

    def update(self, digest: Any, data: Any) -> None:
        self._queue.put((digest, data))

    def close(self) -> None:
        """Wait until every queued update is done."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class _RowFile:
    """An ``.npy`` file of shape (N, ...) created at full size; rows written at their byte offsets.

    While rows arrive in order (0, 1, 2, ...: sources read in output order), the file's sha256 is
    computed on the way, padding included, so it need not be read back; any other order (a TSV's
    shuffled rows, a resumed import) drops it and the file is hashed when complete.
    """

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple[int, ...], *, create: bool, hasher: _Hasher) -> None:
        self.path, self.dtype, self.shape = path, np.dtype(dtype), shape
        if create:
            try:  # a fresh file, never through a link planted at the name; sparse zeros until rows arrive
                create_npy(path, self.dtype, shape)
            except OSError as exc:  # a full disk or a file-size limit (ulimit -f): nothing half-created stays
                if not path.is_symlink():
                    path.unlink(missing_ok=True)
                raise (storage_error(exc, path, "feature file") if is_storage_error(exc) else exc) from None
        elif not path.is_file() or path.is_symlink():
            raise DataError(
                f"{path} is missing or not a regular file (a link?): the unfinished import cannot continue; "
                "rerun with --overwrite."
            )
        with os.fdopen(open_regular(path), "rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            stored_shape, _fortran, stored_dtype = reader(handle)
            self.offset = handle.tell()
            handle.seek(0)
            header = handle.read(self.offset)
        if tuple(stored_shape) != tuple(shape) or stored_dtype != self.dtype:
            raise DataError(f"{path} holds {stored_shape} {stored_dtype}, not {shape} {self.dtype}; use --overwrite.")
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.fd = open_regular(path, os.O_RDWR)
        self._hasher = hasher
        self._digest: Any = hashlib.sha256(header) if create else None
        self._next_row = 0
        self._zeros = b""

    def write(self, row: int, values: np.ndarray) -> None:
        """Write the leading part of row ``row`` (the rest keeps its zeros)."""
        data = memoryview(np.ascontiguousarray(values, dtype=self.dtype)).cast("B")
        try:
            os.pwrite(self.fd, data, self.offset + row * self.row_bytes)
        except OSError as exc:
            raise (storage_error(exc, self.path) if is_storage_error(exc) else exc) from None
        if self._digest is None:
            return
        if row != self._next_row:
            self._digest = None
            return
        self._hasher.update(self._digest, data)
        if len(data) < self.row_bytes:
            if len(self._zeros) != self.row_bytes:
                self._zeros = bytes(self.row_bytes)
            self._hasher.update(self._digest, memoryview(self._zeros)[: self.row_bytes - len(data)])
        self._next_row += 1

    def sha256(self) -> str:
        """The file's digest: the one computed on the way when every row came in order, else read back."""
        self._hasher.close()
        if self._digest is not None and self._next_row == self.shape[0]:
            return self._digest.hexdigest()
        return sha256_file(self.path)

    def read_all(self) -> np.ndarray:
        return np.load(self.path, mmap_mode="r", allow_pickle=False)

    def sync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise (storage_error(exc, self.path) if is_storage_error(exc) else exc) from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class ImportWriter:
    """Writes one import's splits into ``out``, resumably (see the module docstring).

    Args:
        out: the output folder (created).
        layout: the output's shape.
        fingerprint: what identifies the sources and settings; a resume must match it exactly.
        overwrite: replace an existing dataset or an unfinished import of other settings.
    """

    def __init__(self, out: str | Path, layout: Layout, fingerprint: dict[str, Any], *, overwrite: bool = False):
        self.out = Path(out)
        self.layout = layout
        self.fingerprint = _normalised(fingerprint)
        self.digest = hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()
        self.overwrite = overwrite
        self.marker = self.out / MARKER_NAME
        self.done = 0
        self.stage = "writing"
        self.sha256: dict[str, str] = {}
        self._files: dict[tuple[str, str], _RowFile] = {}
        self._hasher = _Hasher()
        self._syncer: threading.Thread | None = None
        self._sync_error: BaseException | None = None

    # -- starting or resuming ------------------------------------------------------------------------
    def start(self) -> str:
        """Open the output: ``"new"``, ``"resumed"`` or ``"complete"`` (the same import was finished before)."""
        writable_dir(self.out, "dataset folder")
        state = self._read_marker()
        if state is not None:
            if self._same(state):
                self.done, self.stage = int(state["done"]), state["stage"]
                self.sha256 = dict(state.get("sha256") or {})
                if self.stage == "writing":
                    self._open_files(create=False)
                logger.info("Resuming the import in %s at item %d (%s).", self.out, self.done, self.stage)
                return "resumed"
            if not self.overwrite:
                raise DataError(
                    f"{self.out} holds an unfinished import of other sources or settings ({self.marker.name}). "
                    "Rerun the command that started it to finish it, or pass --overwrite to start again."
                )
            self._clean(state)
        elif (self.out / MANIFEST_NAME).is_file() or self._existing():
            manifest = self._read_json(self.out / MANIFEST_NAME)
            if manifest.get("import_fingerprint") == self.digest and not self.overwrite and not self._missing():
                return "complete"
            if not self.overwrite:
                raise DataError(
                    f"{self.out} already holds a dataset ({', '.join(self._existing()[:3]) or MANIFEST_NAME}); "
                    "pass --overwrite to replace it, or choose another --out."
                )
            self._clean(manifest)
        try:
            self._open_files(create=True)
        except BaseException:  # e.g. the disk refused one of the files: none of them stays half-made
            for handle in self._files.values():
                handle.close()
                handle.path.unlink(missing_ok=True)
            self._files.clear()
            raise
        self._write_marker()
        return "new"

    def _read_json(self, path: Path) -> dict[str, Any]:
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _read_marker(self) -> dict[str, Any] | None:
        if not self.marker.is_file():
            return None
        state = self._read_json(self.marker)
        return state or {"layout": None, "fingerprint": None}

    def _same(self, state: dict[str, Any]) -> bool:
        return state.get("fingerprint") == self.fingerprint and state.get("layout") == _normalised(asdict(self.layout))

    def _existing(self) -> list[str]:
        return [name for name in self.layout.files() if (self.out / name).exists()]

    def _missing(self) -> list[str]:
        return [name for name in self.layout.files() if not (self.out / name).is_file()]

    def _clean(self, previous: dict[str, Any]) -> None:
        """Remove what this import would write and the dataset now in the folder (the layout's replace policy:
        every split file of the previous import's marker or manifest, or found by name)."""
        names = set(self.layout.files()) | PRECOMP.dataset_files(self.out)
        old_splits = (previous.get("layout") or {}).get("splits") or previous.get("splits") or {}
        for split in old_splits:
            names.update(split_file(split, kind) for kind in KINDS)
        for name in sorted(names):
            for path in (self.out / name, self.out / (name + PARTIAL)):
                path.unlink(missing_ok=True)
        (self.out / MANIFEST_NAME).unlink(missing_ok=True)
        self.marker.unlink(missing_ok=True)

    def _open_files(self, *, create: bool) -> None:
        n, k, d = self.layout.splits, self.layout.regions, self.layout.dim
        for split, rows in n.items():
            shapes = {"ims": (np.float32, (rows, k, d)), "counts": (np.int64, (rows,))}
            if self.layout.boxes:
                shapes["boxes"] = (np.float32, (rows, k, 4))
            for kind, (dtype, shape) in shapes.items():
                path = self.out / (split_file(split, kind) + PARTIAL)
                self._files[(split, kind)] = _RowFile(path, dtype, shape, create=create, hasher=self._hasher)

    def _marker_state(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "done": self.done,
            "layout": asdict(self.layout),
            "fingerprint": self.fingerprint,
            "sha256": dict(self.sha256),
        }

    def _write_marker(self) -> None:
        atomic_write_json(self.marker, self._marker_state())

    # -- writing ------------------------------------------------------------------------------------
    def put(self, split: str, row: int, features: np.ndarray, boxes: np.ndarray | None) -> None:
        """Write one image: its (k, D) features, its count and (k, 4) boxes, at ``row`` of ``split``."""
        self._files[(split, "ims")].write(row, features)
        self._files[(split, "counts")].write(row, np.array([len(features)], dtype=np.int64))
        if self.layout.boxes:
            self._files[(split, "boxes")].write(row, boxes)

    def checkpoint(self, done: int, *, wait: bool = False) -> None:
        """Make everything written so far durable, then record that ``done`` work items are in.

        The fsyncs and the marker run on a thread while the next rows are read and written (the disk
        works while the CPU decodes); rows written meanwhile are flushed too, which does no harm: the
        marker only ever claims rows that are on disk. At most one checkpoint is in flight.
        """
        self._wait_sync()
        self.done = done
        state = self._marker_state()

        def sync() -> None:
            try:
                for handle in self._files.values():
                    handle.sync()
                atomic_write_json(self.marker, state)
            except BaseException as exc:  # reported by the next checkpoint, finish or close
                self._sync_error = exc

        self._syncer = threading.Thread(target=sync, name="mmzoo-import-sync", daemon=True)
        self._syncer.start()
        if wait:
            self._wait_sync()

    def _wait_sync(self) -> None:
        if self._syncer is not None:
            self._syncer.join()
            self._syncer = None
        if self._sync_error is not None:
            error, self._sync_error = self._sync_error, None
            raise error

    # -- finishing ----------------------------------------------------------------------------------
    def finish(self, texts: dict[str, tuple[list[str], list[str]]]) -> dict[str, str]:
        """Write captions and ids, hash every file and rename the split files into place.

        Args:
            texts: split -> (caption lines, id lines).

        Returns:
            file name -> sha256 of every file of every split.
        """
        self._wait_sync()
        if self.stage == "writing":
            self._check_complete()
            for split, (captions, ids) in texts.items():
                PRECOMP.write_captions(self.out, split, captions, suffix=PARTIAL)
                atomic_write_text(self.out / (split_file(split, "ids") + PARTIAL), "\n".join(ids) + "\n")
            digests = {}
            for (split, kind), handle in self._files.items():
                handle.sync()
                handle.close()
                digests[split_file(split, kind)] = handle.sha256()
            self.sha256 = {
                name: digests.get(name) or sha256_file(self.out / (name + PARTIAL)) for name in self.layout.files()
            }
            self.stage = "finishing"
            self._write_marker()
        for split in self.layout.splits:
            for kind in self.layout.kinds():  # the features last: a split looks complete only when it is
                name = split_file(split, kind)
                partial = self.out / (name + PARTIAL)
                if partial.exists():
                    replace(partial, self.out / name)
                elif not (self.out / name).is_file():
                    raise DataError(f"{self.out / name} vanished while the import finished; rerun with --overwrite.")
        return dict(self.sha256)

    def _check_complete(self) -> None:
        for split in self.layout.splits:
            counts = self._files[(split, "counts")].read_all()
            unwritten = np.flatnonzero(np.asarray(counts) == 0)
            if len(unwritten):
                raise DataError(
                    f"Split {split!r}: {len(unwritten)} rows were never written (first row {int(unwritten[0])}); "
                    "the import is incomplete. Rerun it (or use --overwrite)."
                )

    def complete(self, manifest: DataManifest) -> DataManifest:
        """Write the manifest (with this import's fingerprint digest), remove the marker; return the manifest."""
        manifest = DataManifest.model_validate({**manifest.to_json(), "import_fingerprint": self.digest})
        write_manifest(self.out, manifest)
        self.marker.unlink(missing_ok=True)
        ours = {MARKER_NAME, MANIFEST_NAME, *(name + PARTIAL for name in self.layout.files())}
        for stray in self.out.glob(".*.tmp*"):  # temporary files of writes a kill interrupted
            if stray.name[1:].rsplit(".tmp", 1)[0] in ours:
                stray.unlink(missing_ok=True)
        return manifest

    def close(self) -> None:
        if self._syncer is not None:
            self._syncer.join()
            self._syncer = None
        self._hasher.close()
        for handle in self._files.values():
            handle.close()


__all__ = ["KINDS", "MARKER_NAME", "ImportWriter", "Layout", "sha256_file", "split_file"]
