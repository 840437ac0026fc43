"""CI smoke: tiny shapes data, one short epoch of `mmzoo train`, `mmzoo eval`-style test metrics far above chance."""

from __future__ import annotations

import time

import pytest
import torch

from mmzoo.data import PrecomputedDataset, make_shapes
from mmzoo.evaluation import evaluate, recall_metrics
from mmzoo.model import load_folder
from mmzoo.training import prepare_run, read_metrics, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_one_epoch_on_tiny_shapes_is_far_above_chance(tmp_path):
    start = time.perf_counter()
    data = tmp_path / "shapes"
    make_shapes(data, images=300, dev_images=20, test_images=20, seed=0)
    sets = [
        "embed_dim=32",
        "text.word_dim=16",
        "training.batch_size=16",
        "training.lr=2e-3",
        "training.warmup_epochs=1",
    ]
    records = train(prepare_run(data, "vsepp", sets=sets, epochs=1), tmp_path / "run", progress=False)
    assert [m["epoch"] for m in read_metrics(tmp_path / "run")] == [1] and records[0]["loss"] > 0
    test = PrecomputedDataset(data, "test")
    metrics = evaluate(load_folder(tmp_path / "run" / "best"), test, progress=False)
    chance = recall_metrics(torch.rand(test.num_images, len(test), generator=torch.Generator().manual_seed(0)))
    assert metrics["rsum"] > 1.5 * chance["rsum"], (metrics, chance)
    assert metrics["t2i_r1"] > 3 * chance["t2i_r1"], (metrics, chance)
    assert time.perf_counter() - start < 120
