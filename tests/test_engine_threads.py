"""The thread policy: MMZOO_NUM_THREADS wins, OpenMP/MKL settings are left to torch, else the free cores."""

from __future__ import annotations

import pytest
import torch

import mmzoo
from mmzoo.scoring.threads import configure_threads, default_threads, requested_threads


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_default_is_the_cores_the_load_leaves_free():
    assert default_threads(cores=2, load=0.2) == 2
    assert default_threads(cores=2, load=1.6) == 1
    assert default_threads(cores=2, load=9.0) == 1  # never below one
    assert default_threads(cores=16, load=3.0) == 13
    assert 1 <= default_threads() <= (__import__("os").cpu_count() or 1)


def test_default_counts_the_cores_this_process_may_use(monkeypatch):
    """Under taskset, a cgroup cpuset or a batch scheduler the process may run on fewer cores than the machine has."""
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 5}, raising=False)
    assert default_threads(load=0.0) == 2
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS, Windows: all the machine's cores
    assert default_threads(load=0.0) == 16


def test_mmzoo_num_threads_wins_and_is_checked():
    assert configure_threads({"MMZOO_NUM_THREADS": "1", "OMP_NUM_THREADS": "2"}) == 1
    assert torch.get_num_threads() == 1
    assert requested_threads({"MMZOO_NUM_THREADS": "auto"}) is None
    assert requested_threads({}) is None
    for bad in ("-1", "two", "1.5"):
        with pytest.raises(mmzoo.errors.ConfigError, match="MMZOO_NUM_THREADS"):
            requested_threads({"MMZOO_NUM_THREADS": bad})


def test_an_openmp_setting_is_left_to_torch():
    torch.set_num_threads(1)
    assert configure_threads({"OMP_NUM_THREADS": "1"}) == 1
    assert torch.get_num_threads() == 1


def test_without_settings_the_rule_decides(monkeypatch):
    monkeypatch.setattr("os.getloadavg", lambda: (50.0, 50.0, 50.0))
    assert configure_threads({}) == 1 and torch.get_num_threads() == 1
