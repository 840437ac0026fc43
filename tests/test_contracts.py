"""Contract tests parametrised over every registered component.

Each component gets, for free: output shapes, padding invariance (padded regions or tokens change no
output), gradients reaching every trainable parameter (and never a frozen BERT), same seed same output,
and for fusion blocks block-wise == whole. A component that needs small settings to run fast on a CPU
declares them in ``TINY_PARAMS``; any other registered component is built with its defaults.
"""

from __future__ import annotations

import pytest
import torch

import mmzoo
from mmzoo import registry
from tests.conftest import CAPTIONS, TINY_BERT, minilm_path

D = 32  # embed_dim
REGION_DIM = 24

TINY_PARAMS: dict[str, dict] = {
    "mmca-regions": {"in_dim": REGION_DIM, "heads": 4, "ffn_dim": 64},
    "mean-fc": {"in_dim": REGION_DIM},
    "bert-cnn": {"bert_config": TINY_BERT, "tokenizer": "<minilm>", "channels": 8},
    "gru": {"word_dim": 16},
    "mmca-cross": {"heads": 4, "ffn_dim": 64, "channels": 8},
    "word-region-max": {"proj_dim": 16},
}


def build(kind: str, name: str, seed: int = 0, **extra) -> mmzoo.Component:
    cls = registry.get_registry(kind).get(name)
    params = {**TINY_PARAMS.get(name, {}), **extra}
    params = {k: (minilm_path() if v == "<minilm>" else v) for k, v in params.items()}
    torch.manual_seed(seed)
    component = cls(cls.Config(**params), mmzoo.BuildContext(embed_dim=D))
    if kind == "text_encoder":
        component.fit(CAPTIONS)
    return component


def region_encoders() -> list[str]:
    return [
        n for n in registry.visual_encoder.names() if not getattr(registry.visual_encoder.get(n), "takes_pixels", False)
    ]


def trainable_without_grad(module: torch.nn.Module) -> list[str]:
    return [
        n for n, p in module.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]


def random_fragments(n: int, length: int, seed: int, pad_to: int | None = None) -> mmzoo.Fragments:
    """n samples with 1..length valid fragments each, right-padded with garbage to ``pad_to``."""
    g = torch.Generator().manual_seed(seed)
    total = pad_to or length
    feats = torch.randn(n, total, D, generator=g)
    valid = torch.randint(1, length + 1, (n,), generator=g)
    mask = torch.arange(total)[None] < valid[:, None]
    pooled = mmzoo.l2_normalize(torch.randn(n, D, generator=g))
    return mmzoo.Fragments(feats, mask, pooled)


# -- visual encoders ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", region_encoders())
def test_visual_encoder_contract(name):
    enc = build("visual_encoder", name).eval()
    x = torch.randn(3, 6, REGION_DIM)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    out = enc(x.masked_fill(~mask[..., None], 0), mask)
    assert out.features.shape == (3, 6, D) and out.pooled.shape == (3, D)
    torch.testing.assert_close(out.pooled.norm(dim=-1), torch.ones(3))
    # padding: garbage in masked regions, or no padding at all, changes nothing
    noisy = enc(torch.where(mask[..., None], x, torch.randn_like(x) * 100), mask)
    torch.testing.assert_close(noisy.pooled, out.pooled)
    alone = enc(x[1:2, :3], mask[1:2, :3])
    torch.testing.assert_close(alone.pooled, out.pooled[1:2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone.features[0], out.features[1, :3], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", region_encoders())
def test_visual_encoder_gradients_and_determinism(name):
    enc = build("visual_encoder", name).train()
    x = torch.randn(3, 5, REGION_DIM)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[2, 3:] = False
    out = enc(x, mask)
    (out.pooled.sum() + out.features[mask].sum()).backward()
    assert trainable_without_grad(enc) == []
    a = build("visual_encoder", name, seed=7).eval()(x, mask)
    b = build("visual_encoder", name, seed=7).eval()(x, mask)
    assert torch.equal(a.pooled, b.pooled)


# -- text encoders -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", registry.text_encoder.names())
def test_text_encoder_contract(name):
    enc = build("text_encoder", name).eval()
    tokens = enc.tokenize(CAPTIONS)
    out = enc(tokens)
    assert out.features.shape == (*tokens.ids.shape, D) and out.pooled.shape == (len(CAPTIONS), D)
    assert torch.equal(out.mask, tokens.mask)
    torch.testing.assert_close(out.pooled.norm(dim=-1), torch.ones(len(CAPTIONS)))
    # padding: the shortest caption alone (no padding) gives what it gives inside the padded batch
    shortest = min(range(len(CAPTIONS)), key=lambda i: int(tokens.mask[i].sum()))
    alone = enc(enc.tokenize([CAPTIONS[shortest]]))
    n = int(tokens.mask[shortest].sum())
    torch.testing.assert_close(alone.pooled[0], out.pooled[shortest], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone.features[0, :n], out.features[shortest, :n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", registry.text_encoder.names())
def test_text_encoder_gradients_and_determinism(name):
    enc = build("text_encoder", name).train()
    out = enc(enc.tokenize(CAPTIONS))
    (out.pooled.sum() + out.features[out.mask].sum()).backward()
    assert trainable_without_grad(enc) == []
    frozen = [n for n, p in enc.named_parameters() if not p.requires_grad]
    assert all(enc.get_parameter(n).grad is None for n in frozen)
    a = build("text_encoder", name, seed=3).eval()
    b = build("text_encoder", name, seed=3).eval()
    assert torch.equal(a(a.tokenize(CAPTIONS)).pooled, b(b.tokenize(CAPTIONS)).pooled)


def test_bert_is_frozen_and_gets_no_gradient():
    enc = build("text_encoder", "bert-cnn").train()
    assert not enc.bert.training, "a frozen BERT must stay in eval mode (no dropout)"
    assert all(not p.requires_grad for p in enc.bert.parameters())
    enc(enc.tokenize(CAPTIONS)).pooled.sum().backward()
    assert all(p.grad is None for p in enc.bert.parameters())
    unfrozen = build("text_encoder", "bert-cnn", frozen=False).train()
    out = unfrozen(unfrozen.tokenize(CAPTIONS))
    (out.pooled.sum() + out.features[out.mask].sum()).backward()
    assert trainable_without_grad(unfrozen) == []


def test_bert_cnn_loads_real_pretrained_bert_offline():
    enc = build("text_encoder", "bert-cnn", bert_config=None, pretrained=minilm_path()).eval()
    assert enc.bert.config.hidden_size == 384 and enc.bert.config.num_hidden_layers == 6
    out = enc(enc.tokenize(["a cat sits on a mat"]))
    assert torch.isfinite(out.features).all()


# -- fusion blocks -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", registry.fusion.names())
def test_fusion_contract(name):
    fusion = build("fusion", name).eval()
    images, texts = random_fragments(5, 6, seed=1), random_fragments(7, 9, seed=2)
    with torch.no_grad():
        whole = fusion(images, texts)
        assert whole.shape == (5, 7)
        blocks = torch.cat(
            [
                torch.cat([fusion(images[i : i + 2], texts[j : j + 3]) for j in range(0, 7, 3)], 1)
                for i in range(0, 5, 2)
            ]
        )
        torch.testing.assert_close(blocks, whole, atol=1e-5, rtol=1e-5)
        # garbage in the padding, and extra padding, change no score
        padded_i = random_fragments(5, 6, seed=1, pad_to=10)
        padded_i.features[:, :6] = images.features
        padded_i.mask[:, :6] = images.mask
        torch.testing.assert_close(fusion(padded_i, texts), whole, atol=1e-5, rtol=1e-5)
        noisy_t = mmzoo.Fragments(torch.where(texts.mask[..., None], texts.features, 1e3), texts.mask, texts.pooled)
        torch.testing.assert_close(fusion(images, noisy_t), whole, atol=1e-5, rtol=1e-5)
        pairs = fusion.score_pairs(images[:5], texts[:5])
        torch.testing.assert_close(pairs, whole[:5, :5].diagonal(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", registry.fusion.names())
def test_fusion_gradients_and_determinism(name):
    fusion = build("fusion", name).train()
    images, texts = random_fragments(3, 4, seed=1), random_fragments(3, 5, seed=2)
    images.features.requires_grad_(True)
    fusion(images, texts).sum().backward()
    assert trainable_without_grad(fusion) == []
    assert images.features.grad is not None
    a = build("fusion", name, seed=5).eval()(images, texts)
    b = build("fusion", name, seed=5).eval()(images, texts)
    assert torch.equal(a, b)


# -- losses ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", registry.loss.names())
def test_loss_contract(name):
    loss = build("loss", name)
    scores = torch.randn(4, 4, requires_grad=True)
    value = loss(scores)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert scores.grad is not None
    with pytest.raises(mmzoo.InputError):
        loss(torch.randn(3, 4))
    with pytest.raises(mmzoo.InputError):
        loss(torch.empty(0, 0))
