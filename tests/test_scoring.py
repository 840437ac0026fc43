"""The pair-scoring engine equals the straightforward computation; search and rerank behave."""

from __future__ import annotations

import pytest
import torch

import mmzoo
from mmzoo.evaluation import rerank_metrics
from mmzoo.scoring import (
    EmbeddingIndex,
    fused_matrix,
    rerank_rankings,
    score_caches,
    score_pairs,
    scoring_mode,
)
from tests.conftest import CAPTIONS, random_affine, tiny_model
from tests.conftest import masked_fragments as random_fragments

#: eight distinct captions (no ties in the scores)
EIGHT = CAPTIONS + [" ".join(reversed(c.split())) for c in CAPTIONS]


def mmca(**overrides) -> mmzoo.MatchingModel:
    return random_affine(tiny_model("mmca", **overrides)).eval()


@pytest.mark.parametrize("text_pool", ["cnn", "mean"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("heads", [1, 8])
def test_engine_equals_straightforward(text_pool, layers, heads):
    model = mmca(**{"fusion.text_pool": text_pool, "fusion.layers": layers, "fusion.heads": heads})
    images, texts = random_fragments(5, 7, seed=1), random_fragments(6, 9, seed=2)
    with torch.no_grad():
        reference = model.fusion(images, texts)  # pair_scores over every expanded pair
    fast = fused_matrix(model.fusion, images, texts, block_size=3, pairs_per_block=4)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-4)
    # listed pairs (the rerank path) too, in any order and with repeats
    g = torch.Generator().manual_seed(3)
    img_idx, txt_idx = torch.randint(0, 5, (17,), generator=g), torch.randint(0, 6, (17,), generator=g)
    with scoring_mode("cpu"):
        ic, tc = model.fusion.prepare_images(images), model.fusion.prepare_texts(texts)
        listed = score_pairs(model.fusion, ic, tc, img_idx, txt_idx, pairs_per_block=5)
    torch.testing.assert_close(listed, reference[img_idx, txt_idx], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("layers", [1, 2])
def test_engine_without_padding_takes_the_dense_path(layers):
    model = mmca(**{"fusion.layers": layers})
    images, texts = random_fragments(3, 5, seed=4), random_fragments(4, 6, seed=5)
    images.mask[:], texts.mask[:] = True, True
    with torch.no_grad():
        reference = model.fusion(images, texts)
    torch.testing.assert_close(fused_matrix(model.fusion, images, texts), reference, atol=1e-5, rtol=1e-4)


def test_engine_blocks_hold_at_most_pairs_per_block(monkeypatch):
    model = mmca(**{"fusion.block_pairs": 6})
    seen = []
    original = type(model.fusion).score_prepared

    def spy(self, images, texts):
        seen.append(len(images) * len(texts))
        return original(self, images, texts)

    monkeypatch.setattr(type(model.fusion), "score_prepared", spy)
    fused_matrix(model.fusion, random_fragments(7, 4, 1), random_fragments(9, 5, 2), block_size=5)
    assert seen and max(seen) <= 6
    assert sum(seen) == 7 * 9


def test_similarity_uses_engine_in_eval_and_keeps_the_block_contract():
    model = mmca()
    images = model.encode_images(torch.randn(6, 5, 24))
    texts = model.encode_texts(CAPTIONS + CAPTIONS[:1])
    with torch.no_grad():
        full = model.similarity(images, texts, block_size=4)
        reference = images.pooled @ texts.pooled.t() + model.alpha * model.fusion(images, texts)
        part = model.similarity(images[2:5], texts[1:4], block_size=2)
    torch.testing.assert_close(full, reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(part, full[2:5, 1:4], atol=1e-5, rtol=1e-4)


def test_training_mode_similarity_stays_differentiable():
    model = random_affine(tiny_model("mmca")).train()
    out = model(torch.randn(4, 5, 24), CAPTIONS)
    out.loss.backward()
    assert model.fusion.units[0].linear1.weight.grad is not None


def test_bf16_autocast_path_is_close_to_fp32():
    """The GPU precision path (autocast to bfloat16) exercised on the CPU."""
    model = mmca()
    images, texts = random_fragments(4, 6, 5), random_fragments(5, 8, 6)
    exact = fused_matrix(model.fusion, images, texts)
    half = fused_matrix(model.fusion, images, texts, precision="bf16")
    assert half.dtype == torch.float32
    assert (half - exact).abs().max() < 0.05


def test_unknown_precision_is_an_input_error():
    model = mmca()
    with pytest.raises(mmzoo.errors.InputError, match="precision"):
        fused_matrix(model.fusion, random_fragments(2, 3, 1), random_fragments(2, 3, 2), precision="fp8")


def test_default_protocol_falls_back_to_forward():
    model = tiny_model("vsepp", **{"fusion.name": "word-region-max", "fusion.proj_dim": 16, "alpha": 1.0}).eval()
    images, texts = random_fragments(5, 4, 1), random_fragments(7, 6, 2)
    with torch.no_grad():
        reference = model.fusion(images, texts)
    torch.testing.assert_close(fused_matrix(model.fusion, images, texts, block_size=2), reference)
    with scoring_mode("cpu"):
        idx = torch.tensor([0, 4, 2])
        pairs = score_pairs(model.fusion, images, texts, idx, torch.tensor([6, 0, 3]))
    torch.testing.assert_close(pairs, reference[idx, torch.tensor([6, 0, 3])])


@pytest.mark.parametrize("side", ["images", "texts"])
def test_search_exhaustive_and_rerank(side):
    model = mmca()
    images = model.encode_images(torch.randn(8, 5, 24))
    texts = model.encode_texts(EIGHT)
    with torch.no_grad():
        full = model.similarity(images, texts)
    if side == "images":
        index, queries, matrix = EmbeddingIndex.from_images(model, images), texts, full.t()
    else:
        index, queries, matrix = EmbeddingIndex.from_texts(model, texts), images, full
    exact = model.search(queries, index, top_k=3)
    torch.testing.assert_close(exact.scores, matrix.topk(3, dim=1).values, atol=1e-5, rtol=1e-4)
    assert exact.shortlist is None
    # reranking every item is exhaustive scoring
    everything = model.search(queries, index, top_k=3, rerank=len(index))
    torch.testing.assert_close(everything.scores, exact.scores, atol=1e-5, rtol=1e-4)
    # a short list: the cheap top-K, and the hits are those K by full score
    hits = model.search(queries, index, top_k=2, rerank=4)
    cheap = queries.pooled @ index.fragments.pooled.t()
    assert torch.equal(hits.shortlist.sort(1).values, cheap.topk(4, dim=1).indices.sort(1).values)
    expected = matrix.gather(1, hits.shortlist).topk(2, dim=1)
    torch.testing.assert_close(hits.scores, expected.values, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(matrix.gather(1, hits.indices), hits.scores, atol=1e-5, rtol=1e-4)


def test_search_without_fusion_and_bad_arguments():
    model = tiny_model("vsepp").eval()
    images = model.encode_images(torch.randn(5, 3, 24))
    texts = model.encode_texts(CAPTIONS)
    index = EmbeddingIndex.from_images(model, images)
    assert index.cache is None
    hits = model.search(texts, index, top_k=2, rerank=3)
    expected = (texts.pooled @ images.pooled.t()).topk(2, dim=1)
    assert torch.equal(hits.indices, expected.indices)
    with pytest.raises(mmzoo.errors.InputError, match="rerank"):
        model.search(texts, index, top_k=5, rerank=2)
    with pytest.raises(mmzoo.errors.InputError, match="top_k"):
        model.search(texts, index, top_k=0)


def test_rerank_rankings_rank_the_shortlist_first_and_score_the_union_once():
    model = mmca()
    images = model.encode_images(torch.randn(6, 5, 24))
    texts = model.encode_texts(EIGHT)
    with torch.no_grad():
        full = model.similarity(images, texts)
    ranking = rerank_rankings(model, images, texts, rerank=3)
    assert ranking.i2t_shortlist.sum(1).eq(3).all() and ranking.t2i_shortlist.sum(0).eq(3).all()
    assert ranking.pairs_scored == int((ranking.i2t_shortlist | ranking.t2i_shortlist).sum())
    for row in range(6):
        top = ranking.i2t[row].topk(3).indices
        assert set(top.tolist()) == set(ranking.i2t_shortlist[row].nonzero().flatten().tolist())
        assert torch.equal(full[row, top].argsort(descending=True), torch.arange(3))
    everything = rerank_rankings(model, images, texts, rerank=8)  # K >= N: exhaustive
    assert torch.equal(everything.i2t.argsort(1), full.argsort(1))
    assert torch.equal(everything.t2i.argsort(0), full.argsort(0))


def test_rerank_metrics_match_exhaustive_when_everything_is_shortlisted():
    from mmzoo.evaluation import recall_metrics

    model = mmca()
    images = model.encode_images(torch.randn(2, 5, 24))
    texts = model.encode_texts([*EIGHT, "two blue squares", "a small green triangle"])
    with torch.no_grad():
        exact = recall_metrics(model.similarity(images, texts))
    metrics = rerank_metrics(model, images, texts, rerank=10)
    assert all(metrics[k] == pytest.approx(v) for k, v in exact.items())
    assert metrics["i2t_shortlist"] == metrics["t2i_shortlist"] == 100.0
    small = rerank_metrics(model, images, texts, rerank=1)
    assert small["t2i_shortlist"] <= 100.0 and small["pairs_scored"] <= 2 + 10
    with pytest.raises(mmzoo.errors.InputError, match="captions per image"):
        rerank_metrics(model, images, texts[:7], rerank=2)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_rerank_rankings_keep_float32_scores_under_half_precision(precision):
    # under autocast a plain matmul returns half precision: nearby cheap scores would round into ties
    model = mmca()
    images = model.encode_images(torch.randn(4, 5, 24))
    texts = model.encode_texts(EIGHT + EIGHT[:2] + CAPTIONS * 2 + EIGHT[:2])
    cheap = images.pooled @ texts.pooled.t()
    ranking = rerank_rankings(model, images, texts, rerank=3, precision=precision)
    assert ranking.i2t.dtype == ranking.t2i.dtype == torch.float64  # from float32 scores, exact (never half)
    outside = ~ranking.i2t_shortlist
    lift = cheap[outside] - ranking.i2t[outside]  # the same constant for every pair left out: their order is kept
    torch.testing.assert_close(lift, lift.mean().expand_as(lift), rtol=0, atol=1e-5)
    assert ranking.i2t[~outside].min() > ranking.i2t[outside].max(), "the shortlist ranks first"
    index = EmbeddingIndex.from_images(model, images, precision=precision)
    result = model.search(texts, index, top_k=2, rerank=None)
    assert result.scores.dtype == torch.float32


class TableScorer:
    """A reranker whose full scores are read from a table, so a test can pin the exact float32 values."""

    uses_fusion = True

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def score_listed_pairs(self, images, texts, image_idx, text_idx, precision="auto"):
        return self.table[image_idx, text_idx]


def ulps_above(base: float, steps: torch.Tensor) -> torch.Tensor:
    """float32 values ``steps`` ulps above ``base``: neighbours that any float32 rounding would merge."""
    return (torch.tensor(base, dtype=torch.float32).view(torch.int32) + steps.int()).view(torch.float32)


def pairs(scores: torch.Tensor, shape: tuple[int, int]) -> mmzoo.plugin.Fragments:
    """Images and captions whose cheap score <i0, c0> is exactly ``scores`` (pooled: the identity and scores.T)."""
    n, m = shape
    image_pooled, text_pooled = torch.eye(n), scores.t().contiguous()
    return (
        mmzoo.plugin.Fragments(torch.zeros(n, 1, n), torch.ones(n, 1, dtype=torch.bool), image_pooled),
        mmzoo.plugin.Fragments(torch.zeros(m, 1, n), torch.ones(m, 1, dtype=torch.bool), text_pooled),
    )


@pytest.mark.parametrize(
    ("cheap_at", "full_at", "tiny_row"),
    [(0.3, 0.1, False), (-0.5, 0.1, False), (1e-30, -0.1, False), (0.3, 0.1, True)],
    ids=["others-moved-down", "others-already-below", "others-by-dense-rank", "one-row-by-dense-rank"],
)
@pytest.mark.parametrize(("n", "m", "k"), [(6, 10, 3), (6, 3, 3), (2, 10, 4), (5, 5, 1)])
def test_rerank_rankings_keep_scores_one_ulp_apart_in_order(n, m, k, cheap_at, full_at, tiny_row):
    """Shortlisted pairs by their full score, then the others by their cheap score, each order exact: scores a few
    ulps apart must not round into ties (ties rank pessimistically, so a positive would drop). Cheap scores of
    1e-30 cannot be moved 2 down exactly even in float64: their rows (columns) are placed by dense rank."""
    g = torch.Generator().manual_seed(n * 100 + m * 10 + k)
    cheap = ulps_above(cheap_at, torch.randint(0, 12, (n, m), generator=g))  # genuine ties too: they stay ties
    if tiny_row:
        cheap[0] = ulps_above(1e-30, torch.randint(0, 12, (m,), generator=g))
    full = ulps_above(full_at, torch.randint(0, 12, (n, m), generator=g))
    images, texts = pairs(cheap, (n, m))
    assert torch.equal(images.pooled @ texts.pooled.t(), cheap)
    ranking = rerank_rankings(TableScorer(full), images, texts, rerank=k)
    for scores, listed, dim in ((ranking.i2t, ranking.i2t_shortlist, 1), (ranking.t2i, ranking.t2i_shortlist, 0)):
        assert (listed.sum(dim) == min(k, listed.shape[dim])).all()
        for q in range(scores.shape[1 - dim]):
            got, keep = scores.select(1 - dim, q), listed.select(1 - dim, q)
            value = torch.where(keep, full.select(1 - dim, q), cheap.select(1 - dim, q)).double()
            # "j ranks at least as high as i" for the expected order: shortlisted first, then by value
            expected = (keep[None, :] & ~keep[:, None]) | (
                (keep[None, :] == keep[:, None]) & (value[None, :] >= value[:, None])
            )
            assert torch.equal(got[None, :] >= got[:, None], expected), f"query {q}: the order changed"
        assert torch.equal(scores[listed].double(), full[listed].double()), "the shortlisted keep their full scores"
        others = scores[~listed]
        if cheap_at == -0.5:
            assert torch.equal(others, cheap[~listed].double()), "already below the shortlist: left as they are"
        if cheap_at == 1e-30 or (tiny_row and dim == 0):  # every row / every column holds a tiny score
            assert torch.equal(others, others.round()), "placed by dense rank (integers)"
        if tiny_row and dim == 1 and bool((~listed[1:]).any()):
            first, rest = scores[0][~listed[0]], scores[1:][~listed[1:]]
            assert torch.equal(first, first.round()) and not torch.equal(rest, rest.round()), "only row 0 re-ranked"


def test_a_positive_one_ulp_above_a_negative_ranks_first_after_reranking():
    """Image 0's own caption 0 fuse-scores one ulp above the shortlisted caption 2: R@1, not a pessimistic tie."""
    up = float(ulps_above(0.1, torch.tensor(1)))
    cheap = torch.tensor([[0.8, 0.3, 0.9, 0.2], [0.1, 0.2, 0.7, 0.6]])
    full = torch.tensor([[up, 0.0, 0.1, 0.0], [0.0, 0.0, 0.5, 0.4]])
    images, texts = pairs(cheap, (2, 4))
    metrics = rerank_metrics(TableScorer(full), images, texts, rerank=2, captions_per_image=2)
    assert metrics["i2t_r1"] == 100.0 and metrics["i2t_meanr"] == 1.0


def test_score_caches_fills_a_given_output():
    model = mmca()
    images, texts = random_fragments(3, 4, 1), random_fragments(4, 5, 2)
    out = torch.full((3, 4), float("nan"))
    with scoring_mode("cpu"):
        score_caches(model.fusion, model.fusion.prepare_images(images), model.fusion.prepare_texts(texts), 2, out=out)
    torch.testing.assert_close(out, fused_matrix(model.fusion, images, texts))
