"""Crash-safe writes (a file or a whole folder appears complete or not at all), and reading back the JSON files
mmzoo writes with an error of the caller's kind.

Files are written to a temporary name in the same folder, flushed and fsync'ed, then renamed over the
target (``os.replace`` is atomic on POSIX and Windows). Folders are written under a temporary name and
swapped in with two renames: ``NAME -> .NAME.old``, ``.NAME.tmp -> NAME``. A process killed between the
two renames leaves ``.NAME.old`` and no ``NAME``. Readers never change anything: :func:`read_folder` holds a
shared lock on the parent folder while they read and gives them ``NAME``, or ``.NAME.old`` after such a
crash; the swap holds the exclusive lock, so a reader sees the version before or the version after, never half
of one. Only writers repair (:func:`recover_folder`). Where no lock can be taken (no ``fcntl`` on Windows, a
file system without ``flock``) reading goes on without it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mmzoo.errors import StorageError

#: OS errors that mean "this cannot be written here", reported as a StorageError that says what to do.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


#: ``open`` flags that never follow a link at the last component (0 where the platform has none).
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FRESH_FLAGS = os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def remove_entry(path: str | Path) -> None:
    """Remove whatever is at ``path`` without following a link: a link or a file is unlinked (never its target),
    a real folder removed with its contents; nothing there is fine."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def open_fresh(path: str | Path, mode: str = "wb") -> Any:
    """Open a new regular file at ``path`` for writing; every file mmzoo writes is created here.

    Whatever is at ``path`` already (an earlier file, a link someone planted, a FIFO) is unlinked first, never
    followed, and the file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW``: a link put there in between is an
    error, never a write into its target (the way git writes objects). A real folder at ``path`` is a
    :class:`StorageError`. ``mode`` is ``"wb"``, ``"w+b"`` or a text mode (``"w"``, UTF-8).

    Example:
        >>> with open_fresh(out / "train_twins.npy") as handle:  # doctest: +SKIP
        ...     np.save(handle, twins)
    """
    path = Path(path)
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            raise StorageError(f"Cannot write the file {path}: a folder is there. Remove it or choose another path.")
        os.unlink(path)
    except FileNotFoundError:
        pass
    flags = _FRESH_FLAGS | (os.O_RDWR if "+" in mode else os.O_WRONLY)
    try:
        fd = os.open(path, flags, 0o666)
    except FileExistsError:
        raise StorageError(
            f"Cannot write the file {path}: something else created it while mmzoo was writing it (another process "
            "writing the same output?). Nothing was written through it; rerun once the other writer is done."
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StorageError(
                f"Cannot write the file {path}: a link was put in its place; nothing was written."
            ) from None
        raise
    if "b" in mode:
        return os.fdopen(fd, mode)
    return os.fdopen(fd, mode, encoding="utf-8", newline="")


def open_regular(path: str | Path, flags: int = os.O_RDONLY, *, follow: bool = False) -> int:
    """A descriptor of the regular file at ``path``; ``OSError`` (``ELOOP`` or ``EINVAL``) for anything else.

    A FIFO or a device is refused without blocking (``O_NONBLOCK`` for the open, then blocking again): opening one
    for reading would wait forever for a writer. ``follow=False`` (for writes) also refuses a link at ``path``;
    readers pass ``follow=True`` (a dataset folder of links to the real files is common).
    """
    extra = (0 if follow else _NOFOLLOW) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags | extra | getattr(os, "O_BINARY", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file (a FIFO, a device or a folder)", str(path))
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return fd


def create_npy(path: str | Path, dtype: Any, shape: tuple[int, ...]) -> int:
    """Create a fresh ``.npy`` file (:func:`open_fresh`) of ``shape`` and ``dtype`` at full size, zero-filled
    (sparse), and return the byte offset of its data; ``np.lib.format.open_memmap(path, mode="r+")`` maps it.
    ``np.lib.format.open_memmap(mode="w+")`` would follow a link at ``path``."""
    import numpy as np

    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    with open_fresh(path, "wb") as handle:
        try:
            np.lib.format.write_array_header_1_0(handle, header)
        except ValueError:  # a header over 64 KiB (a very long shape): version 2.0
            handle.seek(0)
            np.lib.format.write_array_header_2_0(handle, header)
        offset = handle.tell()
        handle.truncate(offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
    return offset


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (renames into it) to disk; best effort where folders cannot be opened."""
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders; rename durability is best effort there
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json_object(path: str | Path, error: type[Exception], hint: str) -> dict[str, Any]:
    """A JSON file holding one object; ``error(...)`` (an mmzoo error class) naming the file and ``hint`` if not."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise error(f"{path} is not readable JSON ({exc}); {hint}") from None
    if not isinstance(data, dict):
        raise error(f"{path} must hold a JSON object, not {type(data).__name__}; {hint}")
    return data


def read_json_lines(path: str | Path, error: type[Exception], hint: str) -> list[dict[str, Any]]:
    """One JSON object per non-empty line; ``error(...)`` naming the file and the line if one is not."""
    path = Path(path)
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise error(f"{path} line {number} is not JSON ({exc}); {hint}") from None
        if not isinstance(record, dict):
            raise error(f"{path} line {number} is not a JSON object; {hint}")
        records.append(record)
    return records


def writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """Create ``path`` if needed and make sure files can be written in it, before any long work starts."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StorageError(f"The {what} {path} is a file, not a folder: choose another path.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".mmzoo-write-check-"):
            pass
    except OSError as exc:
        raise storage_error(exc, path, what) from None
    return path


def writable_file(path: str | Path, what: str = "output file") -> Path:
    """Make sure ``path`` can be written (its folder exists or can be made, and it is not a folder)."""
    path = Path(path)
    if path.is_dir():
        raise StorageError(f"The {what} {path} is a folder; give a file name.")
    writable_dir(path.parent if str(path.parent) else Path("."), f"folder of the {what}")
    return path


def storage_error(exc: OSError | RuntimeError, path: str | Path, what: str = "file") -> StorageError:
    """An error while writing, as a StorageError that names the path and what to do."""
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
        errno.EFBIG: "the file exceeds the file-size limit",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission is denied",
        errno.EPERM: "the operation is not permitted",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
    }
    if isinstance(exc, OSError):
        reason = reasons.get(exc.errno, exc.strerror or str(exc))
    else:  # torch's zip writer: "PytorchStreamWriter failed writing file ..."
        reason = f"the writer failed ({str(exc).splitlines()[0][:200]}), usually a full disk or a file-size limit"
    return StorageError(
        f"Cannot write the {what} {path}: {reason}. Free space or choose a writable place; nothing "
        "complete was replaced."
    )


#: how torch's zip writer reports a write the disk refused (a full disk, a quota, ``ulimit -f``): it checks the
#: position after each record ("unexpected pos 576 vs 534"), or its stream fails.
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter", "file write failed", "unexpected pos", "iostream error")


def is_storage_error(exc: BaseException) -> bool:
    """An OSError that means the disk refused the write (torch's writer reports those as RuntimeError)."""
    if isinstance(exc, OSError):
        return exc.errno in _STORAGE_ERRNOS
    return isinstance(exc, RuntimeError) and any(sign in str(exc) for sign in _TORCH_WRITE_FAILURES)


def replace(tmp: str | Path, path: str | Path) -> Path:
    """Move a fully written ``tmp`` over ``path`` (flushed to disk first): readers see the old or the new file."""
    tmp, path = Path(tmp), Path(path)
    try:
        fd = open_regular(tmp)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EINVAL):
            raise StorageError(
                f"{tmp} is not a regular file mmzoo wrote (a link?); it is not moved into place."
            ) from None
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that a reader sees the old or the new content, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open_fresh(tmp) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=indent) + "\n")


def fsync_tree(folder: Path) -> None:
    """Flush every file below ``folder`` (and the folders themselves) to disk."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                fd = open_regular(Path(root) / name)
            except OSError:  # a link or a special file: nothing of ours to flush
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))


@contextmanager
def folder_lock(path: str | Path, exclusive: bool) -> Iterator[None]:
    """Hold the shared (readers) or exclusive (a swap) lock of the folder ``path``: an advisory lock on its parent
    folder, so no lock file is ever left behind; without a lock where the platform or file system has none."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; swaps are still atomic per rename
        yield
        return
    try:
        fd = os.open(Path(path).parent, os.O_RDONLY)
    except OSError:  # a missing parent: there is nothing to read or swap yet
        yield
        return
    try:
        with contextlib.suppress(OSError):  # a file system without flock (some network mounts)
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def readable_folder(path: str | Path) -> Path:
    """The complete version of the folder ``path``: ``NAME``, or ``.NAME.old`` when a swap was cut between its
    renames; ``path`` itself when neither exists (the caller reports it). Changes nothing."""
    path = Path(path)
    old = path.with_name(f".{path.name}.old")
    return old if not path.exists() and old.is_dir() else path


@contextmanager
def read_folder(path: str | Path) -> Iterator[Path]:
    """Read the folder ``path`` with no swap in between: yields :func:`readable_folder` under the shared lock.

    Examples:
        >>> with read_folder(run_dir / "best") as folder:  # doctest: +SKIP
        ...     config = json.loads((folder / "config.json").read_text())
    """
    with folder_lock(path, exclusive=False):
        yield readable_folder(path)


def recover_folder(path: str | Path) -> Path:
    """For writers: finish an interrupted swap (``.NAME.old`` back when ``NAME`` is missing, else removed)."""
    path = Path(path)
    old = path.with_name(f".{path.name}.old")
    with folder_lock(path, exclusive=True):
        if not path.exists() and old.exists():
            os.replace(old, path)
            _fsync_dir(path.parent)
        elif path.exists() and old.exists():
            shutil.rmtree(old, ignore_errors=True)
    return path


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it replaces ``path`` as a whole (one writer per folder).

    Examples:
        >>> with atomic_folder(run_dir / "last") as tmp:  # doctest: +SKIP
        ...     model.save_pretrained(tmp)
    """
    path = Path(path)
    recover_folder(path)
    tmp = path.with_name(f".{path.name}.tmp")
    remove_entry(tmp)  # leftover of a killed writer (or a planted link): never trusted, never followed
    tmp.mkdir(parents=True)
    try:
        yield tmp
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.old")
    with folder_lock(path, exclusive=True):
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)


__all__ = [
    "atomic_folder",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "create_npy",
    "folder_lock",
    "fsync_dir",
    "fsync_tree",
    "open_fresh",
    "open_regular",
    "read_folder",
    "read_json_lines",
    "read_json_object",
    "readable_folder",
    "recover_folder",
    "remove_entry",
    "replace",
]
