"""Training output that says what it measured and is right (issue 24): the dev protocol named in the log, the
last epoch's full dev rsum, which number chose the best checkpoint (final line and run.json), the collapse check of
fused-only models, each warning once, progress without a bar."""

from __future__ import annotations

import json
import logging

import pytest

from mmzoo.cli import main
from mmzoo.data import make_shapes
from tests.conftest import TINY_MMCA_RUN

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-output") / "shapes"
    make_shapes(root, images=40, dev_images=12, test_images=10, seed=0, regions=8, region_dim=16)
    return root


def test_a_subset_dev_run_says_what_it_measured(data, tmp_path, capsys, caplog):
    """Problem 2: the log named no protocol, the final line gave the subset's rsum as "dev rsum", and neither it
    nor run.json said that the subset's number chose the best checkpoint."""
    sets = [f"--set={s}" for s in [*TINY_MMCA_RUN, "training.dev_eval=subset", "training.dev_subset=5"]]
    args = ["train", "--model", "mmca", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "2"]
    with caplog.at_level(logging.INFO, logger="mmzoo"):
        assert main([*args, *sets, "--no-progress"]) == 0
    log = caplog.text
    assert "dev evaluation after each epoch on the first 5 of 12 dev images" in log
    assert "dev rsum" in log and "on the first 5 of 12 dev images" in log
    assert "epoch 2: full dev rsum" in log and "on all 12 dev images" in log
    final = capsys.readouterr().out.strip().splitlines()[-1]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    full = records[-1]["dev_full"]["rsum"]
    assert f"on the first 5 of 12 dev images (dev_eval subset) (full dev rsum {full:.2f})" in final
    best = max(records, key=lambda r: r["dev"]["rsum"])
    assert f"best checkpoint: epoch {best['epoch']}, chosen by its dev rsum {best['dev']['rsum']:.2f}" in final
    assert records[-1]["best_epoch"] == best["epoch"] and records[-1]["dev_scored"].startswith("the first 5 of 12")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["dev_eval"]["best_checkpoint"] == "the epoch with the best dev rsum on " + run["dev_eval"]["scores"]
    assert run["dev_eval"]["scores"] == "the first 5 of 12 dev images (dev_eval subset)"
