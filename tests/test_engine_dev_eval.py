"""Cheaper dev evaluation while training: training.dev_eval (full / rerank / subset / auto), the full evaluation of
the last epoch beside it, and the resolved protocol in run.json."""

from __future__ import annotations

import json

import pytest
import torch

from mmzoo.data import make_shapes
from mmzoo.training import prepare_run, read_metrics, train
from mmzoo.training.config import TrainConfig
from mmzoo.training.trainer import AUTO_DEV_PAIRS, resolve_dev_eval
from tests.conftest import TINY_MMCA_RUN, tiny_model

SETS = TINY_MMCA_RUN


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("deveval") / "shapes"
    make_shapes(root, images=40, dev_images=12, test_images=10, seed=0, regions=8, region_dim=16)
    return root


@pytest.mark.parametrize("mode", ["rerank", "subset"])
def test_cheap_dev_eval_every_epoch_and_the_full_one_at_the_end(data, tmp_path, mode):
    sets = [*SETS, f"training.dev_eval={mode}", "training.dev_rerank=4", "training.dev_subset=5"]
    train(prepare_run(data, "mmca", sets=sets, epochs=2), tmp_path / "run", progress=False)
    records = read_metrics(tmp_path / "run")
    assert [r["dev_eval"] for r in records] == [mode, mode]
    assert "dev_full" not in records[0] and "dev_full" in records[1]
    full = records[1]["dev_full"]
    assert "i2t_shortlist" not in full and full["rsum"] >= 0
    if mode == "rerank":
        assert all(r["dev"]["rerank"] == 4.0 and "t2i_shortlist" in r["dev"] for r in records)
    else:
        assert all("i2t_shortlist" not in r["dev"] for r in records)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["dev_eval"]["mode"] == mode and run["dev_eval"]["requested"] == mode
    assert run["dev_eval"].get("rerank", run["dev_eval"].get("subset_images")) in (4, 5)


def test_auto_resolves_by_model_and_dev_size(data):
    class Dev:
        def __init__(self, images: int) -> None:
            self.num_images, self.captions = images, ["a"] * (5 * images)

    cfg = TrainConfig()
    fused, dual = tiny_model("mmca"), tiny_model("vsepp")
    budget = AUTO_DEV_PAIRS["cpu"]
    small = int((budget / 5) ** 0.5)
    assert resolve_dev_eval(fused, Dev(small), cfg)["mode"] == "full"
    big = resolve_dev_eval(fused, Dev(small + 10), cfg)
    assert big["mode"] == "subset" and big["dev_pairs"] > budget
    n = big["subset_images"]
    assert n * 5 * n <= budget < (n + 1) * 5 * (n + 1), "the largest subset within the budget"
    assert resolve_dev_eval(fused, Dev(small + 10), cfg, "cuda")["mode"] == "full"  # a GPU's budget is larger
    assert resolve_dev_eval(fused, Dev(10_000), TrainConfig(dev_subset=150))["subset_images"] == 150
    assert resolve_dev_eval(dual, Dev(10 * small), cfg)["mode"] == "full"
    assert resolve_dev_eval(fused, Dev(10), TrainConfig(dev_eval="subset", dev_subset=50))["subset_images"] == 10
    assert resolve_dev_eval(fused, Dev(10), TrainConfig(dev_eval="rerank", dev_rerank=7))["rerank"] == 7


def test_auto_on_a_small_dev_split_keeps_the_full_evaluation(data, tmp_path):
    train(prepare_run(data, "mmca", sets=SETS, epochs=1), tmp_path / "run", progress=False)
    record = read_metrics(tmp_path / "run")[0]
    assert record["dev_eval"] == "full" and "dev_full" not in record
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["dev_eval"]["mode"] == "full" and run["dev_eval"]["requested"] == "auto"
    assert "dev pairs within the cpu budget" in run["dev_eval"]["reason"]
