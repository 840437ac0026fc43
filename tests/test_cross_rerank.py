"""Cross-model shortlist and rerank: one model's cheap score picks the candidates, another's full score ranks them.

When the shortlist covers everything the result is exhaustive scoring of the reranker, whatever shortlisted;
with a short list the candidates are the shortlist model's top K and their order is the reranker's.
"""

from __future__ import annotations

import json

import pytest
import torch

import mmzoo
from mmzoo.cli import main
from mmzoo.data import PrecomputedDataset, make_shapes
from mmzoo.evaluation import METRIC_KEYS, evaluate, recall_metrics, rerank_metrics
from mmzoo.scoring import EmbeddingIndex, cheap_vectors, listed_scores, rerank_rankings
from tests.conftest import CAPTIONS, tiny_model

EIGHT = CAPTIONS + [" ".join(reversed(c.split())) for c in CAPTIONS]
TEN = [*EIGHT, "two blue squares left of a circle", "a small green triangle"]


@pytest.fixture(scope="module")
def models():
    """Reranker B (MMCA, cross attention) and shortlister A (VSE++, a dual encoder), on the same inputs."""
    b = tiny_model("mmca").eval()
    torch.manual_seed(1)
    a = tiny_model("vsepp").eval()
    features = torch.randn(2, 5, 24, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return (
            b,
            a,
            features,
            (b.encode_images(features), b.encode_texts(TEN)),
            (a.encode_images(features), a.encode_texts(TEN)),
        )


def test_a_shortlist_covering_everything_is_exhaustive_scoring_of_the_reranker(models):
    b, a, _, (bi, bt), (ai, at) = models
    with torch.no_grad():
        full = b.similarity(bi, bt)
    ranking = rerank_rankings(b, bi, bt, rerank=10, shortlist=a, shortlist_images=ai, shortlist_texts=at)
    assert torch.equal(ranking.i2t.argsort(1), full.argsort(1))
    assert torch.equal(ranking.t2i.argsort(0), full.argsort(0))
    exact = recall_metrics(full)
    metrics = rerank_metrics(b, bi, bt, 10, 5, shortlist=a, shortlist_images=ai, shortlist_texts=at)
    assert all(metrics[k] == pytest.approx(exact[k]) for k in METRIC_KEYS)
    assert metrics["i2t_shortlist"] == metrics["t2i_shortlist"] == 100.0 and metrics["pairs_scored"] == 20


def test_a_short_list_is_the_shortlist_models_top_k_ranked_by_the_reranker(models):
    b, a, _, (bi, bt), (ai, at) = models
    with torch.no_grad():
        full = b.similarity(bi, bt)
    cheap_a = ai.pooled @ at.pooled.t()
    ranking = rerank_rankings(b, bi, bt, rerank=3, shortlist=a, shortlist_images=ai, shortlist_texts=at)
    for row in range(2):
        picked = set(cheap_a[row].topk(3).indices.tolist())
        assert set(ranking.i2t_shortlist[row].nonzero().flatten().tolist()) == picked
        top = ranking.i2t[row].topk(3).indices
        assert set(top.tolist()) == picked
        assert torch.equal(full[row, top].argsort(descending=True), torch.arange(3))
    own = rerank_rankings(b, bi, bt, rerank=3)  # without a shortlist model: B's own <i0, c0>
    assert not torch.equal(own.i2t_shortlist, ranking.i2t_shortlist)


def test_search_with_another_models_shortlist(models):
    b, a, features, (bi, bt), (ai, at) = models
    index = EmbeddingIndex.from_texts(b, bt, shortlist=(a, at))
    with torch.no_grad():
        full = b.similarity(bi, bt)
    everything = b.search(bi, index, top_k=4, rerank=10, shortlist=a, shortlist_queries=ai)
    torch.testing.assert_close(everything.scores, full.topk(4, dim=1).values, atol=1e-5, rtol=1e-4)
    short = b.search(features, index, top_k=2, rerank=4, shortlist=a)  # raw queries: both models encode them
    assert torch.equal(
        short.shortlist.sort(1).values, (ai.pooled @ at.pooled.t()).topk(4, dim=1).indices.sort(1).values
    )
    torch.testing.assert_close(
        short.scores, full.gather(1, short.shortlist).topk(2, dim=1).values, atol=1e-5, rtol=1e-4
    )
    with pytest.raises(mmzoo.errors.InputError, match="rerank"):
        b.search(bi, index, top_k=2, shortlist=a, shortlist_queries=ai)
    with pytest.raises(mmzoo.errors.InputError, match="holds no vectors of this shortlist model"):
        b.search(bi, EmbeddingIndex.from_texts(b, bt), top_k=2, rerank=4, shortlist=a, shortlist_queries=ai)
    with pytest.raises(mmzoo.errors.InputError, match="same items"):
        index.with_shortlist(a, at[:3])
    with pytest.raises(mmzoo.errors.InputError, match="shortlist_queries"):
        b.search(bi, index, top_k=2, rerank=4, shortlist=a)


def test_an_ensemble_reranks_and_shortlists(models):
    b, _, features, *_ = models
    ensemble = mmzoo.Ensemble([b, tiny_model("mmca", **{"fusion.heads": 8})], weights=[2.0, 1.0]).eval()
    with torch.no_grad():
        images, texts = ensemble.encode_images(features), ensemble.encode_texts(TEN)
        full = ensemble.similarity(images, texts)
    i, t = torch.tensor([0, 1, 1, 0]), torch.tensor([3, 9, 0, 0])
    torch.testing.assert_close(ensemble.score_listed_pairs(images, texts, i, t), full[i, t], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(listed_scores(ensemble, images, texts, i, t), full[i, t], atol=1e-5, rtol=1e-4)
    ranking = rerank_rankings(ensemble, images, texts, rerank=10)  # the ensemble shortlists for itself
    assert torch.equal(ranking.i2t.argsort(1), full.argsort(1))
    # the ensemble's cheap score is the weighted mean of its members' <i0, c0>
    cheap = cheap_vectors(ensemble, images) @ cheap_vectors(ensemble, texts).t()
    members = sum(
        w * (p.pooled @ q.pooled.t()) for w, p, q in zip(ensemble.weights, images.parts, texts.parts, strict=True)
    )
    torch.testing.assert_close(cheap, members)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("cross")
    make_shapes(root / "data", images=20, dev_images=10, test_images=6, seed=0, regions=8, region_dim=32)
    captions = PrecomputedDataset(root / "data", "train").captions
    for name, recipe in (("mmca", "mmca"), ("vsepp", "vsepp")):
        model = tiny_model(recipe, **{"visual.in_dim": 32})
        model.text.fit(captions)
        model.eval().save_pretrained(root / name)
    return root


def test_eval_cli_shortlist_option(saved, capsys):
    root = saved
    args = ["eval", str(root / "mmca"), "--data", str(root / "data"), "--device", "cpu", "--no-progress"]
    assert main([*args, "--shortlist", str(root / "vsepp"), "--rerank", "3", "--json", str(root / "k3.json")]) == 0
    printed = capsys.readouterr().out
    assert "shortlist by" in printed and "shortlist recall" in printed
    k3 = json.loads((root / "k3.json").read_text())
    assert {"i2t_shortlist", "t2i_shortlist", "bind_t2i", "pairs_scored"} <= set(k3) and k3["rerank"] == 3.0
    assert main([*args, "--shortlist", str(root / "vsepp"), "--rerank", "60", "--json", str(root / "all.json")]) == 0
    everything = json.loads((root / "all.json").read_text())
    exact = evaluate(
        mmzoo.from_pretrained(str(root / "mmca")), PrecomputedDataset(root / "data", "test"), progress=False
    )
    assert all(everything[k] == pytest.approx(exact[k], abs=1e-4) for k in METRIC_KEYS)
    assert everything["i2t_shortlist"] == everything["t2i_shortlist"] == 100.0
    assert main([*args, "--shortlist", str(root / "vsepp")]) == 2
    assert "--rerank" in capsys.readouterr().err


def test_eval_precision_reaches_the_engine(saved, monkeypatch, capsys):
    """``--precision`` is what the scoring engine computes in, exhaustive and reranked (fp32 reproduces float32
    scores on a GPU, where ``auto`` is bfloat16)."""
    import mmzoo.scoring.engine as engine

    seen = []
    original = engine.compute_dtype
    monkeypatch.setattr(
        engine,
        "compute_dtype",
        lambda device, precision="auto": (seen.append(precision), original(device, precision))[1],
    )
    root = saved
    args = ["eval", str(root / "mmca"), "--data", str(root / "data"), "--device", "cpu", "--no-progress"]
    assert main([*args, "--precision", "bf16"]) == 0
    assert seen and set(seen) == {"bf16"}, seen
    assert "precision bf16" in capsys.readouterr().out
    seen.clear()
    assert main([*args, "--precision", "fp32", "--rerank", "3"]) == 0
    assert seen and set(seen) == {"fp32"}, seen
    with pytest.raises(SystemExit):  # argparse: not a choice
        main([*args, "--precision", "fp64"])
    assert "invalid choice" in capsys.readouterr().err
