"""Ensembles: the mean of the members' scores, saved, loaded and pushed as one model, evaluated by `mmzoo eval A B --ensemble`."""

from __future__ import annotations

import json

import pytest
import torch

import mmzoo
from mmzoo.cli import main
from mmzoo.data import make_shapes
from tests.conftest import CAPTIONS, tiny_model
from tests.hub_server import fake_hub  # noqa: F401  (a fixture)


@pytest.fixture(scope="module")
def members() -> list[mmzoo.MatchingModel]:
    return [tiny_model("mmca").eval(), tiny_model("vsepp", **{"visual.in_dim": 24}).eval()]


def scores(model, regions: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.similarity(model.encode_images(regions), model.encode_texts(CAPTIONS))


def test_an_ensemble_scores_the_weighted_mean_of_its_members(members):
    regions = torch.randn(3, 5, 24)
    mean = (scores(members[0], regions) + scores(members[1], regions)) / 2
    torch.testing.assert_close(scores(mmzoo.Ensemble(members), regions), mean)
    weighted = 0.75 * scores(members[0], regions) + 0.25 * scores(members[1], regions)
    torch.testing.assert_close(scores(mmzoo.Ensemble(members, [3, 1]), regions), weighted)
    with pytest.raises(mmzoo.errors.ConfigError, match="at least two"):
        mmzoo.Ensemble(members[:1])
    with pytest.raises(mmzoo.errors.ConfigError, match="weights"):
        mmzoo.Ensemble(members, [1.0, float("nan")])
    with pytest.raises(mmzoo.errors.InputError, match="ensemble's own encodings"):
        mmzoo.Ensemble(members).similarity(members[0].encode_images(regions), members[0].encode_texts(CAPTIONS))


def test_an_ensemble_round_trips_through_save_load_and_push(members, tmp_path, fake_hub):  # noqa: F811
    ensemble = mmzoo.Ensemble(members, [2, 1])
    folder = ensemble.save_pretrained(tmp_path / "ens")
    document = json.loads((folder / "config.json").read_text())
    assert document["ensemble"]["members"] == ["member-0", "member-1"] and (folder / "README.md").is_file()
    regions = torch.randn(2, 5, 24)
    loaded = mmzoo.from_pretrained(f"local-dir:{folder}")
    assert isinstance(loaded, mmzoo.Ensemble)
    torch.testing.assert_close(scores(loaded, regions), scores(ensemble, regions))
    ensemble.push_to_hub("org/ensemble")
    from_hub = mmzoo.from_pretrained("hf-hub:org/ensemble")
    torch.testing.assert_close(scores(from_hub, regions), scores(ensemble, regions))
    (folder / "config.json").write_text(json.dumps({**document, "ensemble": {"members": ["../elsewhere", "member-1"]}}))
    with pytest.raises(mmzoo.errors.CheckpointError, match="outside the ensemble's folder"):
        mmzoo.from_pretrained(f"local-dir:{folder}")


def test_mmzoo_eval_ensemble(tmp_path, capsys):
    data = tmp_path / "data"
    make_shapes(data, images=20, dev_images=10, test_images=10, regions=8, region_dim=24, seed=2)
    a, b = tiny_model("vsepp", **{"visual.in_dim": 24}), tiny_model("mmca")
    for model in (a, b):
        model.text.fit([c for c in mmzoo.open_split(data, "train").captions])
    a.save_pretrained(tmp_path / "a")
    b.save_pretrained(tmp_path / "b")
    out = tmp_path / "m.json"
    args = ["eval", str(tmp_path / "a"), str(tmp_path / "b"), "--data", str(data), "--split", "test"]
    assert main([*args, "--ensemble", "--json", str(out), "--no-progress"]) == 0
    ensemble = json.loads(out.read_text())
    assert main([*args, "--no-progress"]) == 2
    assert "pass --ensemble" in capsys.readouterr().err
    split = mmzoo.open_split(data, "test")
    expected = mmzoo.evaluation.evaluate(mmzoo.Ensemble([a.eval(), b.eval()]), split, progress=False)
    assert ensemble["rsum"] == pytest.approx(expected["rsum"], abs=1e-4)
