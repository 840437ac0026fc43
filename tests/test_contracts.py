"""The contract tests of :mod:`mmzoo.testing`, run over every registered component and recipe.

A component declares its own small settings (``test_config``), so this file names no plugin: a new family's
components get shapes, padding invariance, gradients, determinism and, for fusion blocks, block-wise == whole
and engine == forward, for free.
"""

from __future__ import annotations

import pytest
import torch

import mmzoo
from mmzoo import registry, testing


def region_encoders() -> list[str]:
    return [n for n in registry.visual_encoder.names() if not registry.visual_encoder.get(n).takes_pixels]


@pytest.mark.parametrize("name", region_encoders())
def test_visual_encoder_contract(name):
    testing.check_visual_encoder(registry.visual_encoder.get(name))


@pytest.mark.parametrize("name", registry.text_encoder.names())
def test_text_encoder_contract(name):
    testing.check_text_encoder(registry.text_encoder.get(name))


@pytest.mark.parametrize("name", registry.fusion.names())
def test_fusion_contract(name):
    testing.check_fusion(registry.fusion.get(name))


@pytest.mark.parametrize("name", registry.loss.names())
def test_loss_contract(name):
    testing.check_loss(registry.loss.get(name))


@pytest.mark.parametrize("name", registry.model.names())
def test_recipe_parses(name):
    testing.check_recipe(name)


def test_the_checks_catch_a_broken_component():
    """A fusion block whose engine path disagrees with forward fails its contract test."""

    class Broken(mmzoo.plugin.FusionBlock):
        def forward(self, images, texts):
            return images.pooled @ texts.pooled.t()

        def score_prepared(self, images, texts):
            return self.forward(images, texts) + 1.0

    with pytest.raises(AssertionError, match="score_prepared"):
        testing.check_fusion(Broken)


def test_bert_is_frozen_and_gets_no_gradient():
    enc = testing.build_component(registry.text_encoder.get("bert-cnn")).train()
    assert not enc.bert.training, "a frozen BERT must stay in eval mode (no dropout)"
    assert all(not p.requires_grad for p in enc.bert.parameters())
    enc(enc.tokenize(testing.CAPTIONS)).pooled.sum().backward()
    assert all(p.grad is None for p in enc.bert.parameters())
    unfrozen = testing.build_component(registry.text_encoder.get("bert-cnn"), frozen=False).train()
    out = unfrozen(unfrozen.tokenize(testing.CAPTIONS))
    (out.pooled.sum() + out.features[out.mask].sum()).backward()
    assert testing.trainable_without_grad(unfrozen) == []


def test_bert_cnn_loads_real_pretrained_bert_offline():
    from tests.conftest import minilm_path

    cls = registry.text_encoder.get("bert-cnn")
    enc = testing.build_component(cls, bert_config=None, pretrained=minilm_path()).eval()
    assert enc.bert.config.hidden_size == 384 and enc.bert.config.num_hidden_layers == 6
    with torch.no_grad():
        out = enc(enc.tokenize(["a cat sits on a mat"]))
    assert torch.isfinite(out.features).all()
