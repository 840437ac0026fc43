"""The ``mmzoo`` command applies the thread policy (mmzoo.scoring.threads) before a command computes.

Each test runs the command in a fresh process, as a user does: torch starts at two threads there (what it picks
on a two-core machine), and ``MMZOO_NUM_THREADS`` must be what the command's work then runs with.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: run ``mmzoo ARGS`` through its entry point, then report the thread count the command left torch at
WRAPPER = (
    "import sys, torch; torch.set_num_threads(2); from mmzoo.cli import main; rc = main(sys.argv[1:]); "
    "print('torch threads after the command:', torch.get_num_threads()); sys.exit(rc)"
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MMZOO_NUM_THREADS")}
    env.update({"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **extra})
    return env


def _mmzoo(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WRAPPER, *args], env=_env(**env), capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_mmzoo_num_threads_1_trains_with_one_thread(tmp_path):
    data, run = tmp_path / "shapes", tmp_path / "run"
    made = _mmzoo(["make-data", "shapes", "--out", str(data), "--images", "24", "--seed", "1"], MMZOO_NUM_THREADS="1")
    assert made.returncode == 0, made.stderr[-2000:]
    assert "torch threads after the command: 1" in made.stdout
    tiny = ["embed_dim=16", "text.word_dim=8", "training.batch_size=8"]
    trained = _mmzoo(
        ["-v", "train", "--model", "vsepp", "--data", str(data), "--out", str(run), "--epochs", "1", "--no-progress"]
        + [arg for value in tiny for arg in ("--set", value)],
        MMZOO_NUM_THREADS="1",
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "torch intra-op threads: 1" in trained.stderr  # set before training started, not after
    assert "torch threads after the command: 1" in trained.stdout


def test_mmzoo_num_threads_picks_any_count_and_openmp_settings_are_left_to_torch(tmp_path):
    three = _mmzoo(["make-data", "shapes", "--out", str(tmp_path / "a"), "--images", "8"], MMZOO_NUM_THREADS="3")
    assert "torch threads after the command: 3" in three.stdout, three.stderr[-2000:]
    omp = _mmzoo(["make-data", "shapes", "--out", str(tmp_path / "b"), "--images", "8"], OMP_NUM_THREADS="2")
    assert "torch threads after the command: 2" in omp.stdout, omp.stderr[-2000:]


def test_a_bad_mmzoo_num_threads_is_a_named_error_through_the_command(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mmzoo", "make-data", "shapes", "--out", str(tmp_path / "d"), "--images", "8"],
        env=_env(MMZOO_NUM_THREADS="many"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "mmzoo make-data: error: MMZOO_NUM_THREADS='many' is not a positive integer" in done.stderr
    assert not (tmp_path / "d").exists()
