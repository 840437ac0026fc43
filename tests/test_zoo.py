"""The pretrained table, the zoo's model cards and configs, and the cards of saved models (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

import mmzoo
from mmzoo import cards, zoo
from mmzoo.cli import main
from mmzoo.config import ModelConfig, load_config_file
from mmzoo.errors import DataError, UnknownComponentError
from tests.conftest import tiny_model

ROOT = Path(__file__).resolve().parents[1]


def test_list_pretrained_pairs_and_records():
    assert mmzoo.list_pretrained() == [("mmca-coco", "mmca"), ("mmca-f30k", "mmca")]
    assert mmzoo.list_pretrained("*f30k") == [("mmca-f30k", "mmca")]
    for entry in zoo.pretrained_entries():
        assert entry.recipe in mmzoo.list_models()
        # no weights exist yet: the table must say so and pin nothing, and claim no measured number
        assert entry.status == zoo.NOT_TRAINED and entry.revision is None and not entry.available
        assert entry.metrics == {} and entry.metrics_source is None
        record = entry.to_dict()
        assert {"alias", "recipe", "dataset", "hub_repo", "revision", "metrics", "status", "license", "paper"} <= set(
            record
        )
    with pytest.raises(UnknownComponentError, match="Known aliases: mmca-coco, mmca-f30k"):
        zoo.get_pretrained("mmca-imagenet")


def test_paper_numbers_are_the_guides():
    coco = zoo.get_pretrained("mmca-coco").paper_results
    assert coco["COCO 1K (5-fold)"]["rsum"] == 514.7 and coco["COCO 5K"]["rsum"] == 416.4
    f30k = zoo.get_pretrained("mmca-f30k").paper_results["Flickr30K 1K test"]
    assert [f30k[k] for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")] == [
        74.2,
        92.8,
        96.4,
        54.8,
        81.4,
        87.8,
    ]
    for results in zoo.PAPER_RESULTS.values():
        for values in results.values():  # rsum is the sum of the six recalls
            assert abs(sum(v for k, v in values.items() if k != "rsum") - values["rsum"]) < 0.05


def test_mmzoo_list_pretrained(capsys):
    assert main(["list", "--pretrained"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["alias", "recipe", "dataset", "metrics", "status"]
    row = next(line for line in lines if line.startswith("mmca-coco"))
    assert "not trained" in row and "none measured (paper: COCO 1K (5-fold) rsum 514.7" in row
    assert "not trained yet: mmca-coco, mmca-f30k" in out
    assert main(["list", "--pretrained", "*f30k"]) == 0
    assert "mmca-coco" not in capsys.readouterr().out


def test_zoo_cards_are_current_and_truthful():
    for entry in zoo.pretrained_entries():
        path = ROOT / entry.card
        assert path.read_text(encoding="utf-8") == str(cards.zoo_card(entry)), "run `python -m mmzoo.cards`"
        card = ModelCard.load(path)
        assert card.data.library_name == "mmzoo" and card.data.license == entry.license
        assert card.data.eval_results is None  # nothing measured: no model-index
        assert "Status: not trained" in card.text and "in the paper" in card.text
        assert entry.config in card.text


@pytest.mark.parametrize("alias", ["mmca-coco", "mmca-f30k"])
def test_zoo_configs_hold_the_recipe_and_its_training_settings(alias):
    entry = zoo.get_pretrained(alias)
    data = load_config_file(ROOT / entry.config)
    assert set(data) == {"model", "training"}
    recipe = mmzoo.registry.model.get(entry.recipe)
    assert ModelConfig.parse(data["model"]).to_dict() == ModelConfig.parse(recipe.config).to_dict()
    assert data["training"] == recipe.training
    assert {"epochs", "batch_size", "lr", "lr_decay_every", "lr_decay", "grad_clip", "warmup_epochs"} <= set(
        data["training"]
    )


def test_save_pretrained_writes_a_model_card(tmp_path):
    model = tiny_model("vsepp")
    folder = model.save_pretrained(tmp_path / "m")
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "mmzoo"
    assert {"mmzoo", "mean-fc", "gru", "triplet"} <= set(card.data.tags)
    assert "No numbers have been measured" in card.text and card.data.eval_results is None
    config = json.loads((folder / "config.json").read_text())
    assert {c for r in config["requires"] for c in r["components"]} == {
        "visual_encoder:mean-fc",
        "text_encoder:gru",
        "loss:triplet",
    }
    assert (folder / "text" / "vocab.json").is_file()  # the vocabulary travels with the weights


def test_run_metrics_pick_the_best_epoch_and_reject_bad_files(tmp_path):
    assert cards.read_run_metrics(tmp_path) is None
    (tmp_path / "metrics.jsonl").write_text(
        '{"epoch": 1, "rsum": 10.0, "i2t_r1": 1.0, "loss": 3.0}\n\n{"epoch": 2, "rsum": 12.0, "i2t_r1": 2.0}\n'
    )
    best = cards.read_run_metrics(tmp_path)
    assert best["epoch"] == 2 and best["metrics"] == {"i2t_r1": 2.0, "rsum": 12.0}
    (tmp_path / "run.json").write_text('{"best_epoch": 1}')
    assert cards.read_run_metrics(tmp_path)["epoch"] == 1
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "loss": 3.0}\n')
    with pytest.raises(DataError, match="holds no dev metrics"):
        cards.read_run_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("not json\n")
    with pytest.raises(DataError, match="line 1 is not JSON"):
        cards.read_run_metrics(tmp_path)
    (tmp_path / "run.json").write_text("[1]")
    with pytest.raises(DataError, match="must hold a JSON object"):
        cards.read_run_info(tmp_path)
