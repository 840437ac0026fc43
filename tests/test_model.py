"""MatchingModel and MMCA: the score formula, the loss, and clear errors on bad input."""

from __future__ import annotations

import pytest
import torch

import mmzoo
from tests.conftest import CAPTIONS, tiny_model


def encode(model, n=4, k=5):
    torch.manual_seed(1)
    x = torch.randn(n, k, 24)
    model.eval()
    with torch.no_grad():
        return model.encode_images(x), model.encode_texts(CAPTIONS[:n])


def test_create_mmca_builds_the_paper_architecture():
    model = mmzoo.create_model("mmca", **{"text.name": "gru"})
    assert model.config.embed_dim == 1024 and model.visual.input_dim == 2048
    assert model.visual.units[0].self_attn.num_heads == 16 and model.fusion.units[0].linear1.out_features == 2048
    assert model.uses_fusion and model.alpha == 1.0


def test_alpha_zero_gives_exactly_the_dual_encoder_score():
    model = tiny_model("mmca", alpha=0.0)
    images, texts = encode(model)
    assert not model.uses_fusion
    assert torch.equal(model.similarity(images, texts), images.pooled @ texts.pooled.t())


def test_similarity_is_global_plus_alpha_times_fused():
    model = tiny_model("mmca", alpha=0.7)
    images, texts = encode(model)
    with torch.no_grad():
        expected = images.pooled @ texts.pooled.t() + 0.7 * model.fusion(images, texts)
        torch.testing.assert_close(model.similarity(images, texts), expected)
        torch.testing.assert_close(model.similarity(images, texts, block_size=3), expected)


def test_no_cross_recipe_has_no_fusion():
    model = tiny_model("mmca-no-cross")
    assert model.fusion is None and model.alpha == 0.0


def test_triplet_loss_matches_a_hand_computation():
    loss = mmzoo.create_model("vsepp", **{"text.name": "gru"}).loss_fn
    s = torch.tensor([[0.9, 0.5, 0.1], [0.8, 0.6, 0.3], [0.2, 0.7, 0.4]])
    # hardest negative, margin 0.2, summed. Image anchors (rows): row0 max(0.5,0.1)->0.2+0.5-0.9<0 -> 0;
    # row1: negatives 0.8, 0.3 -> 0.2+0.8-0.6 = 0.4; row2: 0.2, 0.7 -> 0.2+0.7-0.4 = 0.5.
    # Caption anchors (columns): col0: 0.8, 0.2 -> 0.2+0.8-0.9 = 0.1; col1: 0.5, 0.7 -> 0.2+0.7-0.6 = 0.3;
    # col2: 0.1, 0.3 -> 0.2+0.3-0.4 = 0.1.  Total 1.4.
    torch.testing.assert_close(loss(s), torch.tensor(1.4))
    loss.hardest_negative = False
    # all negatives: rows 0 + (0.4 + 0) + (0 + 0.5) ; columns (0.1 + 0) + (0.1 + 0.3) + (0 + 0.1) = 1.5
    torch.testing.assert_close(loss(s), torch.tensor(1.5))


def test_training_forward_backward():
    model = tiny_model("mmca").train()
    out = model(torch.randn(4, 5, 24), CAPTIONS)
    assert out.scores.shape == (4, 4)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    ("features", "mask", "match"),
    [
        (torch.randn(2, 5, 23), None, "D=23 but the visual encoder expects D=24"),
        (torch.randint(0, 5, (2, 5, 24)), None, "floating point"),
        (torch.randn(0, 5, 24), None, "empty"),
        (torch.randn(5, 24), None, r"\(N, k, D\)"),
        (
            torch.randn(2, 5, 24),
            torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool),
            "every region masked",
        ),
        (torch.randn(2, 5, 24), torch.ones(2, 5), "bool"),
        (torch.full((2, 5, 24), float("nan")), None, "NaN"),
    ],
)
def test_bad_region_input_is_a_clear_input_error(features, mask, match):
    model = tiny_model("mmca")
    with pytest.raises(mmzoo.errors.InputError, match=match):
        model.encode_images(features, mask)


def test_nan_in_padded_regions_does_not_leak():
    model = tiny_model("mmca").eval()
    x = torch.randn(1, 5, 24)
    mask = torch.tensor([[1, 1, 1, 0, 0]], dtype=torch.bool)
    poisoned = x.clone()
    poisoned[0, 3:] = float("nan")
    with torch.no_grad():
        a, b = model.encode_images(x, mask), model.encode_images(poisoned, mask)
    assert torch.isfinite(b.pooled).all()
    torch.testing.assert_close(a.pooled, b.pooled)


@pytest.mark.parametrize(
    ("captions", "match"),
    [
        ([], "empty"),
        ("a red circle", "list of captions"),
        (["ok", ""], "non-empty strings"),
        (["ok", None], "non-empty"),
    ],
)
def test_bad_captions_are_clear_input_errors(captions, match):
    model = tiny_model("mmca")
    with pytest.raises(mmzoo.errors.InputError, match=match):
        model.encode_texts(captions)


def test_gru_without_vocabulary_says_what_to_do():
    model = mmzoo.create_model("vsepp", **{"visual.in_dim": 8, "embed_dim": 16})
    with pytest.raises(mmzoo.errors.ConfigError, match=r"fit\(train_captions\)"):
        model.encode_texts(["a red circle"])


def test_mismatched_batch_in_training_forward():
    model = tiny_model("mmca")
    with pytest.raises(mmzoo.errors.InputError, match="one caption per image"):
        model(torch.randn(3, 5, 24), CAPTIONS)
