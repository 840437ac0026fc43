"""The extractor guard's pure part: feature facts compared, differences named, warning or (strict) error."""

from __future__ import annotations

import json
import re
import warnings

import pytest

from mmzoo.data.importing import (
    FEATURE_FACTS,
    FeatureDifference,
    FeatureMismatchWarning,
    check_feature_facts,
    feature_differences,
    feature_facts,
)
from mmzoo.data.importing.guard import unknown_feature_facts
from mmzoo.errors import DataError

BUTD36 = {
    "format": "precomp",
    "extractor": "BUTD Faster R-CNN R101 VG, 36 boxes",
    "region_dim": 2048,
    "region_policy": "fixed-36",
    "normalisation": "none",
    "regions": 36,
}


def test_facts_of_a_manifest():
    assert feature_facts(BUTD36) == {k: BUTD36[k] for k in FEATURE_FACTS}
    assert feature_facts(None) == dict.fromkeys(FEATURE_FACTS)
    assert feature_facts({"region_dim": 64}) == {**dict.fromkeys(FEATURE_FACTS), "region_dim": 64}


def test_same_features_have_no_differences():
    assert feature_differences(feature_facts(BUTD36), BUTD36) == []
    spelled = {**BUTD36, "extractor": "  butd faster r-cnn   R101 VG, 36 boxes "}  # case and spaces
    assert feature_differences(BUTD36, spelled) == []


@pytest.mark.parametrize(
    ("fact", "value"),
    [
        ("extractor", "detectron2 R101 C4 VG (py-bottom-up-attention), 36 boxes"),
        ("region_dim", 1024),
        ("region_policy", "adaptive-10-100"),
        ("normalisation", "l2"),
    ],
)
def test_each_fact_that_differs_is_named(fact, value):
    data = {**BUTD36, fact: value}
    assert feature_differences(BUTD36, data) == [FeatureDifference(fact, BUTD36[fact], value)]
    with pytest.warns(FeatureMismatchWarning) as caught:
        found = check_feature_facts(BUTD36, data, model="runs/vsepp/best", dataset="data/f30k_d2")
    assert found == [FeatureDifference(fact, BUTD36[fact], value)]
    message = str(caught[0].message)
    assert "runs/vsepp/best" in message and "data/f30k_d2" in message
    assert repr(BUTD36[fact]) in message and repr(value) in message and "--strict-features" in message
    expected = re.escape(f"{fact} {BUTD36[fact]!r} (trained) vs {value!r} (in data/f30k_d2)")
    with pytest.raises(DataError, match=expected):
        check_feature_facts(BUTD36, data, strict=True, model="runs/vsepp/best", dataset="data/f30k_d2")


def test_several_differences_in_one_message():
    data = {
        "extractor": "ResNet-152 grid 7x7",
        "region_dim": 2048,
        "region_policy": "fixed-49",
        "normalisation": "none",
    }
    found = feature_differences(BUTD36, data)
    assert [d.fact for d in found] == ["extractor", "region_policy"]
    with pytest.raises(DataError) as raised:
        check_feature_facts(BUTD36, data, strict=True)
    assert "extractor" in str(raised.value) and "fixed-49" in str(raised.value)


def test_region_policies():
    adaptive = {**BUTD36, "region_policy": "adaptive-10-100"}
    subset = {**BUTD36, "region_policy": "adaptive-10-98"}  # measured on a few test images
    wider = {**BUTD36, "region_policy": "adaptive-5-100"}
    assert feature_differences(adaptive, subset) == []
    assert [d.fact for d in feature_differences(adaptive, wider)] == ["region_policy"]
    assert [d.fact for d in feature_differences(BUTD36, {**BUTD36, "region_policy": "fixed-50"})] == ["region_policy"]
    assert [d.fact for d in feature_differences(adaptive, BUTD36)] == ["region_policy"]


def test_unknown_facts_are_not_differences():
    old = {"region_dim": 2048, "regions": 36}  # a manifest from before the import command: no extractor
    assert feature_differences(BUTD36, old) == []
    assert unknown_feature_facts(BUTD36, old) == ["extractor", "region_policy", "normalisation"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_feature_facts(BUTD36, old, strict=False) == []
        assert check_feature_facts({}, BUTD36, strict=True) == []
    assert [d.fact for d in feature_differences(BUTD36, {**old, "region_dim": "1024"})] == ["region_dim"]


def test_a_trained_model_records_its_features_and_eval_guards_them(tmp_path, capsys):
    """Train on one extractor's features, evaluate on another's: a warning naming both, an error with --strict."""
    import warnings as _warnings

    from mmzoo.cli import main as cli
    from mmzoo.data import DataManifest, make_shapes, read_manifest, write_manifest
    from mmzoo.training import prepare_run, train

    data = tmp_path / "data"
    make_shapes(data, images=24, dev_images=10, test_images=10, regions=8, region_dim=16, seed=3)
    sets = ["embed_dim=16", "text.word_dim=8", "training.batch_size=8", "training.epochs=1"]
    train(prepare_run(data, "vsepp", sets=sets), tmp_path / "run", progress=False)
    recorded = json.loads((tmp_path / "run" / "best" / "config.json").read_text())["features"]
    assert recorded["region_policy"] == "fixed-8" and recorded["region_dim"] == 16
    args = ["eval", str(tmp_path / "run"), "--data", str(data), "--split", "test", "--no-progress"]
    with _warnings.catch_warnings():
        _warnings.simplefilter("error", FeatureMismatchWarning)
        assert cli(args) == 0  # the same features: silent
    manifest = read_manifest(data).model_dump(mode="json")
    write_manifest(data, DataManifest.model_validate({**manifest, "extractor": "detectron2 X152, adaptive boxes"}))
    with pytest.warns(FeatureMismatchWarning, match=r"extractor .*mmzoo shapes generator.*detectron2 X152"):
        assert cli(args) == 0
    assert cli([*args, "--strict-features"]) == 2
    assert "trained on other features" in capsys.readouterr().err
