"""``BuildContext.share`` (one module per key within one model build) and the aliases a save records for it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

import mmzoo
from mmzoo.checkpoint import read_weights, split_aliases, weight_shapes, write_folder


def test_the_first_caller_builds_and_later_callers_of_the_same_build_get_that_instance():
    table: dict = {}
    first, second = mmzoo.plugin.BuildContext(8, shared=table), mmzoo.plugin.BuildContext(8, shared=table)
    built = []

    def make():
        built.append(nn.Linear(2, 2))
        return built[-1]

    a, b = first.share("layer", make), second.share("layer", make)
    assert a is b and len(built) == 1
    assert first.share("other", make) is not a and len(built) == 2
    alone = mmzoo.plugin.BuildContext(8)  # a context made alone has its own table: nothing to meet
    assert alone.share("layer", make) is not a
    param = first.share("queries", lambda: nn.Parameter(torch.zeros(3)))
    assert second.share("queries", lambda: nn.Parameter(torch.ones(3))) is param
    with pytest.raises(TypeError, match="shares modules and parameters; got int"):
        first.share("number", lambda: 3)
    assert first == second and hash(first) == hash(second), "the table is no part of the context's identity"


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Sequential(self.a, nn.ReLU())  # the same Linear under a second name
        self.c = nn.Linear(4, 2)


def test_a_shared_tensor_is_stored_once_and_read_back_under_every_name(tmp_path):
    model = Tied()
    stored, aliases = split_aliases(model.state_dict(keep_vars=True))
    assert list(stored) == ["a.weight", "a.bias", "c.weight", "c.bias"]
    assert aliases == {"b.0.weight": "a.weight", "b.0.bias": "a.bias"}
    tensors = {k: v.detach().clone() for k, v in stored.items()}
    folder = write_folder(tmp_path / "m", {"model": {}}, tensors, None, aliases=aliases)
    assert json.loads((folder / "config.json").read_text())["format_version"] == 2
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        assert sorted(handle.keys()) == sorted(stored)
    back = read_weights(folder)
    assert set(back) == set(model.state_dict()) and back["b.0.weight"] is back["a.weight"]
    assert weight_shapes(folder)["b.0.bias"].shape == (4,)
    copy = Tied()
    mmzoo.plugin.load_state_strict(copy, back, "test")
    assert torch.equal(copy.b[0].weight, model.a.weight) and copy.b[0] is copy.a


def test_an_unshared_save_records_no_alias_and_stays_format_1(tmp_path):
    stored, aliases = split_aliases(nn.Linear(2, 2).state_dict(keep_vars=True))
    assert aliases == {}
    folder = write_folder(tmp_path / "m", {"model": {}, "format_version": 1}, dict(stored), None, aliases=aliases)
    assert json.loads((folder / "config.json").read_text())["format_version"] == 1
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        assert "mmzoo_aliases" not in handle.metadata()


def test_an_alias_that_names_no_stored_tensor_is_refused_when_writing(tmp_path):
    with pytest.raises(ValueError, match="aliases must name stored tensors"):
        write_folder(tmp_path / "m", {"model": {}}, {"a": torch.zeros(1)}, None, aliases={"b": "c"})
    assert not (tmp_path / "m").exists()
