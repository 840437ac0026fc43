"""SCAN's fusion blocks: the scoring engine equals forward, padding changes nothing, recipes build and train."""

from __future__ import annotations

import itertools

import pytest
import torch

import mmzoo
from mmzoo import registry
from mmzoo.scoring import fused_matrix, score_pairs
from mmzoo_plugins.scan.recipes import SCAN_I2T, SCAN_T2I, TRAINING, TRAINING_COCO
from tests.conftest import CAPTIONS

D = 16
NORMS = ["softmax", "l2norm", "clipped_l2norm", "l1norm", "clipped_l1norm", "clipped", "no_norm"]
AGGS = ["LogSumExp", "Max", "Sum", "Mean"]


def fragments(n, length, seed):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, length, D, generator=g)
    feats = feats / feats.norm(dim=-1, keepdim=True)
    valid = torch.randint(1, length + 1, (n,), generator=g)
    mask = torch.arange(length)[None] < valid[:, None]
    feats = feats.masked_fill(~mask[..., None], 0.0)
    return mmzoo.plugin.Fragments(feats, mask, mmzoo.plugin.l2_normalize(torch.randn(n, D, generator=g)))


def padded(frags, total, garbage):
    """The same fragments with garbage in the padding and extra padded positions."""
    n, length, _ = frags.features.shape
    feats = torch.full((n, total, D), garbage)
    feats[:, :length] = torch.where(frags.mask[..., None], frags.features, torch.full_like(frags.features, garbage))
    mask = torch.zeros(n, total, dtype=torch.bool)
    mask[:, :length] = frags.mask
    return mmzoo.plugin.Fragments(feats, mask, frags.pooled)


def block(name, **params):
    cls = registry.fusion.get(name)
    return cls(cls.Config(**params), mmzoo.plugin.BuildContext(embed_dim=D)).eval()


@pytest.mark.parametrize(("name", "norm", "agg"), list(itertools.product(["scan-t2i", "scan-i2t"], NORMS, AGGS)))
def test_engine_equals_forward(name, norm, agg):
    fusion = block(name, raw_feature_norm=norm, agg_func=agg, lambda_softmax=4.0, lambda_lse=5.0, block_pairs=7)
    images, texts = fragments(6, 5, seed=1), fragments(11, 8, seed=2)
    with torch.no_grad():
        whole = fusion(images, texts)
    engine = fused_matrix(fusion, images, texts, block_size=4)  # length-sorted, blocks of <= 7 pairs
    torch.testing.assert_close(engine, whole, atol=1e-5, rtol=1e-5)
    img_idx, txt_idx = torch.tensor([0, 5, 3, 3, 1]), torch.tensor([10, 0, 4, 7, 1])
    with torch.inference_mode():
        pairs = score_pairs(fusion, fusion.prepare_images(images), fusion.prepare_texts(texts), img_idx, txt_idx, 2)
    torch.testing.assert_close(pairs, whole[img_idx, txt_idx], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(fusion.score_pairs(images[img_idx], texts[txt_idx]), whole[img_idx, txt_idx])


@pytest.mark.parametrize("name", ["scan-t2i", "scan-i2t"])
def test_padding_and_garbage_change_nothing(name):
    fusion = block(name)
    images, texts = fragments(4, 5, seed=3), fragments(6, 7, seed=4)
    noisy_i, noisy_t = padded(images, 9, 1e3), padded(texts, 12, float("nan"))
    with torch.no_grad():
        clean = fusion(images, texts)
        torch.testing.assert_close(fusion(noisy_i, noisy_t), clean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused_matrix(fusion, noisy_i, noisy_t), clean, atol=1e-5, rtol=1e-5)
    # one image and one caption alone (no padding at all) score what they score in the batch
    n_r, n_w = int(images.mask[2].sum()), int(texts.mask[5].sum())
    with torch.no_grad():
        alone = fusion(
            mmzoo.plugin.Fragments(images.features[2:3, :n_r], images.mask[2:3, :n_r], images.pooled[2:3]),
            mmzoo.plugin.Fragments(texts.features[5:6, :n_w], texts.mask[5:6, :n_w], texts.pooled[5:6]),
        )
    torch.testing.assert_close(alone[0, 0], clean[2, 5], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["scan-t2i", "scan-i2t"])
def test_forward_is_differentiable_and_chunked(name):
    images, texts = fragments(3, 4, seed=5), fragments(5, 6, seed=6)
    images.features.requires_grad_(True)
    texts.features.requires_grad_(True)
    whole = block(name, block_pairs=1000)(images, texts)
    chunked = block(name, block_pairs=2)(images, texts)  # one caption at a time, like SCAN's loop
    torch.testing.assert_close(chunked, whole)
    whole.sum().backward()
    assert images.features.grad.abs().sum() > 0 and texts.features.grad.abs().sum() > 0
    assert images.features.grad[~images.mask].abs().sum() == 0


def test_block_memory_is_bounded_by_block_pairs():
    """The engine never builds more than one block of (pairs x regions x words) logits at once."""
    fusion = block("scan-t2i", block_pairs=6)
    images, texts = fragments(9, 5, seed=7), fragments(13, 6, seed=8)
    seen = []
    original = fusion.score_prepared

    def spy(img, txt):
        seen.append(len(img) * len(txt))
        return original(img, txt)

    fusion.score_prepared = spy
    fused_matrix(fusion, images, texts)
    assert seen and max(seen) <= 6


def test_recipes_are_the_readme_rows():
    t2i, i2t = registry.model.get("scan-t2i"), registry.model.get("scan-i2t")
    assert t2i.config == SCAN_T2I and i2t.config == SCAN_I2T
    assert (SCAN_T2I["fusion"]["agg_func"], SCAN_T2I["fusion"]["lambda_lse"], SCAN_T2I["fusion"]["lambda_softmax"]) == (
        "LogSumExp",
        6.0,
        9.0,
    )
    assert (SCAN_I2T["fusion"]["agg_func"], SCAN_I2T["fusion"]["lambda_softmax"]) == ("Mean", 4.0)
    for recipe in (SCAN_T2I, SCAN_I2T):
        assert recipe["fusion"]["raw_feature_norm"] == "clipped_l2norm" and recipe["text"]["bidirectional"]
        assert recipe["dual_weight"] == 0.0 and recipe["alpha"] == 1.0
        assert recipe["loss"] == {"name": "triplet", "margin": 0.2, "hardest_negative": True, "reduction": "sum"}
    assert t2i.training == TRAINING and (TRAINING["lr"], TRAINING["lr_decay_every"], TRAINING["epochs"]) == (
        2e-4,
        15,
        30,
    )
    assert (TRAINING["batch_size"], TRAINING["grad_clip"], TRAINING["warmup_epochs"]) == (128, 2.0, 0)
    assert (TRAINING_COCO["lr"], TRAINING_COCO["lr_decay_every"], TRAINING_COCO["epochs"]) == (5e-4, 10, 20)


def test_coco_config_files_hold_the_coco_schedule():
    from pathlib import Path

    from mmzoo.config import load_config_file

    root = Path(__file__).resolve().parents[1] / "configs"
    for name, recipe in (("scan-t2i", SCAN_T2I), ("scan-i2t", SCAN_I2T)):
        data = load_config_file(root / f"{name}-coco.yaml")
        assert data["training"] == {k: v for k, v in TRAINING_COCO.items()}
        assert (
            mmzoo.config.ModelConfig.parse(data["model"]).to_dict() == mmzoo.config.ModelConfig.parse(recipe).to_dict()
        )


@pytest.mark.parametrize("recipe", ["scan-t2i", "scan-i2t"])
def test_recipe_trains_one_step_and_scores_only_the_fused_term(recipe):
    torch.manual_seed(0)
    model = mmzoo.create_model(
        recipe, **{"embed_dim": 16, "visual.in_dim": 12, "text.word_dim": 8, "text.min_count": 1}
    )
    model.text.fit(CAPTIONS)
    feats = torch.randn(4, 5, 12)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    out = model.train()(feats, CAPTIONS)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    optimiser.step()
    model.eval()
    with torch.no_grad():
        img, txt = model.encode_images(feats), model.encode_texts(CAPTIONS)
        torch.testing.assert_close(model.similarity(img, txt), model.fusion(img, txt), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["scan-t2i", "scan-i2t"])
def test_bad_inputs_are_named(name):
    fusion = block(name)
    images, texts = fragments(3, 4, seed=9), fragments(4, 5, seed=10)
    other = mmzoo.plugin.Fragments(torch.randn(4, 5, D + 1), texts.mask, torch.randn(4, D + 1))
    with pytest.raises(mmzoo.errors.InputError, match="d=16 but word fragments d=17"):
        fusion(images, other)
    with pytest.raises(mmzoo.errors.InputError, match="same model"):
        fused_matrix(fusion, images, other)
    with pytest.raises(mmzoo.errors.InputError, match="as many captions as images"):
        fusion.score_pairs(images, texts)
