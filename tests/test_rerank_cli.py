"""`mmzoo eval --rerank K`: shortlist-and-rerank recall and the shortlist recall, end to end."""

from __future__ import annotations

import json

import pytest

from mmzoo.cli import main
from mmzoo.data import PrecomputedDataset, make_shapes
from mmzoo.evaluation import METRIC_KEYS, evaluate
from tests.conftest import tiny_model

REGION_DIM = 32


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerank")
    make_shapes(root / "data", images=20, dev_images=10, test_images=6, seed=0, regions=8, region_dim=REGION_DIM)
    model = tiny_model("mmca", **{"visual.in_dim": REGION_DIM})
    model.text.fit(PrecomputedDataset(root / "data", "train").captions)
    model.eval().save_pretrained(root / "model")
    return root, model


def test_eval_rerank_reports_recall_and_shortlist_recall(saved, capsys):
    root, model = saved
    args = ["eval", str(root / "model"), "--data", str(root / "data"), "--device", "cpu", "--no-progress"]
    assert main([*args, "--rerank", "3", "--json", str(root / "k3.json")]) == 0
    printed = capsys.readouterr().out
    assert "shortlist recall" in printed and "K=3" in printed
    k3 = json.loads((root / "k3.json").read_text())
    assert set(METRIC_KEYS) <= set(k3) and {"i2t_shortlist", "t2i_shortlist", "bind_t2i"} <= set(k3)
    assert 0.0 <= k3["t2i_shortlist"] <= 100.0 and k3["rerank"] == 3.0
    # a shortlist as long as the test set is exhaustive scoring
    assert main([*args, "--rerank", "60", "--json", str(root / "all.json")]) == 0
    everything = json.loads((root / "all.json").read_text())
    exact = evaluate(model, PrecomputedDataset(root / "data", "test"), progress=False)
    assert all(everything[k] == pytest.approx(exact[k]) for k in METRIC_KEYS)
    assert everything["i2t_shortlist"] == everything["t2i_shortlist"] == 100.0
    assert main([*args, "--rerank", "0"]) == 2
    assert "--rerank must be at least 1" in capsys.readouterr().err
