"""Every way MMCA's engine can compute (tiles, the sdpa attention, torch.compile with static shapes, the float32
in-place path, autocast) gives the straightforward joint unit's scores (and, with gradients, its gradients)."""

from __future__ import annotations

import pytest
import torch

import mmzoo
from mmzoo.scoring import fused_matrix, score_pairs, scoring_mode
from tests.conftest import masked_fragments as random_fragments
from tests.conftest import random_affine, tiny_model


def fusion_with(**options) -> mmzoo.plugin.FusionBlock:
    overrides = {k: v for k, v in options.items() if k.startswith("fusion.")}
    fusion = random_affine(tiny_model("mmca", **overrides).fusion).eval()
    return fusion.configure_engine(**{k: v for k, v in options.items() if not k.startswith("fusion.")})


def both_ways(fusion, images, texts) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dense engine, reference, listed engine, reference at the listed pairs)."""
    with torch.no_grad():
        reference = fusion.reference_forward(images, texts)
    dense = fused_matrix(fusion, images, texts, block_size=4, pairs_per_block=6)
    g = torch.Generator().manual_seed(9)
    i, t = torch.randint(0, len(images), (19,), generator=g), torch.randint(0, len(texts), (19,), generator=g)
    with scoring_mode("cpu"):
        listed = score_pairs(fusion, fusion.prepare_images(images), fusion.prepare_texts(texts), i, t, 7)
    return dense, reference, listed, reference[i, t]


@pytest.mark.parametrize("attention", ["merge", "sdpa"])
@pytest.mark.parametrize("tile_tokens", [None, 7, 40])
@pytest.mark.parametrize("holes", [True, False])
def test_attention_and_tiles_equal_the_reference(attention, tile_tokens, holes):
    fusion = fusion_with(attention=attention, tile_tokens=tile_tokens)
    images, texts = random_fragments(5, 6, 1, holes=holes), random_fragments(7, 8, 2, holes=holes)
    dense, reference, listed, listed_ref = both_ways(fusion, images, texts)
    torch.testing.assert_close(dense, reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(listed, listed_ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("text_pool", ["cnn", "mean"])
@pytest.mark.parametrize("layers", [1, 2])
def test_sdpa_with_later_units_and_pooling(text_pool, layers):
    fusion = fusion_with(attention="sdpa", **{"fusion.text_pool": text_pool, "fusion.layers": layers})
    images, texts = random_fragments(4, 5, 3), random_fragments(6, 7, 4)
    dense, reference, listed, listed_ref = both_ways(fusion, images, texts)
    torch.testing.assert_close(dense, reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(listed, listed_ref, atol=1e-5, rtol=1e-4)


def test_sdpa_training_gradients_equal_the_reference():
    fusion = (
        random_affine(tiny_model("mmca", **{"fusion.dropout": 0.0}).fusion).train().configure_engine(attention="sdpa")
    )
    images, texts = random_fragments(3, 5, 5), random_fragments(4, 6, 6)
    images.features.requires_grad_(True)
    fusion(images, texts).sum().backward()
    cached = {n: p.grad.clone() for n, p in fusion.named_parameters()}, images.features.grad.clone()
    fusion.zero_grad()
    images.features.grad = None
    fusion.reference_forward(images, texts).sum().backward()
    for name, p in fusion.named_parameters():
        torch.testing.assert_close(cached[0][name], p.grad, atol=1e-5, rtol=1e-4, msg=name)
    torch.testing.assert_close(cached[1], images.features.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attention", ["merge", "sdpa"])
def test_bf16_autocast_paths_are_close(attention):
    fusion = fusion_with(attention=attention)
    images, texts = random_fragments(4, 6, 7), random_fragments(5, 8, 8)
    exact = fused_matrix(fusion, images, texts, precision="fp32")
    half = fused_matrix(fusion, images, texts, precision="bf16")
    assert half.dtype == torch.float32 and (half - exact).abs().max() < 0.05


def test_reference_path_switch():
    fusion = fusion_with(path="reference")
    images, texts = random_fragments(3, 4, 9), random_fragments(4, 5, 10)
    with torch.no_grad():
        assert torch.equal(fusion(images, texts), fusion.reference_forward(images, texts))


@pytest.mark.slow
def test_compiled_static_tiles_equal_the_reference():
    """torch.compile (static shapes: tiles padded to one shape, not trimmed) on the CPU; compiles twice (~1 min)."""
    fusion = fusion_with(compile=True, attention="merge", tile_tokens=40)
    images, texts = random_fragments(5, 6, 11), random_fragments(7, 8, 12)
    dense, reference, listed, listed_ref = both_ways(fusion, images, texts)
    torch.testing.assert_close(dense, reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(listed, listed_ref, atol=1e-5, rtol=1e-4)


def test_a_direct_eval_call_keeps_the_block_bound(monkeypatch):
    """``fusion(images, texts)`` in eval mode scores in blocks of at most ``block_pairs`` pairs, as configured."""
    fusion = fusion_with(**{"fusion.block_pairs": 6})
    images, texts = random_fragments(5, 6, 1), random_fragments(7, 8, 2)
    sizes, original = [], type(fusion).score_prepared
    monkeypatch.setattr(
        type(fusion), "score_prepared", lambda s, i, t: (sizes.append(len(i) * len(t)), original(s, i, t))[1]
    )
    with torch.no_grad():
        scores, reference = fusion(images, texts), fusion.reference_forward(images, texts)
    torch.testing.assert_close(scores, reference, atol=1e-5, rtol=1e-4)
    assert sizes and max(sizes) <= 6, sizes


def test_empty_inputs_give_empty_score_matrices():
    fusion = fusion_with()
    images, texts = random_fragments(3, 6, 1), random_fragments(4, 8, 2)
    for a, b in ((images[:0], texts), (images, texts[:0])):
        for score in (fusion, fusion.reference_forward, fusion.train()):
            assert score(a, b).shape == (len(a), len(b))
        fusion.eval()


def test_compile_tiles_every_block_through_the_static_unit(monkeypatch):
    """With compile=True no block takes the eager float32 shortcut (else the option would do nothing on a CPU)."""
    fusion = fusion_with(compile=True)
    calls = []

    def fake_static_tile(self, images, texts, *args):  # stands in for the compiled unit (no compiler needed)
        calls.append((len(images), len(texts)))
        return torch.zeros(len(images), len(texts))

    monkeypatch.setattr(type(fusion), "_static_tile", fake_static_tile)
    monkeypatch.setattr(type(fusion), "_score_block_fast", lambda *a, **k: pytest.fail("eager shortcut taken"))
    with torch.no_grad():
        fusion(random_fragments(3, 6, 1), random_fragments(4, 8, 2))
    assert calls
