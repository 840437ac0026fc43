"""``torchrun -m mmzoo eval``: the exhaustive scoring split across processes gives the one-process metrics."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

import mmzoo
from mmzoo.data import PrecomputedDataset, make_shapes, open_split
from mmzoo.evaluation import METRIC_KEYS, encode_split, evaluate, score_matrix
from tests.conftest import tiny_model
from tests.test_training_ddp import torchrun

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-ddp")
    make_shapes(root / "data", images=20, dev_images=10, test_images=7, seed=0, regions=8, region_dim=32)
    model = tiny_model("mmca", **{"visual.in_dim": 32})
    model.text.fit(PrecomputedDataset(root / "data", "train").captions)
    model.eval().save_pretrained(root / "mmca")
    return root


def test_two_processes_give_the_one_process_metrics(saved):
    out = saved / "m.json"
    args = [str(saved / "mmca"), "--data", str(saved / "data"), "--device", "cpu", "--json", str(out)]
    command = torchrun(*args, "--max-images", "13", command="eval")  # 7 and 6 rows: the gather pads one
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1 and done.stdout.count("rsum") == 1, "only rank 0 reports"
    sharded = json.loads(out.read_text())
    split = open_split(saved / "data", "test", max_images=13)
    exact = evaluate(mmzoo.from_pretrained(str(saved / "mmca")), split, progress=False)
    assert {"bind_i2t", "bind_t2i"} <= set(sharded)
    for key in (*METRIC_KEYS, "bind_i2t", "bind_t2i"):
        assert sharded[key] == pytest.approx(exact[key], abs=1e-4), key


def test_shard_without_a_process_group_is_the_whole_matrix(saved):
    model = mmzoo.from_pretrained(str(saved / "mmca"))
    split = PrecomputedDataset(saved / "data", "test")
    images, texts = encode_split(model, split, progress=False)
    whole = score_matrix(model, images, texts, block_size=3)
    assert torch.equal(score_matrix(model, images, texts, block_size=3, shard=True), whole)
    assert whole.shape == (split.num_images, len(split.captions))
