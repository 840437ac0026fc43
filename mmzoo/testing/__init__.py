"""Contract tests for components, ready to run from any test suite (mmzoo's own, or a plugin's).

Every registered component gets them in mmzoo's suite (``tests/test_contracts.py`` runs them over the whole
registry); a plugin author calls them on their own classes::

    from mmzoo.testing import check_fusion

    def test_my_fusion_keeps_the_contract():
        check_fusion(MyFusion)

Each check builds the component with its :meth:`~mmzoo.plugin.Component.test_config` (small sizes for a CPU),
``embed_dim`` :data:`EMBED_DIM` and, for components with an ``in_dim`` field, regions of size :data:`REGION_DIM`,
and raises ``AssertionError`` on the first broken promise:

* encoders: shapes, L2-normalised pooled vectors, padding invariance (garbage, NaN or extra padding change no
  output), gradients reaching every trainable parameter (never a frozen one), same seed same output;
* fusion blocks: shape, block-wise == whole, padding invariance, ``score_pairs`` == the diagonal, the engine
  path (``prepare_images`` / ``prepare_texts`` / ``score_prepared`` / ``score_prepared_pairs``) and the
  training door ``score_pairs_indexed`` == ``forward``
  in eval mode, gradients, determinism;
* losses: a finite scalar with a gradient, a declared reduction, InputError for a non-square or empty matrix;
* recipes: the model config and the training settings parse.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.testing import assert_close

from mmzoo.config import ModelConfig
from mmzoo.contracts import (
    BuildContext,
    Component,
    Fragments,
    FusionBlock,
    Loss,
    TextEncoder,
    VisualEncoder,
    l2_normalize,
)
from mmzoo.errors import InputError
from mmzoo.registry import model as recipes
from mmzoo.training import TrainConfig

EMBED_DIM = 32
REGION_DIM = 24
CAPTIONS = [
    "a red circle left of a blue square",
    "a small green triangle above a big yellow circle",
    "two blue squares",
    "a purple triangle right of a red square",
]
TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}


def build_component(cls: type[Component], seed: int = 0, **settings: Any) -> Component:
    """``cls`` built with its test settings (plus ``settings``), seeded; a text encoder is fitted to CAPTIONS."""
    params = {**cls.test_config(), **settings}
    if "in_dim" in cls.Config.model_fields and "in_dim" not in params:
        params["in_dim"] = REGION_DIM
    torch.manual_seed(seed)
    component = cls(cls.Config(**params), BuildContext(embed_dim=EMBED_DIM))
    if isinstance(component, TextEncoder):
        component.fit(CAPTIONS)
    return component


def random_fragments(n: int, length: int, seed: int, pad_to: int | None = None) -> Fragments:
    """n samples with 1..length valid fragments each, right-padded with garbage to ``pad_to``."""
    g = torch.Generator().manual_seed(seed)
    total = pad_to or length
    feats = torch.randn(n, total, EMBED_DIM, generator=g)
    valid = torch.randint(1, length + 1, (n,), generator=g)
    mask = torch.arange(total)[None] < valid[:, None]
    return Fragments(feats, mask, l2_normalize(torch.randn(n, EMBED_DIM, generator=g)))


def trainable_without_grad(module: torch.nn.Module) -> list[str]:
    """Trainable parameters that got no (or an all-zero) gradient."""
    return [
        n for n, p in module.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]


# -- visual encoders ----------------------------------------------------------------------------------------
def check_visual_encoder(cls: type[VisualEncoder]) -> None:
    """Shapes, normalisation, padding invariance, gradients and determinism of a region encoder."""
    enc = build_component(cls).eval()
    dim = enc.input_dim or REGION_DIM
    x = torch.randn(3, 6, dim)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        out = enc(x.masked_fill(~mask[..., None], 0), mask)
        assert out.features.shape == (3, 6, EMBED_DIM) and out.pooled.shape == (3, EMBED_DIM), "wrong output shapes"
        assert_close(out.pooled.norm(dim=-1), torch.ones(3), msg="pooled vectors must be L2-normalised")
        noisy = enc(torch.where(mask[..., None], x, torch.randn_like(x) * 100), mask)
        assert_close(noisy.pooled, out.pooled, msg="garbage in padded regions changed the output")
        alone = enc(x[1:2, :3], mask[1:2, :3])
        assert_close(alone.pooled, out.pooled[1:2], **TOLERANCE, msg="padding changed an image's pooled vector")
        assert_close(alone.features[0], out.features[1, :3], **TOLERANCE, msg="padding changed an image's fragments")
    enc.train()
    grad_mask = torch.ones(3, 5, dtype=torch.bool)
    grad_mask[2, 3:] = False
    out = enc(torch.randn(3, 5, dim), grad_mask)
    (out.pooled.sum() + out.features[grad_mask].sum()).backward()
    assert trainable_without_grad(enc) == [], f"no gradient reaches {trainable_without_grad(enc)}"
    x = torch.randn(3, 5, dim)
    a = build_component(cls, seed=7).eval()(x, grad_mask)
    b = build_component(cls, seed=7).eval()(x, grad_mask)
    assert torch.equal(a.pooled, b.pooled), "the same seed gave different outputs"


# -- text encoders ------------------------------------------------------------------------------------------
def check_text_encoder(cls: type[TextEncoder]) -> None:
    """Shapes, normalisation, padding invariance, gradients (never to frozen parts) and determinism."""
    enc = build_component(cls).eval()
    with torch.no_grad():
        tokens = enc.tokenize(CAPTIONS)
        out = enc(tokens)
        assert out.features.shape == (*tokens.ids.shape, EMBED_DIM), "wrong fragment shape"
        assert out.pooled.shape == (len(CAPTIONS), EMBED_DIM), "wrong pooled shape"
        assert torch.equal(out.mask, tokens.mask), "the fragments' mask must be the tokens' mask"
        assert_close(out.pooled.norm(dim=-1), torch.ones(len(CAPTIONS)), msg="pooled vectors must be L2-normalised")
        shortest = min(range(len(CAPTIONS)), key=lambda i: int(tokens.mask[i].sum()))
        alone = enc(enc.tokenize([CAPTIONS[shortest]]))
        n = int(tokens.mask[shortest].sum())
        assert_close(alone.pooled[0], out.pooled[shortest], **TOLERANCE, msg="padding changed a caption's vector")
        assert_close(alone.features[0, :n], out.features[shortest, :n], **TOLERANCE, msg="padding changed fragments")
    enc = build_component(cls).train()
    out = enc(enc.tokenize(CAPTIONS))
    (out.pooled.sum() + out.features[out.mask].sum()).backward()
    assert trainable_without_grad(enc) == [], f"no gradient reaches {trainable_without_grad(enc)}"
    frozen = [n for n, p in enc.named_parameters() if not p.requires_grad]
    assert all(enc.get_parameter(n).grad is None for n in frozen), "a frozen parameter got a gradient"
    a, b = build_component(cls, seed=3).eval(), build_component(cls, seed=3).eval()
    with torch.no_grad():
        assert torch.equal(a(a.tokenize(CAPTIONS)).pooled, b(b.tokenize(CAPTIONS)).pooled), "same seed, other output"


# -- fusion blocks ------------------------------------------------------------------------------------------
def check_fusion(cls: type[FusionBlock]) -> None:
    """Block-wise == whole, padding invariance, pairs == diagonal, engine == forward, gradients, determinism."""
    fusion = build_component(cls).eval()
    images, texts = random_fragments(5, 6, seed=1), random_fragments(7, 9, seed=2)
    with torch.no_grad():
        whole = fusion(images, texts)
        assert whole.shape == (5, 7), f"forward must give (N_images, N_texts) = (5, 7); got {tuple(whole.shape)}"
        blocks = torch.cat(
            [
                torch.cat([fusion(images[i : i + 2], texts[j : j + 3]) for j in range(0, 7, 3)], 1)
                for i in range(0, 5, 2)
            ]
        )
        assert_close(blocks, whole, **TOLERANCE, msg="block-wise scores differ from the whole matrix")
        garbage = random_fragments(5, 6, seed=1, pad_to=10)
        garbage.features[:, :6], garbage.mask[:, :6] = images.features, images.mask
        padded = Fragments(garbage.features, garbage.mask, images.pooled)
        assert_close(fusion(padded, texts), whole, **TOLERANCE, msg="extra padding changed the scores")
        noisy = Fragments(torch.where(texts.mask[..., None], texts.features, 1e3), texts.mask, texts.pooled)
        assert_close(fusion(images, noisy), whole, **TOLERANCE, msg="garbage in padding changed the scores")
        pairs = fusion.score_pairs(images[:5], texts[:5])
        assert_close(pairs, whole[:5, :5].diagonal(), **TOLERANCE, msg="score_pairs differs from the diagonal")
        _check_engine(fusion, images, texts, whole)
    fusion = build_component(cls).train()
    images, texts = random_fragments(3, 4, seed=1), random_fragments(3, 5, seed=2)
    images.features.requires_grad_(True)
    fusion(images, texts).sum().backward()
    assert trainable_without_grad(fusion) == [], f"no gradient reaches {trainable_without_grad(fusion)}"
    assert images.features.grad is not None, "no gradient reaches the image fragments"
    with torch.no_grad():
        a = build_component(cls, seed=5).eval()(images, texts)
        b = build_component(cls, seed=5).eval()(images, texts)
    assert torch.equal(a, b), "the same seed gave different scores"


def _check_engine(fusion: FusionBlock, images: Fragments, texts: Fragments, whole: torch.Tensor) -> None:
    assert int(fusion.pairs_per_block) >= 1, "pairs_per_block must be a positive integer"
    image_cache, text_cache = fusion.prepare_images(images), fusion.prepare_texts(texts)
    for cache, n in ((image_cache, len(images)), (text_cache, len(texts))):
        assert len(cache) == n and len(cache[1:3]) == 2, "a cache must support len() and row slicing"
        assert isinstance(cache.device, torch.device), "a cache must say its device"
    dense = fusion.score_prepared(image_cache, text_cache)
    assert_close(dense.float(), whole.float(), **TOLERANCE, msg="score_prepared differs from forward")
    part = fusion.score_prepared(image_cache[1:4], text_cache[2:6])
    assert_close(part.float(), whole[1:4, 2:6].float(), **TOLERANCE, msg="score_prepared on slices differs")
    image_idx, text_idx = torch.tensor([0, 4, 2, 2, 1]), torch.tensor([6, 0, 3, 3, 5])
    listed = fusion.score_prepared_pairs(image_cache, text_cache, image_idx, text_idx)
    assert_close(listed.float(), whole[image_idx, text_idx].float(), **TOLERANCE, msg="score_prepared_pairs differs")
    indexed = fusion.score_pairs_indexed(images, texts, image_idx, text_idx)  # the hard-negative training door
    assert_close(indexed.float(), whole[image_idx, text_idx].float(), **TOLERANCE, msg="score_pairs_indexed differs")


# -- losses and recipes -------------------------------------------------------------------------------------
def check_loss(cls: type[Loss]) -> None:
    """A finite scalar with a gradient, a declared reduction, clear errors for bad score matrices."""
    loss = build_component(cls)
    assert loss.reduction in ("sum", "mean"), f"reduction must be 'sum' or 'mean'; got {loss.reduction!r}"
    scores = torch.randn(4, 4, requires_grad=True)
    value = loss(scores)
    assert value.dim() == 0 and bool(torch.isfinite(value)), "a loss must be a finite scalar"
    value.backward()
    assert scores.grad is not None, "no gradient reaches the scores"
    if cls.supports_hardest_negative:
        loss.set_hardest_negative(False)
        assert not loss.hardest_negative, "set_hardest_negative(False) did not switch"
        loss.set_hardest_negative(True)
        assert loss.hardest_negative, "set_hardest_negative(True) did not switch"
    for bad in (torch.randn(3, 4), torch.empty(0, 0)):
        try:
            loss(bad)
        except InputError:
            continue
        raise AssertionError(f"a {tuple(bad.shape)} score matrix must raise mmzoo.errors.InputError")


def check_recipe(name: str) -> None:
    """The recipe's model config validates and its training settings parse."""
    recipe = recipes.get(name)
    config = ModelConfig.parse(recipe.config)
    assert config.to_dict()["embed_dim"] == config.embed_dim
    TrainConfig.for_recipe(recipe.training)


__all__ = [
    "CAPTIONS",
    "EMBED_DIM",
    "REGION_DIM",
    "build_component",
    "check_fusion",
    "check_loss",
    "check_recipe",
    "check_text_encoder",
    "check_visual_encoder",
    "random_fragments",
    "trainable_without_grad",
]
