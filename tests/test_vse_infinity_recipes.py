"""The VSE-infinity recipes: their architecture and schedule parse, and a tiny model trains a step."""

from __future__ import annotations

import pytest
import torch

import mmzoo
from mmzoo import registry
from mmzoo.training.config import TrainConfig
from mmzoo_plugins.vse_infinity.bert import TINY_BERT
from tests.conftest import CAPTIONS, minilm_path

TINY = {"embed_dim": 32, "visual.in_dim": 24, "visual.pe_dim": 8, "text.pe_dim": 8}


def tiny(recipe: str, **extra) -> mmzoo.MatchingModel:
    torch.manual_seed(0)
    settings = dict(TINY)
    if recipe == "vse-infinity":
        settings.update({"text.bert_config": TINY_BERT, "text.tokenizer": minilm_path()})
    else:
        settings.update({"text.word_dim": 16, "text.min_count": 1})
    model = mmzoo.create_model(recipe, **settings, **extra)
    model.text.fit(CAPTIONS)
    return model


@pytest.mark.parametrize("recipe", ["vse-infinity", "vse-infinity-bigru", "vse-infinity-wsl-grid"])
def test_recipe_is_a_dual_encoder(recipe):
    config = mmzoo.config.ModelConfig.parse(registry.model.get(recipe).config)
    assert config.fusion is None and config.alpha == 0.0 and config.dual_weight == 1.0
    assert config.embed_dim == 1024 and config.loss.params == {
        "margin": 0.2,
        "hardest_negative": True,
        "reduction": "sum",
    }


def test_schedules_are_theirs():
    bert = TrainConfig.for_recipe(registry.model.get("vse-infinity").training)
    assert (bert.optimizer, bert.lr, bert.weight_decay, bert.lr_groups) == ("adamw", 5e-4, 1e-4, {"text.bert": 0.1})
    assert (bert.epochs, bert.lr_decay_every, bert.lr_decay, bert.batch_size) == (25, 15, 0.1, 128)
    assert (bert.grad_clip, bert.warmup_epochs) == (2.0, 1)
    gru = TrainConfig.for_recipe(registry.model.get("vse-infinity-bigru").training)
    assert (gru.optimizer, gru.weight_decay, gru.lr_groups) == ("adamw", 0.01, {})  # bigru branch: AdamW defaults
    grid = TrainConfig.for_recipe(registry.model.get("vse-infinity-wsl-grid").training)
    assert grid.lr_groups == {"text.bert": 0.1, "visual.grid.backbone": 0.01}


def test_lr_group_prefixes_name_real_parameters():
    names = [n for n, _ in tiny("vse-infinity").named_parameters()]
    assert any(n.startswith("text.bert.") for n in names) and any(n.startswith("text.linear") for n in names)


@pytest.mark.parametrize("recipe", ["vse-infinity", "vse-infinity-bigru"])
def test_tiny_model_trains_a_step_and_evaluates_deterministically(recipe):
    model = tiny(recipe).train()
    x = torch.randn(4, 6, 24)
    out = model(x, CAPTIONS)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.scores.shape == (4, 4)
    grads = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert grads == []
    model.eval()
    with torch.no_grad():
        a = model.similarity(model.encode_images(x), model.encode_texts(CAPTIONS))
        b = model.similarity(model.encode_images(x), model.encode_texts(CAPTIONS))
    assert torch.equal(a, b)


@pytest.mark.slow
# 64 images x 2 epochs is a run of the command, not a training budget: the collapse warning is expected here
# (it is tested in tests/test_guarantees.py)
@pytest.mark.filterwarnings("ignore:Epoch .*the model looks collapsed")
def test_mmzoo_train_runs_the_bigru_recipe_on_shapes(tmp_path):
    from mmzoo.cli import main
    from mmzoo.data import make_shapes

    make_shapes(tmp_path / "data", images=64, dev_images=10, test_images=10, seed=0)
    sets = ["embed_dim=32", "text.word_dim=16", "training.batch_size=16"]  # no text.name: the data keeps the bi-GRU
    args = ["train", "--model", "vse-infinity-bigru", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    assert main([*args, "--epochs", "2", "--no-progress", *(a for s in sets for a in ("--set", s))]) == 0
    model = mmzoo.from_pretrained(f"local-dir:{tmp_path / 'run' / 'best'}")
    assert model.config.text.name == "vse-infinity-bigru" and model.config.visual.name == "vse-infinity-regions"
