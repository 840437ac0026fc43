"""Resolving a run: recipe defaults, config files, --set, data-implied settings; CLI argument errors."""

from __future__ import annotations

import json

import pytest

from mmzoo.cli import main
from mmzoo.errors import ConfigError
from mmzoo.training import TrainConfig, prepare_run
from mmzoo.training.runspec import parse_sets

MANIFEST = {"model_overrides": {"text.name": "gru"}}


def test_recipe_defaults_and_overrides():
    spec = prepare_run("d", "mmca", sets=["fusion.heads=8", "training.lr=3e-4"], region_dim=24, manifest=MANIFEST)
    assert spec.training.lr == 3e-4 and spec.training.batch_size == 64 and spec.training.warmup_epochs == 1  # SAEM
    assert spec.model["fusion"]["heads"] == 8
    assert spec.model["visual"]["in_dim"] == 24 and spec.model["text"]["name"] == "gru"
    assert spec.data_settings == {"visual.in_dim": 24, "text.name": "gru"}
    vsepp = prepare_run("d", "vsepp", epochs=3, region_dim=24, manifest=None)
    assert (vsepp.training.lr, vsepp.training.batch_size, vsepp.training.epochs) == (2e-4, 128, 3)


def test_user_setting_beats_the_manifest_and_is_logged(caplog):
    caplog.set_level("INFO", logger="mmzoo.training")
    spec = prepare_run("d", "vsepp", sets=["text.name=gru", "text.word_dim=16"], region_dim=24, manifest=MANIFEST)
    assert spec.data_settings == {"visual.in_dim": 24}
    assert spec.model["text"]["word_dim"] == 16
    assert "keeping your text.name" in caplog.text and "visual.in_dim=24" in caplog.text


def test_config_file_sections_nested_and_full(tmp_path):
    nested = tmp_path / "c.yaml"
    nested.write_text("model:\n  fusion: {heads: 2}\n  alpha: 0.5\ntraining:\n  epochs: 4\n  hard_negatives: 8\n")
    spec = prepare_run("d", "mmca", config_file=nested, sets=["training.epochs=5"], region_dim=24, manifest=MANIFEST)
    assert spec.model["fusion"]["heads"] == 2 and spec.model["alpha"] == 0.5
    assert spec.training.epochs == 5 and spec.training.hard_negatives == 8  # --set wins over the file
    full = tmp_path / "full.json"
    model = {"visual": {"name": "mean-fc"}, "text": {"name": "gru"}, "loss": {"name": "triplet"}, "alpha": 0.0}
    full.write_text(json.dumps({"model": model}))
    spec = prepare_run("d", None, config_file=full, region_dim=24, manifest=None)
    assert spec.model["visual"] == {"name": "mean-fc", "in_dim": 24} and spec.model["fusion"] is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sets": ["nokey"]}, "KEY=VALUE"),
        ({"sets": ["training.epochs=0"]}, "training.epochs"),
        ({"sets": ["training.learning_rate=1"]}, "unknown training field"),
        ({"sets": ["visual.in_dim=99"]}, "regions of size 24"),
        ({"sets": ["fusion.nope=1"]}, "fusion.nope"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        prepare_run("d", "mmca", region_dim=24, manifest=MANIFEST, **kwargs)


def test_bad_config_file_and_missing_model(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("modle: {}\n")
    with pytest.raises(ConfigError, match="unknown top-level"):
        prepare_run("d", "mmca", config_file=bad, region_dim=24, manifest=None)
    with pytest.raises(ConfigError, match="--model"):
        prepare_run("d", None, region_dim=24, manifest=None)


def test_parse_sets_uses_yaml_values():
    model, training = parse_sets(["alpha=0.5", "fusion.windows=[1, 2]", "training.hard_negatives=all", "x=on"])
    assert model == {"alpha": 0.5, "fusion.windows": [1, 2], "x": True}
    assert training == {"hard_negatives": "all"}
    assert TrainConfig.for_recipe({}, training).hard_negatives == "all"


def test_cli_argument_errors(capsys, tmp_path):
    assert main(["train", "--model", "vsepp"]) == 2
    assert "--data and --out" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--model", "mmca"]) == 2
    assert "only --epochs" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not an mmzoo training run" in capsys.readouterr().err
    spec = prepare_run(tmp_path, "vsepp", region_dim=24, manifest=None)
    (tmp_path / "run.json").write_text(json.dumps(spec.to_dict()))
    assert main(["train", "--resume", str(tmp_path)]) == 2  # killed before its first checkpoint
    assert "no checkpoint yet" in capsys.readouterr().err


def test_manifest_suggestions_apply_only_where_they_fit():
    manifest = {
        "model_overrides": {"text.name": "gru", "embed_dim": 32, "fusion.heads": 2, "text.word_dim": 16},
        "training_overrides": {"epochs": 4, "batch_size": 16},
    }
    mmca = prepare_run("d", "mmca", sets=["training.epochs=2"], region_dim=24, manifest=manifest)
    assert mmca.model["fusion"]["heads"] == 2 and mmca.model["embed_dim"] == 32 and mmca.model["text"]["word_dim"] == 16
    assert (mmca.training.epochs, mmca.training.batch_size) == (2, 16)  # --set beats the data, the data the recipe
    assert mmca.data_settings["training.batch_size"] == 16 and "training.epochs" not in mmca.data_settings
    vsepp = prepare_run("d", "vsepp", region_dim=24, manifest=manifest)  # no fusion section: fusion.heads skipped
    assert vsepp.model["fusion"] is None and "fusion.heads" not in vsepp.data_settings


def test_data_swaps_only_a_downloading_text_encoder_and_keeps_hard_negatives_off_a_fused_only_model():
    manifest = {
        "model_overrides": {"text.name": "gru", "embed_dim": 64},
        "training_overrides": {"hard_negatives": 8, "epochs": 5},
    }
    mmca = prepare_run("d", "mmca", region_dim=24, manifest=manifest)
    assert mmca.model["text"]["name"] == "gru" and mmca.training.hard_negatives == 8  # BERT needs a download
    scan = prepare_run("d", "scan-t2i", region_dim=24, manifest=manifest)
    assert scan.model["text"]["name"] == "scan-gru" and scan.model["embed_dim"] == 64  # its own GRU stays
    assert scan.training.hard_negatives == "all" and scan.training.epochs == 5  # <i0,c0> is untrained with dual 0
