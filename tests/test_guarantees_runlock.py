"""One trainer per run folder: ``RUN/.lock`` is held (flock, the holder's pid inside) for the trainer's lifetime;
a second ``mmzoo train`` into the same folder is refused at once naming the holder's pid; a crash releases it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mmzoo
from mmzoo.data import make_shapes
from mmzoo.training import Trainer, prepare_run, read_metrics, train
from mmzoo.training.rundir import LOCK_NAME, RunLock

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["embed_dim=16", "text.word_dim=8", "training.batch_size=8", "training.eval_batch_size=64"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    make_shapes(out, images=24, dev_images=10, test_images=10, regions=8, region_dim=16, seed=3)
    return out


def mmzoo_train(*args: str) -> list[str]:
    sets = [] if "--resume" in args else [f"--set={s}" for s in SMALL]
    return [sys.executable, "-m", "mmzoo", "train", *args, "--no-progress", *sets]


def wait_for(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.slow  # four processes start mmzoo: ~30 s on a shared 2-core machine
def test_a_second_trainer_in_the_same_folder_is_refused_with_the_holders_pid(shapes, tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(
        mmzoo_train("--model", "vsepp", "--data", str(shapes), "--out", str(run), "--epochs", "500"),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: len(read_metrics(run)) >= 1 or first.poll() is not None)
        assert first.poll() is None, first.stderr.read()
        assert (run / LOCK_NAME).read_text().split() == [str(first.pid)]
        started = time.monotonic()
        second = subprocess.run(
            mmzoo_train("--model", "vsepp", "--data", str(shapes), "--out", str(run)),
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2 and f"process {first.pid}" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        resumed = subprocess.run(
            mmzoo_train("--resume", str(run)), env=ENV, capture_output=True, text=True, timeout=120
        )
        assert resumed.returncode == 2 and f"process {first.pid}" in resumed.stderr, resumed.stderr
        assert time.monotonic() - started < 60  # refused at once, not after training
    finally:
        first.send_signal(signal.SIGKILL)  # a crash: the kernel drops the flock
        first.wait()
    assert (run / LOCK_NAME).exists()  # a stale lock file with a dead pid: no obstacle
    done = len(read_metrics(run))
    resumed = subprocess.run(
        mmzoo_train("--resume", str(run), "--epochs", str(done + 1)),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    epochs = [m["epoch"] for m in read_metrics(run)]
    assert epochs == sorted(set(epochs)) and epochs[-1] == done + 1
    assert not (run / LOCK_NAME).exists()  # released (and removed) when the trainer finished


def test_the_lock_is_released_when_training_ends_or_fails(shapes, tmp_path):
    run = tmp_path / "run"
    spec = prepare_run(shapes, "vsepp", sets=[*SMALL, "training.epochs=1"])
    trainer = Trainer(spec, run, progress=False)
    with pytest.raises(mmzoo.errors.ConfigError, match=f"process {os.getpid()}"):
        Trainer(spec, run, progress=False)
    trainer.fit()
    assert not (run / LOCK_NAME).exists()
    with pytest.raises(mmzoo.errors.ConfigError, match="already holds a run"):  # refused, and the lock let go
        Trainer(spec, run, progress=False)
    assert not (run / LOCK_NAME).exists()
    train(spec, run, resume=True, progress=False)


def test_a_stale_pid_file_is_taken_over_and_a_live_one_refused(tmp_path):
    """Where flock is missing the file alone is the lock; its pid tells stale from live."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(f"{dead.pid}\n")
    lock = RunLock(tmp_path)._acquire_pid_file()
    assert (tmp_path / LOCK_NAME).read_text().split() == [str(os.getpid())]
    lock.release()
    (tmp_path / LOCK_NAME).write_text(f"{os.getppid()}\n")
    with pytest.raises(mmzoo.errors.ConfigError, match=f"process {os.getppid()}"):
        RunLock(tmp_path)._acquire_pid_file()
