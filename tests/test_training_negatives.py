"""Cheap hard negatives: candidate selection, exclusion of the other pairs, and h >= B-1 == "all"."""

from __future__ import annotations

import pytest
import torch

from mmzoo.errors import ConfigError
from mmzoo.training import TrainConfig, TrainingStep, candidate_mask, score_rows
from tests.conftest import CAPTIONS, tiny_model

B = 6


pytestmark = pytest.mark.usefixtures("one_thread")


def batch() -> tuple[torch.Tensor, list[str]]:
    torch.manual_seed(1)
    return torch.randn(B, 5, 24), [CAPTIONS[i % len(CAPTIONS)] + f" {i}" for i in range(B)]


def test_candidate_mask_picks_positives_and_top_h_both_ways():
    cheap = torch.tensor([[0.9, 0.8, 0.1, 0.0], [0.2, 0.9, 0.7, 0.3], [0.6, 0.0, 0.9, 0.1], [0.0, 0.1, 0.2, 0.9]])
    mask = candidate_mask(cheap, 1)
    # rows' top-1 captions: 0->1, 1->2, 2->0, 3->2; columns' top-1 images: 0<-2, 1<-0, 2<-1, 3<-1
    expected = torch.eye(4, dtype=torch.bool)
    for i, j in [(0, 1), (1, 2), (2, 0), (3, 2), (2, 0), (0, 1), (1, 2), (1, 3)]:
        expected[i, j] = True
    assert torch.equal(mask, expected)


def test_h_at_least_b_minus_1_equals_all_exactly():
    model = tiny_model("mmca", **{"fusion.dropout": 0.0, "visual.dropout": 0.0}).eval()
    features, captions = batch()
    losses, grads = [], []
    for h in ("all", B - 1, B + 3):
        model.zero_grad()
        loss = TrainingStep(model, hard_negatives=h)(features, captions)
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.equal(losses[0], losses[1]) and torch.equal(losses[0], losses[2])
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])


def test_small_h_scores_only_candidates_and_excludes_the_rest():
    model = tiny_model("mmca", **{"fusion.dropout": 0.0, "visual.dropout": 0.0}).eval()
    features, captions = batch()
    with torch.no_grad():
        images, texts = model.encode_images(features), model.encode_texts(captions)
        full = score_rows(model, images, texts, "all")
        cheap = images.pooled @ texts.pooled.t()
        sparse = score_rows(model, images, texts, 1)
    mask = candidate_mask(cheap, 1)
    assert mask.sum() < B * B  # something was skipped
    assert torch.allclose(sparse[mask], full[mask], atol=1e-5)  # candidates get the true fused score
    assert torch.isneginf(sparse[~mask]).all()  # the rest can never be a violating negative
    # the hinge of an excluded pair is exactly zero: the loss equals the loss over the candidates only
    loss_fn = model.loss_fn
    loss_fn.hardest_negative = False
    by_hand = full.masked_fill(~mask, -1e9)
    assert torch.allclose(loss_fn(sparse), loss_fn(by_hand))


def test_fused_calls_shrink_with_h():
    model = tiny_model("mmca", **{"fusion.dropout": 0.0})
    features, captions = batch()
    calls = []
    original = model.fusion.score_pairs_indexed  # MMCA's door for listed pairs (each item prepared once)
    model.fusion.score_pairs_indexed = lambda a, b, i, t: (calls.append(len(i)), original(a, b, i, t))[1]
    TrainingStep(model, hard_negatives=1)(features, captions)
    assert B <= sum(calls) <= 3 * B  # positives + at most h per row and per column


def test_dual_encoder_ignores_h():
    model = tiny_model("vsepp")
    features, captions = batch()
    torch.manual_seed(0)
    a = TrainingStep(model, "all")(features, captions)
    torch.manual_seed(0)
    b = TrainingStep(model, 2)(features, captions)
    assert torch.equal(a, b)


@pytest.mark.parametrize("bad", [0, -3, "some", True])
def test_bad_hard_negatives_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="hard_negatives"):
        TrainConfig.for_recipe({}, {"hard_negatives": bad})
