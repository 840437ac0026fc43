"""A training run's own logic on top of its folder: the RunSpec of ``run.json``, the data fingerprint.

The folder's names and readers (``run.json``, ``metrics.jsonl``, ``best/``, a clean start) have their one home
below the hub, :mod:`mmzoo.checkpoint.rundir`; this module re-exports them for the trainer. ``run.json``
records what is trained on what (the resolved configs, the data path and a fingerprint of the data's files, so
that ``--resume`` on changed data warns). The trainer holds the folder's lock (:class:`RunLock`) for its
lifetime, and a resume checks that ``run.json`` and ``metrics.jsonl`` agree with the checkpoint.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

from mmzoo._atomic import read_folder, read_json_object
from mmzoo.checkpoint.rundir import (
    METRICS_NAME,
    RUN_NAME,
    clean_start,
    read_metrics,
    read_run_document,
    write_metrics,
)
from mmzoo.data.door import split_files
from mmzoo.errors import CheckpointError, ConfigError, MMZooWarning
from mmzoo.training.runspec import RunSpec
from mmzoo.training.state import TrainingState

logger = logging.getLogger(__name__)

#: the run folder's lock file: held (flock) by the trainer that writes the folder, its pid inside.
LOCK_NAME = ".lock"
_SAMPLES = 8  # chunks read from inside each feature file for its fingerprint
_CHUNK = 1 << 16
#: suffixes of files digested whole (captions, JSON lines): an edit of the same size is found anywhere.
_TEXT = frozenset({".txt", ".jsonl"})


def read_run(run_dir: str | Path) -> RunSpec:
    """The RunSpec ``run.json`` records; a CheckpointError when the file is missing or not mmzoo's."""
    path = Path(run_dir) / RUN_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {run_dir} is not an mmzoo training run.")
    data = read_run_document(run_dir, CheckpointError)
    try:
        return RunSpec.from_dict(data)
    except ConfigError as exc:
        raise CheckpointError(f"{path} does not describe a run mmzoo can continue: {exc}") from None


class RunLock:
    """The advisory lock of a run folder, held for the lifetime of the one trainer that writes it.

    ``RUN/.lock`` is locked with ``flock`` (the kernel drops the lock when the process dies, however it dies, so a
    crash never leaves the folder locked) and holds the holder's pid, which a refused trainer names. Where
    ``flock`` is missing (Windows, some network file systems) the file alone is the lock: created with ``O_EXCL``,
    it is taken over when the pid written in it is no longer running (a stale lock), and refused otherwise. Like
    pip's and huggingface_hub's file locks, the file is removed on release and a lock taken on a file that was
    removed meanwhile is retried.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # Windows
            return self._acquire_pid_file()
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(100):
            if self.path.is_symlink():  # our name; a link there is removed, never followed
                self.path.unlink()
            fd = os.open(self.path, flags, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._refused(self._holder()) from None
            except OSError as exc:  # no flock on this file system: the pid file alone
                os.close(fd)
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    return self._acquire_pid_file()
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.lstat(self.path))
            except FileNotFoundError:
                same = False
            if not same:  # the holder released (removed the file) between our open and our lock: again
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return self
        raise CheckpointError(f"Could not lock {self.path}: it keeps being replaced; is something else writing there?")

    def _acquire_pid_file(self) -> RunLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pid = self._holder()
                if pid is not None and _running(pid):
                    raise self._refused(pid) from None
                logger.warning("%s: removing a stale lock of process %s, which is no longer running", self.path, pid)
                self.path.unlink(missing_ok=True)
                continue
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return self
        raise self._refused(self._holder())

    def _holder(self) -> int | None:
        try:
            return int(self.path.read_text(encoding="utf-8").split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _refused(self, pid: int | None) -> ConfigError:
        who = f"process {pid}" if pid is not None else "another process"
        return ConfigError(
            f"{self.run_dir} is being trained by {who} (it holds {self.path}); two trainers in one run folder would "
            "interleave their epochs and checkpoints. Wait for it to finish (or stop it), or pick another --out."
        )

    def release(self) -> None:
        """Give the lock up (also what the kernel does when the process dies)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink(missing_ok=True)  # before the unlock: a waiting locker then sees another file and retries
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by another user
        return True
    except OSError:
        return True
    return True


def lock_run(run_dir: str | Path) -> RunLock:
    """Lock ``run_dir`` for one trainer; a ConfigError naming the holder's pid when another trainer holds it."""
    return RunLock(run_dir).acquire()


#: training settings a resumed run may change: how long it trains, where, and how it reads and evaluates.
RESUMABLE = frozenset({"epochs", "device", "num_workers", "eval_batch_size", "dev_eval", "dev_rerank", "dev_subset"})


def check_run_folder(run_dir: Path) -> None:
    """``best`` and ``last`` are folders mmzoo writes; a file there (moved or made by hand) is named, with what to
    do, instead of the circular "it holds a run" / "it has no checkpoint" advice."""
    for name in ("last", "best"):
        path = run_dir / name
        if path.exists() and not path.is_dir():
            raise CheckpointError(
                f"{path} is a file where mmzoo keeps the {name} checkpoint folder (mmzoo never writes a file there). "
                f"Move it away; then {'--resume continues from .last.old if it exists, or ' if name == 'last' else ''}"
                "start a new run with another --out."
            )


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(saved) | set(current), key=str):
            found += _differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return found
    return [] if saved == current else [f"{prefix.rstrip('.')}: {saved!r} in the checkpoint, {current!r} in run.json"]


def check_resume(run_dir: Path, spec: RunSpec, last: Path, state: TrainingState) -> None:
    """Refuse to resume when ``run.json`` was edited since the checkpoint: the model must be the checkpoint's
    (it is what resumes; an edited ``embed_dim`` would be ignored) and the training settings the ones it was
    trained with (an edited ``lr`` would be ignored, an edited ``batch_size`` applied), except :data:`RESUMABLE`."""
    with read_folder(last) as folder:
        document = read_json_object(folder / "config.json", CheckpointError, "it was not written by mmzoo train")
    found = [f"model.{d}" for d in _differences(document.get("model"), spec.model)]
    current = spec.training.to_dict()
    if state.training:
        saved = {k: v for k, v in state.training.items() if k not in RESUMABLE}
        found += [f"training.{d}" for d in _differences(saved, {k: current.get(k) for k in saved})]
    else:  # a checkpoint of an mmzoo that did not record its settings: the learning rate is in the optimizer
        groups = [g for g in state.optimizer.get("param_groups", []) if g.get("lr_multiplier", 1.0) == 1.0]
        if groups and "initial_lr" in groups[0] and not math.isclose(groups[0]["initial_lr"], current["lr"]):
            found.append(f"training.lr: {groups[0]['initial_lr']!r} in the checkpoint, {current['lr']!r} in run.json")
    if found:
        raise ConfigError(
            f"{run_dir / RUN_NAME} differs from the checkpoint in {last}: {'; '.join(found)}. A resumed run goes on "
            f"with the settings it was trained with (only {', '.join(sorted(RESUMABLE))} may change): undo the "
            "edits, or start a new run with the new settings."
        )


def reconcile_metrics(run_dir: Path, epoch: int) -> None:
    """Make ``metrics.jsonl`` agree with a checkpoint of ``epoch`` finished epochs before a resumed run appends.

    Records of later epochs (written just before a crash cut the checkpoint's swap) are dropped: those epochs
    are trained again. A log that lacks epochs the checkpoint has, or holds others, warns (MMZooWarning).
    """
    records = read_metrics(run_dir)
    kept = [r for r in records if not (isinstance(r.get("epoch"), int) and r["epoch"] > epoch)]
    if len(kept) < len(records):
        write_metrics(run_dir, kept)
        logger.info(
            "%s: dropped %d record(s) of epochs after the checkpoint (trained again)", run_dir, len(records) - len(kept)
        )
    epochs = [r.get("epoch") for r in kept]
    if epochs != list(range(1, epoch + 1)):
        message = (
            f"{run_dir / METRICS_NAME} records epochs {epochs[:10]}{'...' if len(epochs) > 10 else ''}, but the "
            f"checkpoint in {run_dir / 'last'} has finished {epoch} epoch(s): the log does not belong to this "
            f"checkpoint (edited, or copied from another run). Training goes on from epoch {epoch + 1}; the log's "
            "best epoch and the model card may be wrong."
        )
        logger.warning(message)
        warnings.warn(message, MMZooWarning, stacklevel=3)


def data_fingerprint(data: str | Path, splits: tuple[str, ...] = ("train", "dev")) -> dict[str, str]:
    """A digest per data file of the splits, the files their data format lists (:meth:`mmzoo.plugin.DataFormat.files`):
    text files whole, and size plus sampled chunks of the others (features).

    Reading a few chunks keeps this fast for COCO's 33 GB of features, and catches other content of the same size.
    Keys are the files' paths relative to the folder (``train_ims.npy``).
    """
    root = Path(data)
    found = {}
    for split in splits:
        for path in sorted(split_files(root, split)):
            if path.is_file():
                key = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
                found[key] = _digest(path, whole=path.suffix in _TEXT)
    return found


def _digest(path: Path, whole: bool) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        if whole or size <= (_SAMPLES + 2) * _CHUNK:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        else:
            for i in range(_SAMPLES + 2):
                handle.seek(min(size - _CHUNK, i * (size - _CHUNK) // (_SAMPLES + 1)))
                digest.update(handle.read(_CHUNK))
    return digest.hexdigest()


def changed_files(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """The data files whose fingerprint differs from the one ``run.json`` recorded (added or removed included)."""
    return sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))


__all__ = [
    "LOCK_NAME",
    "METRICS_NAME",
    "RESUMABLE",
    "RUN_NAME",
    "RunLock",
    "changed_files",
    "check_resume",
    "check_run_folder",
    "clean_start",
    "data_fingerprint",
    "lock_run",
    "read_metrics",
    "read_run",
    "reconcile_metrics",
    "write_metrics",
]
