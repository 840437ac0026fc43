"""``mmzoo eval``'s rerank paths honour the same rules as its exhaustive path: the extractor guard's
``--strict-features`` and the binding probe only where a twin survives ``--max-images``."""

from __future__ import annotations

import json
import shutil

import pytest

from mmzoo.cli import main as cli
from mmzoo.data import DataManifest, make_shapes, open_split, read_manifest, write_manifest
from mmzoo.evaluation import BINDING_KEYS, split_twins
from mmzoo.training import prepare_run, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch vsepp run (it records the features it was trained on) and its shapes data."""
    root = tmp_path_factory.mktemp("rerank-rules")
    data = root / "data"
    make_shapes(data, images=24, dev_images=10, test_images=10, regions=8, region_dim=16, seed=3)
    sets = ["embed_dim=16", "text.word_dim=8", "training.batch_size=8", "training.epochs=1"]
    train(prepare_run(data, "vsepp", sets=sets), root / "run", progress=False)
    return data, root / "run"


def eval_args(run, data, *more):
    return ["eval", str(run), "--data", str(data), "--split", "test", "--no-progress", "--device", "cpu", *more]


def test_rerank_and_shortlist_honour_strict_features(trained, tmp_path, capsys):
    data, run = trained
    other = tmp_path / "other"
    shutil.copytree(data, other)
    manifest = read_manifest(other).model_dump(mode="json")
    write_manifest(other, DataManifest.model_validate({**manifest, "extractor": "detectron2 X152, adaptive boxes"}))
    args = eval_args(run, other, "--strict-features")
    for extra in ([], ["--rerank", "5"], ["--rerank", "5", "--shortlist", str(run)]):
        assert cli([*args, *extra]) == 2, f"--strict-features {extra} did not refuse features of another extractor"
        assert "trained on other features" in capsys.readouterr().err
    assert cli(eval_args(run, data, "--strict-features", "--rerank", "5")) == 0  # its own features: fine


def test_split_twins_is_none_without_a_usable_twin(trained):
    data, _ = trained
    assert (split_twins(open_split(data, "test")) >= 0).any()
    first = open_split(data, "test", max_images=1)  # image 0's twin is image 1
    assert first.twins is not None and first.twins.tolist() == [-1]  # a table, but its only twin is cut off
    assert split_twins(first) is None
    assert split_twins(open_split(data, "train")) is None  # no twin table at all


def test_rerank_eval_skips_the_binding_probe_when_every_twin_is_cut_off(trained, tmp_path):
    """As the exhaustive path does; it failed with "binding_probe: no image has a twin"."""
    data, run = trained
    exhaustive, rerank = tmp_path / "all.json", tmp_path / "rerank.json"
    assert cli(eval_args(run, data, "--max-images", "1", "--json", str(exhaustive))) == 0
    assert cli(eval_args(run, data, "--max-images", "1", "--rerank", "2", "--json", str(rerank))) == 0
    exact, reranked = json.loads(exhaustive.read_text()), json.loads(rerank.read_text())
    assert not set(BINDING_KEYS) & (set(exact) | set(reranked))
    assert reranked["rsum"] == pytest.approx(exact["rsum"])  # one image: its 5 captions are the whole shortlist
    with_twins = tmp_path / "twins.json"
    assert cli(eval_args(run, data, "--rerank", "2", "--json", str(with_twins))) == 0
    assert set(BINDING_KEYS) <= set(json.loads(with_twins.read_text()))
