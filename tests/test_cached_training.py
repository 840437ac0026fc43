"""MMCA's training path through the cached decomposition: the same scores and gradients as the straightforward
joint unit (``reference_forward`` / ``pair_scores``), and dropout where ``nn.TransformerEncoderLayer`` has it."""

from __future__ import annotations

import pytest
import torch

import mmzoo
from mmzoo.training.negatives import candidate_mask, score_rows
from tests.conftest import masked_fragments, random_affine, tiny_model

D = 32


def random_fragments(n: int, length: int, seed: int) -> mmzoo.plugin.Fragments:
    """Leaf fragments (gradients reach them) with holes in the mask; each row keeps at least one."""
    fragments = masked_fragments(n, length, seed, dim=D, drop=0.3)
    fragments.features.requires_grad_(True)
    return fragments


def no_dropout_fusion(**overrides) -> mmzoo.plugin.FusionBlock:
    """Training mode (the training path) with dropout 0, so that both paths compute the same function."""
    return random_affine(tiny_model("mmca", **{"fusion.dropout": 0.0, **overrides}).fusion).train()


def gradients(fn, fusion, images, texts) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Scores and the gradients of a fixed random projection of them w.r.t. every parameter and both inputs."""
    fusion.zero_grad()
    for x in (images.features, texts.features):
        x.grad = None
    scores = fn(images, texts)
    weights = torch.randn(scores.shape, generator=torch.Generator().manual_seed(7))
    (scores * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in fusion.named_parameters() if p.grad is not None}
    grads["images"], grads["texts"] = images.features.grad.clone(), texts.features.grad.clone()
    return scores.detach(), grads


@pytest.mark.parametrize("text_pool", ["cnn", "mean"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("heads", [1, 4])
def test_cached_forward_gradients_equal_the_straightforward_path(text_pool, layers, heads):
    fusion = no_dropout_fusion(**{"fusion.text_pool": text_pool, "fusion.layers": layers, "fusion.heads": heads})
    images, texts = random_fragments(4, 6, seed=1), random_fragments(5, 7, seed=2)
    cached, g_cached = gradients(fusion, fusion, images, texts)
    reference, g_ref = gradients(fusion.reference_forward, fusion, images, texts)
    torch.testing.assert_close(cached, reference, atol=1e-5, rtol=1e-4)
    assert g_cached.keys() == g_ref.keys() and len(g_ref) > 10
    for name in g_ref:
        torch.testing.assert_close(g_cached[name], g_ref[name], atol=1e-5, rtol=1e-4, msg=f"gradient of {name}")


@pytest.mark.parametrize("block_pairs", [3, 4096])
def test_listed_pairs_gradients_equal_the_straightforward_path(block_pairs):
    """score_pairs_indexed (hard negatives): each item prepared once, pairs in any order, with repeats."""
    fusion = no_dropout_fusion(**{"fusion.block_pairs": block_pairs})
    images, texts = random_fragments(4, 6, seed=3), random_fragments(5, 7, seed=4)
    g = torch.Generator().manual_seed(5)
    img_idx, txt_idx = torch.randint(0, 4, (13,), generator=g), torch.randint(0, 5, (13,), generator=g)
    cached, g_cached = gradients(lambda a, b: fusion.score_pairs_indexed(a, b, img_idx, txt_idx), fusion, images, texts)
    reference, g_ref = gradients(lambda a, b: fusion.pair_scores(a, b, img_idx, txt_idx), fusion, images, texts)
    torch.testing.assert_close(cached, reference, atol=1e-5, rtol=1e-4)
    for name in g_ref:
        torch.testing.assert_close(g_cached[name], g_ref[name], atol=1e-5, rtol=1e-4, msg=f"gradient of {name}")


def test_cached_path_in_small_tiles_equals_one_tile():
    fusion = no_dropout_fusion(**{"fusion.block_pairs": 2})
    images, texts = random_fragments(5, 6, seed=6), random_fragments(3, 7, seed=7)
    tiled, g_tiled = gradients(fusion, fusion, images, texts)
    fusion.config = fusion.config.model_copy(update={"pairs_per_block": 4096})
    whole, g_whole = gradients(fusion, fusion, images, texts)
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=1e-5)
    for name in g_whole:
        torch.testing.assert_close(g_tiled[name], g_whole[name], atol=1e-6, rtol=1e-5)


def test_hard_negative_training_scores_use_the_indexed_path(monkeypatch):
    model = tiny_model("mmca", **{"fusion.dropout": 0.0}).train()
    images, texts = random_fragments(6, 5, seed=8), random_fragments(6, 7, seed=9)
    calls = []
    original = type(model.fusion).score_pairs_indexed

    def spy(self, a, b, i, t):
        calls.append(len(i))
        return original(self, a, b, i, t)

    monkeypatch.setattr(type(model.fusion), "score_pairs_indexed", spy)
    scores = score_rows(model, images, texts, hard_negatives=2)
    candidates = candidate_mask(images.pooled @ texts.pooled.t(), 2)
    assert calls == [int(candidates.sum())]
    reference = images.pooled @ texts.pooled.t() + model.alpha * model.fusion.reference_forward(images, texts)
    torch.testing.assert_close(scores[candidates], reference[candidates], atol=1e-5, rtol=1e-4)
    assert torch.isinf(scores[~candidates]).all()


def test_dropout_sits_where_the_transformer_unit_has_it(monkeypatch):
    """Every dropout site of nn.TransformerEncoderLayer is applied with its rate: attention weights (the intra
    block once per item, the cross block per pair), after the output projection, after the GELU, after the FFN."""
    from mmzoo_plugins.mmca import engine

    fusion = tiny_model("mmca", **{"fusion.dropout": 0.25, "fusion.ffn_dim": 48}).fusion.train()
    images, texts = random_fragments(3, 4, seed=10), random_fragments(2, 5, seed=11)
    seen = []
    real = engine.keep_mask

    def record(shape, p, device):
        if p > 0:
            seen.append((tuple(shape), p))
        return real(shape, p, device)

    monkeypatch.setattr(engine, "keep_mask", record)
    scores = fusion(images, texts)
    heads, k, length = fusion.units[0].self_attn.num_heads, 4, 5
    assert all(p == 0.25 for _, p in seen)
    shapes = [s for s, _ in seen]
    assert (3, heads, k, k) in shapes and (2, heads, length, length) in shapes  # intra weights, once per item
    assert sum(1 for s in shapes if len(s) == 4 and s[0] == heads) == 2  # cross weights of both directions
    # the token-wise work runs on the valid tokens of each modality: regions of 2 captions' pairs, words of 3 images'
    for tokens in (int(2 * images.mask.sum()), int(3 * texts.mask.sum())):
        assert shapes.count((tokens, D)) == 2 and (tokens, 48) in shapes  # after out-proj, after FFN; after GELU
    assert len(shapes) == 10
    monkeypatch.setattr(engine, "keep_mask", real)
    torch.manual_seed(0)
    a = fusion(images, texts)
    torch.manual_seed(0)
    b = fusion(images, texts)
    torch.manual_seed(1)
    c = fusion(images, texts)
    assert torch.equal(a, b) and not torch.allclose(a, c), "dropout is seeded and active in training"
    fusion.eval()
    with torch.no_grad():
        torch.testing.assert_close(fusion(images, texts), fusion.reference_forward(images, texts), atol=1e-5, rtol=1e-4)
    assert scores.requires_grad


@pytest.mark.parametrize("device", ["cpu"])
def test_keep_mask_has_the_rate_and_an_unbiased_scale(device):
    from mmzoo_plugins.mmca import engine

    torch.manual_seed(0)
    keep, scale = engine.keep_mask((1000, 1000), 0.1, torch.device(device))
    assert keep.dtype == torch.bool and keep.shape == (1000, 1000)
    kept = float(keep.float().mean())
    assert abs(kept - 0.9) < 0.002  # 1e6 draws: the standard error is 3e-4
    assert scale == pytest.approx(1 / (1 - round(0.1 * 65536) / 65536))
    assert abs(kept * scale - 1.0) < 0.003  # E[keep * scale] = 1
    assert engine.keep_mask((3,), 0.0, torch.device(device)) == (None, 1.0)
    torch.manual_seed(0)
    again, _ = engine.keep_mask((1000, 1000), 0.1, torch.device(device))
    assert torch.equal(keep, again), "torch.manual_seed seeds it"


def test_training_with_dropout_matches_the_reference_in_expectation():
    """Dropout in the cached path moves the scores like nn.TransformerEncoderLayer's does: over many draws the two
    paths' scores have the same mean (within 4 standard errors) and the same spread (within a third)."""
    fusion = tiny_model("mmca", **{"fusion.dropout": 0.1}).fusion.train()
    images, texts = random_fragments(2, 4, seed=12), random_fragments(2, 5, seed=13)
    with torch.no_grad():
        torch.manual_seed(0)
        cached = torch.stack([fusion(images, texts) for _ in range(400)])
        reference = torch.stack([fusion.reference_forward(images, texts) for _ in range(400)])
    spread = reference.std(0)
    assert (spread > 0.005).all(), "dropout moves the reference's scores"
    ratio = cached.std(0) / spread
    assert (ratio > 0.75).all() and (ratio < 1.33).all(), f"dropout noise differs: std ratio {ratio}"
    assert ((cached.mean(0) - reference.mean(0)).abs() < 4 * spread / 400**0.5).all()


def graph_nodes(out: torch.Tensor) -> set[str]:
    """Names of the autograd nodes behind ``out``."""
    seen, todo = {}, [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and id(node) not in seen:
            seen[id(node)] = type(node).__name__
            todo.extend(n for n, _ in node.next_functions)
    return set(seen.values())


@pytest.mark.parametrize("dropout", [0.0, 0.25])
@pytest.mark.parametrize("padded", [False, True])
def test_cross_softmax_backward_equals_autograd(dropout, padded):
    """The training path's cross-block softmax (hand-written backward) against autograd through the same ops, with
    the same dropout draws (same seed): weights, intra share and the gradients of the logits and lse_intra."""
    from mmzoo_plugins.mmca import engine

    g = torch.Generator().manual_seed(14)
    logits = torch.randn(3, 2, 5, 4, generator=g, dtype=torch.float64).float()
    lse = torch.randn(3, 2, 4, generator=g)
    bias = None
    if padded:
        mask = torch.rand(3, 5, generator=g) > 0.4
        mask[:, 0] = True
        bias = engine.key_bias(mask).view(3, 1, 5, 1)
    upstream = torch.randn(3, 2, 5, 4, generator=g), torch.randn(3, 2, 4, generator=g)
    results, names = [], []
    for fn in (engine._cross_softmax, engine._cross_softmax_ops):
        x, y = logits.clone().requires_grad_(True), lse.clone().requires_grad_(True)
        torch.manual_seed(3)
        weights, share = fn(x, bias, y, 2, dropout)
        ((weights * upstream[0]).sum() + (share * upstream[1]).sum()).backward()
        results.append((weights.detach(), share.detach(), x.grad, y.grad))
        names.append(graph_nodes(weights))
    assert "_CrossSoftmaxBackward" in names[0] and "_CrossSoftmaxBackward" not in names[1]
    for mine, theirs in zip(*results, strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=1e-5)
    if dropout:
        assert (results[0][0] == 0).any(), "dropout was drawn"


def test_gather_rows_equals_indexing_with_gradients():
    """The cache's row gather (index_select; backward: a contiguous copy of the gradient, then index_add) against
    advanced indexing, with repeated rows and a transposed upstream gradient (as the attention products give)."""
    from mmzoo_plugins.mmca import engine

    g = torch.Generator().manual_seed(15)
    table = torch.randn(5, 3, 4, generator=g)
    index = torch.tensor([4, 0, 4, 2, 2, 2])
    upstream = torch.randn(6, 4, 3, generator=g).transpose(1, 2)
    results = []
    for fn in (engine.gather_rows, lambda t, i: t[i]):
        x = table.clone().requires_grad_(True)
        out = fn(x, index)
        out.backward(upstream)
        results.append((out.detach(), x.grad))
    assert "_GatherRowsBackward" in graph_nodes(engine.gather_rows(table.clone().requires_grad_(True), index))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-6, rtol=1e-6)
