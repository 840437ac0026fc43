"""The pretrained table, the zoo's model cards and configs, and the cards of saved models (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

import mmzoo
from mmzoo.cli import main
from mmzoo.config import ModelConfig, load_config_file
from mmzoo.errors import DataError, UnknownComponentError
from mmzoo.hub import cards, zoo
from tests.conftest import tiny_model

ROOT = Path(__file__).resolve().parents[1]


def test_list_pretrained_pairs_and_records():
    assert mmzoo.list_pretrained("mmca*") == [("mmca-coco", "mmca"), ("mmca-f30k", "mmca")]
    assert mmzoo.list_pretrained("mmca-f30k") == [("mmca-f30k", "mmca")]
    for entry in zoo.pretrained_entries():
        assert entry.recipe in mmzoo.list_models()
        assert zoo.plugin_of(entry.alias) is not None, "every entry comes from a plugin"
        record = entry.to_dict()
        assert {"alias", "recipe", "dataset", "weights", "metrics", "status", "license", "paper"} <= set(record)
    for entry in zoo.pretrained_entries("mmca*"):
        # no MMCA weights exist yet: the table must say so, pin nothing, and claim no measured number
        assert entry.status == zoo.NOT_TRAINED and entry.weights.revision is None
        assert entry.metrics == {} and entry.metrics_source is None
        assert zoo.plugin_of(entry.alias) == "mmca"
    with pytest.raises(UnknownComponentError, match=r"Known aliases: .*mmca-coco, mmca-f30k"):
        zoo.get_pretrained("mmca-imagenet")


def test_paper_numbers_are_the_guides():
    coco = zoo.get_pretrained("mmca-coco").published_results
    assert coco["COCO 1K (5-fold)"]["rsum"] == 514.7 and coco["COCO 5K"]["rsum"] == 416.4
    f30k = zoo.get_pretrained("mmca-f30k").published_results["Flickr30K 1K test"]
    assert [f30k[k] for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")] == [
        74.2,
        92.8,
        96.4,
        54.8,
        81.4,
        87.8,
    ]
    for entry in zoo.pretrained_entries():
        for values in entry.published_results.values():  # rsum is the sum of the six recalls
            if "rsum" in values and len(values) == 7:
                assert abs(sum(v for k, v in values.items() if k != "rsum") - values["rsum"]) < 0.15, entry.alias


def test_mmzoo_list_pretrained(capsys):
    assert main(["list", "--pretrained"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["alias", "recipe", "dataset", "numbers", "status", "plugin", "weights"]
    row = next(line for line in lines if line.startswith("mmca-coco"))
    assert "not trained" in row and "published: COCO 1K (5-fold) rsum 514.7" in row and " mmca " in row
    assert "need a manual download or training" in out
    assert main(["list", "--pretrained", "mmca-coco"]) == 0
    assert "mmca-coco: No weights exist yet. Train them on a GPU" in capsys.readouterr().out
    assert main(["list", "--pretrained", "mmca-f30k"]) == 0
    assert "mmca-coco" not in capsys.readouterr().out


def test_zoo_cards_are_current_and_truthful():
    for entry in zoo.pretrained_entries():
        path = ROOT / "model_cards" / f"{entry.alias}.md"
        assert path.read_text(encoding="utf-8") == str(cards.zoo_card(entry)), "run `python -m mmzoo.hub`"
        card = ModelCard.load(path)
        assert card.data.library_name == "mmzoo" and card.data.license == entry.license
        assert card.data.eval_results is None  # nothing measured: no model-index
        if entry.published_results:
            assert "as their source reports them" in card.text
        if entry.citation:
            assert entry.citation.strip() in card.text
    card = ModelCard.load(ROOT / "model_cards" / "mmca-coco.md")
    assert "Status: not trained" in card.text and "configs/mmca-coco.yaml" in card.text
    assert "Wei et al., CVPR 2020" in card.text and "(N, 36, 2048)" in card.text


@pytest.mark.parametrize("alias", ["mmca-coco", "mmca-f30k"])
def test_zoo_configs_hold_the_recipe_and_its_training_settings(alias):
    entry = zoo.get_pretrained(alias)
    data = load_config_file(ROOT / entry.training_config)
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
    (tmp_path / "run.json").write_text('{"best_epoch": 1}')  # not a key the trainer writes: the best rsum decides
    assert cards.read_run_metrics(tmp_path)["epoch"] == 2
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "loss": 3.0}\n')
    with pytest.raises(DataError, match="holds no dev metrics"):
        cards.read_run_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("not json\n")
    with pytest.raises(DataError, match="line 1 is not JSON"):
        cards.read_run_metrics(tmp_path)
    (tmp_path / "run.json").write_text("[1]")
    with pytest.raises(DataError, match="must hold a JSON object"):
        cards.read_run_info(tmp_path)
