"""The shard writer's identities: the weights hash names the same models as before it stopped copying tensors
(an index built earlier must still match its model), and a shard's progress record holds the sha256 of the
files as they lie on disk."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from mmzoo.serving.shard import file_sha256, model_identity, read_done, write_shard
from mmzoo.serving.sources import Item


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(5, 3)
        self.register_buffer("bf16", torch.randn(4, 6).to(torch.bfloat16).t())  # not contiguous, 2-byte values
        self.register_buffer("scalar", torch.tensor(7, dtype=torch.int64))
        self.config = type("Config", (), {"to_dict": lambda self: {"name": "tiny"}})()


def test_the_weights_hash_is_the_hash_of_every_tensor_s_bytes_in_name_order():
    model = _Tiny()
    expected = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        expected.update(key.encode())
        expected.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    identity = model_identity(model, "tiny")
    assert identity["weights_sha256"] == expected.hexdigest()
    with torch.no_grad():
        model.bf16[0, 0] += 1
    assert model_identity(model, "tiny")["weights_sha256"] != identity["weights_sha256"]


def test_a_shard_record_holds_the_sha256_of_its_files(tmp_path):
    pytest.importorskip("pyarrow")
    vectors = np.arange(12, dtype=np.float16).reshape(3, 4)
    items = [Item(key=f"k{i}", path=f"p{i}.png", caption=f"c{i}") for i in range(3)]
    record = write_shard(tmp_path, 2, 10, vectors, items, [(1, "a"), (2, "b"), (3, "c")])
    assert record == json.loads((tmp_path / "shards" / "00002.done.json").read_text())
    for rel, sha in record["files"].items():
        assert file_sha256(tmp_path / rel) == sha
    assert read_done(tmp_path, 2) == record
    (tmp_path / "shards" / "00002.npy").write_bytes(b"damaged")
    assert read_done(tmp_path, 2) is None
