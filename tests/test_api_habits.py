"""The calls a newcomer from timm, open_clip or transformers reaches for in the first hour."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mmzoo
from mmzoo.cli import main
from mmzoo.errors import CheckpointError, ConfigError, UnknownComponentError
from mmzoo.registry import natural_key
from tests.conftest import tiny_model


def test_encode_images_takes_what_open_split_returns(tmp_path):
    from mmzoo.data.shapes import make_shapes

    make_shapes(tmp_path / "d", images=4, dev_images=2, test_images=2, seed=0, regions=8, region_dim=24)
    split = mmzoo.open_split(tmp_path / "d", "test")
    features, mask = split.image_features(np.arange(3))
    assert isinstance(features, np.ndarray) and isinstance(mask, np.ndarray)
    model = tiny_model("vsepp").eval()
    with torch.no_grad():
        from_numpy = model.encode_images(features, mask)
        from_torch = model.encode_images(torch.from_numpy(features), torch.from_numpy(mask))
        readonly = features.copy()
        readonly.flags.writeable = False  # memory-mapped features are read-only
        model.encode_images(readonly)
    assert torch.equal(from_numpy.pooled, from_torch.pooled)
    with pytest.raises(mmzoo.errors.InputError, match="mask must be bool"):
        model.encode_images(features, mask.astype(np.int64))


def test_from_pretrained_of_a_run_folder_loads_best(tmp_path):
    model = tiny_model("vsepp").eval()
    run = tmp_path / "run"
    (run / "run.json").parent.mkdir()
    (run / "run.json").write_text("{}")
    with pytest.raises(CheckpointError, match="training run without a best/ model; no epoch has finished"):
        mmzoo.from_pretrained(run)
    model.save_pretrained(run / "last")
    with pytest.raises(CheckpointError, match=r"from_pretrained\('.*last'\)"):
        mmzoo.from_pretrained(str(run))
    model.save_pretrained(run / "best")
    loaded = mmzoo.from_pretrained(run)
    assert torch.equal(loaded.state_dict()["visual.fc.weight"], model.state_dict()["visual.fc.weight"])
    assert mmzoo.from_pretrained(f"local-dir:{run}").config == model.config


def test_create_model_of_a_zoo_alias_points_to_from_pretrained():
    with pytest.raises(UnknownComponentError, match=r"from_pretrained\('vse-infinity-coco'\).*create_model\('vse-"):
        mmzoo.create_model("vse-infinity-coco")


def test_create_model_pretrained_true_names_the_call():
    with pytest.raises(ConfigError, match=r"mmzoo.from_pretrained\('mmca-coco'\), mmzoo.from_pretrained\('mmca-f30k'"):
        mmzoo.create_model("mmca", pretrained=True)
    with pytest.raises(ConfigError, match=r"from_pretrained\('vse-infinity-coco'\)\."):
        mmzoo.create_model("vse-infinity-coco", pretrained=True)
    with pytest.raises(ConfigError, match="no weights for the recipe 'mmca-no-cross'"):
        mmzoo.create_model("mmca-no-cross", pretrained=True)
    assert isinstance(
        mmzoo.create_model("vsepp", pretrained=False, embed_dim=8, **{"visual.in_dim": 4}), torch.nn.Module
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"fusion.head": 8}, "fusion.head: unknown field. Did you mean 'heads'?"),
        ({"embed_dims": 8}, "embed_dims: unknown field. Did you mean 'embed_dim'?"),
        ({"fusoin.heads": 8}, "'fusoin' is not a section; Did you mean 'fusion'?"),
    ],
)
def test_a_mistyped_field_gets_a_did_you_mean(overrides, expected):
    with pytest.raises(ConfigError) as info:
        mmzoo.create_model("mmca", **overrides)
    assert expected in str(info.value)


def test_a_mistyped_field_on_the_command_line(tmp_path, capsys):
    from mmzoo.data.shapes import make_shapes

    make_shapes(tmp_path / "d", images=4, dev_images=2, test_images=2, seed=0, regions=8, region_dim=24)
    argv = ["train", "--data", str(tmp_path / "d"), "--model", "vsepp", "--out", str(tmp_path / "r")]
    assert main([*argv, "--set", "training.batch_sise=4"]) == 2
    assert "Did you mean 'batch_size'" in capsys.readouterr().err
    assert main([*argv, "--set", "embed_dimm=8"]) == 2
    assert "Did you mean 'embed_dim'?" in capsys.readouterr().err


def test_list_models_and_pretrained_keep_timm_habits():
    assert mmzoo.list_models(["mmca*", "vsepp"]) == ["mmca", "mmca-no-cross", "vsepp"]
    assert mmzoo.list_models("mmca*", exclude="*no-cross") == ["mmca"]
    assert mmzoo.list_models("MMCA") == ["mmca"]
    trained = mmzoo.list_models(pretrained=True)
    assert "mmca" in trained and "mmca-no-cross" not in trained and trained == sorted(trained, key=natural_key)
    assert [a for a, _ in mmzoo.list_pretrained("MMCA-*")] == ["mmca-coco", "mmca-f30k"]
    assert json.dumps(mmzoo.list_pretrained("mmca-f30k")) == '[["mmca-f30k", "mmca"]]'
