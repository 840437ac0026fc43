"""Imported features train and evaluate through the ordinary commands (``mmzoo train``, ``mmzoo eval``).

Fixed and adaptive (padded, with counts) imports both; the data door turns the counts into masks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmzoo.cli import main
from mmzoo.data import open_split
from tests._import_sources import make_images, write_generate_tsv, write_karpathy


@pytest.mark.slow
# random features cannot be learnt in one epoch: the trainer's collapse/chance warning is expected here
@pytest.mark.filterwarnings("ignore::mmzoo.errors.MMZooWarning")
@pytest.mark.parametrize("regions", [36, (10, 36)], ids=["fixed-36", "adaptive"])
def test_train_and_eval_on_an_imported_tsv(tmp_path, regions):
    splits = {"train": list(range(1, 41)), "restval": [41, 42], "val": list(range(50, 60)), "test": list(range(60, 70))}
    ids = [i for s in splits.values() for i in s]
    images = make_images(ids, regions=regions, dim=24, seed=2)
    order = np.random.default_rng(1).permutation(ids).tolist()
    shards = [tmp_path / "f.tsv.0", tmp_path / "f.tsv.1"]
    write_generate_tsv(shards[0], {i: images[i] for i in order[:30]})
    write_generate_tsv(shards[1], {i: images[i] for i in order[30:]})
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", splits)
    data, run = tmp_path / "coco", tmp_path / "run"
    argv = ["import-features", "tsv", *map(str, shards), "--karpathy", str(karpathy), "--out", str(data)]
    assert main([*argv, "--extractor", "test extractor", "--no-progress"]) == 0
    train = ["train", "--model", "vsepp", "--data", str(data), "--out", str(run), "--epochs", "1", "--no-progress"]
    assert main([*train, "--set", "embed_dim=32", "--set", "training.batch_size=16"]) == 0
    metrics = tmp_path / "metrics.json"
    assert (
        main(["eval", str(run), "--data", str(data), "--split", "test", "--json", str(metrics), "--no-progress"]) == 0
    )
    result = json.loads(metrics.read_text())
    assert 0 <= result["rsum"] <= 600 and "i2t_r1" in result
    test = open_split(data, "test")
    _features, mask = test.image_features(range(test.num_images))
    assert mask.sum(axis=1).tolist() == [len(images[i][0]) for i in splits["test"]]
