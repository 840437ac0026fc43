"""Atomic files and folders, RNG capture, and the safe training-state format."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from mmzoo._atomic import atomic_folder, atomic_write_text, recover_folder
from mmzoo.errors import CheckpointError
from mmzoo.training.state import (
    STATE_NAME,
    TrainingState,
    capture_rng,
    load_training_state,
    restore_rng,
    save_checkpoint,
)
from tests.conftest import tiny_model


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_folder_keeps_the_old_version_when_the_writer_dies(tmp_path):
    target = tmp_path / "last"
    with atomic_folder(target) as tmp:
        (tmp / "f").write_text("v1")
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "f").write_text("half")
        raise RuntimeError("killed while writing")
    assert (target / "f").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_swap_interrupted_between_renames_is_recovered(tmp_path):
    target = tmp_path / "last"
    target.mkdir()
    (target / "f").write_text("v1")
    os.replace(target, tmp_path / ".last.old")  # the state after the first of the two renames
    recover_folder(target)
    assert (target / "f").read_text() == "v1"
    # a stale temp folder from a killed writer is discarded by the next write
    (tmp_path / ".last.tmp").mkdir()
    with atomic_folder(target) as tmp:
        (tmp / "f").write_text("v2")
    assert (target / "f").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_rng_round_trip():
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    state = capture_rng()
    first = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    restore_rng(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


def test_training_state_saved_with_model_and_loaded_weights_only(tmp_path):
    model = tiny_model("vsepp")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(
        torch.randn(4, 3, 24), ["a red circle", "two blue squares", "a green triangle", "a big square"]
    ).loss.backward()
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.1)
    state = TrainingState(3, 17, 123.4, opt.state_dict(), sched.state_dict(), {}, capture_rng(), "off")
    save_checkpoint(tmp_path / "last", model, state)
    assert (tmp_path / "last" / "config.json").is_file() and (tmp_path / "last" / "model.safetensors").is_file()
    loaded = load_training_state(tmp_path / "last")
    assert (loaded.epoch, loaded.step, loaded.best_rsum) == (3, 17, 123.4)
    opt2 = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt2.load_state_dict(loaded.optimizer)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


class Sneaky:
    """Stands for any object that only full unpickling could rebuild."""


def test_unsafe_or_missing_state_is_a_checkpoint_error(tmp_path):
    (tmp_path / "last").mkdir()
    with pytest.raises(CheckpointError, match="nothing to resume"):
        load_training_state(tmp_path / "last")

    # an arbitrary object needs full unpickling: refused
    torch.save({"epoch": 1, "payload": Sneaky()}, tmp_path / "last" / STATE_NAME)
    with pytest.raises(CheckpointError, match=r"Sneaky.*never unpickles"):
        load_training_state(tmp_path / "last")
