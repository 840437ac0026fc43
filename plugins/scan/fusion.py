"""SCAN's fusion blocks ``scan-t2i`` (words attend to regions) and ``scan-i2t`` (regions attend to words).

The fused score is the whole SCAN similarity (recipes set ``dual_weight: 0``): see
:mod:`~mmzoo_plugins.scan.attention` for the math and every option. The blocks have no parameters.

* ``forward`` / ``score_pairs``: the straightforward computation (attended vectors formed, as in SCAN's
  ``func_attention``), differentiable, in chunks of ``pairs_per_block`` pairs; the training path.
* ``prepare_images`` / ``prepare_texts`` / ``score_prepared`` / ``score_prepared_pairs``: the scoring
  engine (``mmzoo.scoring``). Each item's fragments, norms and Gram matrix are cached once; a block of
  images x captions is one matrix product of logits plus element-wise work on it, at most
  ``pairs_per_block`` pairs at a time, instead of SCAN's loop over captions (``shard_xattn_t2i``). It
  equals ``forward`` to float tolerance (``tests/test_scan_engine.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from mmzoo.errors import InputError
from mmzoo.plugin import ComponentConfig, Fragments, FusionBlock
from mmzoo_plugins.scan.attention import AggFunc, RawFeatureNorm, block_scores, explicit_scores


class SCANAttentionConfig(ComponentConfig):
    raw_feature_norm: RawFeatureNorm = Field(
        "clipped_l2norm",
        description="Normalisation of the attention logits over the query fragments (SCAN's --raw_feature_norm).",
    )
    agg_func: AggFunc = Field(
        "LogSumExp", description="Pooling of the fragment relevances into the score (SCAN's --agg_func)."
    )
    lambda_softmax: float = Field(9.0, gt=0.0, description="Inverse temperature of the attention softmax (λ1).")
    lambda_lse: float = Field(6.0, gt=0.0, description="Inverse temperature of LogSumExp pooling (λ2).")
    pairs_per_block: int = Field(
        4096, gt=0, le=1 << 24, description="Pairs held at once by the scoring engine and the training path."
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_chunk_pairs(cls, data: Any) -> Any:
        """An earlier second block size for the training path; configs saved with it still load."""
        if isinstance(data, dict) and "chunk_pairs" in data:
            data = {k: v for k, v in data.items() if k != "chunk_pairs"}
        return data


@dataclass
class SideCache:
    """One side's prepared fragments: zero at padding, with their norms and Gram matrices.

    Attributes:
        features: (N, L, d) float.
        mask: (N, L) bool.
        norms: (N, L) float32 L2 norm of each fragment (used when the side is the query).
        gram: (N, L, L) float32 ``<f_a, f_b>`` (used when the side is the context), or None.
    """

    features: Tensor
    mask: Tensor
    norms: Tensor
    gram: Tensor | None

    def __len__(self) -> int:
        return self.features.shape[0]

    def __getitem__(self, index: slice | Tensor) -> SideCache:
        return SideCache(
            *(None if getattr(self, f.name) is None else getattr(self, f.name)[index] for f in fields(self))
        )

    @property
    def device(self) -> torch.device:
        return self.features.device

    def trimmed(self) -> SideCache:
        """Drop trailing positions that are padding in every row."""
        used = self.mask.any(0).nonzero()
        length = int(used.max()) + 1 if len(used) else 1
        if length == self.mask.shape[1]:
            return self
        cut = slice(None, length)
        gram = None if self.gram is None else self.gram[:, cut, cut]
        return SideCache(self.features[:, cut], self.mask[:, cut], self.norms[:, cut], gram)


def _check_dims(images: Tensor, texts: Tensor) -> None:
    if images.shape[-1] != texts.shape[-1]:
        raise InputError(
            f"SCAN compares regions and words in one space: region fragments have d={images.shape[-1]} but "
            f"word fragments d={texts.shape[-1]}; encode both with the same model."
        )


def _clean(fragments: Fragments) -> Tensor:
    """Features with padding set to zero, so nothing in the padding can reach a score."""
    return fragments.features.masked_fill(~fragments.mask.unsqueeze(-1), 0.0)


class SCANFusion(FusionBlock):
    """Stacked cross attention; subclasses fix the direction."""

    Config = SCANAttentionConfig
    #: "t2i": captions' words are the queries, images' regions the context; "i2t": the reverse.
    direction: ClassVar[Literal["t2i", "i2t"]] = "t2i"

    @classmethod
    def test_config(cls) -> dict:
        return {}

    @property
    def pairs_per_block(self) -> int:
        return self.config.pairs_per_block

    def _options(self) -> dict:
        c = self.config
        return {
            "raw_feature_norm": c.raw_feature_norm,
            "agg_func": c.agg_func,
            "lambda_softmax": c.lambda_softmax,
            "lambda_lse": c.lambda_lse,
        }

    def _roles(self, regions: tuple[Tensor, Tensor], words: tuple[Tensor, Tensor]) -> tuple[tuple, tuple]:
        return (words, regions) if self.direction == "t2i" else (regions, words)

    # -- the straightforward path ------------------------------------------------------------------------
    def forward(self, images: Fragments, texts: Fragments) -> Tensor:
        _check_dims(images.features, texts.features)
        regions, r_mask = _clean(images), images.mask
        words, w_mask = _clean(texts), texts.mask
        n_img = len(images)
        step = max(1, self.pairs_per_block // max(n_img, 1))
        columns = []
        for j in range(0, len(texts), step):
            w, wm = words[j : j + step][None], w_mask[j : j + step][None]  # (1, c, L, d)
            (query, q_mask), (context, c_mask) = self._roles((regions[:, None], r_mask[:, None]), (w, wm))
            columns.append(explicit_scores(query, q_mask, context, c_mask, **self._options()))
        return torch.cat(columns, dim=1)

    def score_pairs(self, images: Fragments, texts: Fragments) -> Tensor:
        if len(texts) != len(images):
            raise InputError(f"score_pairs needs as many captions as images; got {len(texts)} and {len(images)}.")
        _check_dims(images.features, texts.features)
        regions, words = _clean(images), _clean(texts)
        step, parts = self.pairs_per_block, []
        for s in range(0, len(images), step):
            part = slice(s, s + step)
            (query, q_mask), (context, c_mask) = self._roles(
                (regions[part], images.mask[part]), (words[part], texts.mask[part])
            )
            parts.append(explicit_scores(query, q_mask, context, c_mask, **self._options()))
        return torch.cat(parts)

    # -- the scoring engine --------------------------------------------------------------------------------
    def _prepare(self, fragments: Fragments, is_context: bool) -> SideCache:
        features = _clean(fragments)
        with torch.autocast(features.device.type, enabled=False):
            exact = features.float()
            norms = exact.norm(dim=-1)
            gram = exact @ exact.transpose(-1, -2) if is_context else None
        return SideCache(features, fragments.mask, norms, gram)

    def prepare_images(self, images: Fragments) -> SideCache:
        """Regions zeroed at padding, their norms, and (t2i) each image's region Gram matrix."""
        return self._prepare(images, is_context=self.direction == "t2i")

    def prepare_texts(self, texts: Fragments) -> SideCache:
        """Words zeroed at padding, their norms, and (i2t) each caption's word Gram matrix."""
        return self._prepare(texts, is_context=self.direction == "i2t")

    def _query_context(self, images: SideCache, texts: SideCache) -> tuple[SideCache, SideCache]:
        return (texts, images) if self.direction == "t2i" else (images, texts)

    def score_prepared(self, images: SideCache, texts: SideCache) -> Tensor:
        """(n_images, n_texts) scores of one block: all logits in one product, then element-wise work."""
        _check_dims(images.features, texts.features)
        query, context = self._query_context(images.trimmed(), texts.trimmed())
        nq, lq, d = query.features.shape
        nc, lc, _ = context.features.shape
        logits = context.features.reshape(nc * lc, d) @ query.features.reshape(nq * lq, d).t()
        with torch.autocast(logits.device.type, enabled=False):
            scores = block_scores(
                logits.float().view(nc, lc, nq, lq),
                query.mask[None],
                query.norms[None],
                context.mask,
                context.gram,
                **self._options(),
            )
        return scores if self.direction == "t2i" else scores.t()

    def score_prepared_pairs(self, images: SideCache, texts: SideCache, image_idx: Tensor, text_idx: Tensor) -> Tensor:
        """(P,) scores of listed pairs: batched logits per pair, the same element-wise work."""
        query, context = self._query_context(images[image_idx].trimmed(), texts[text_idx].trimmed())
        logits = torch.bmm(context.features, query.features.transpose(1, 2))  # (P, Lc, Lq)
        with torch.autocast(logits.device.type, enabled=False):
            scores = block_scores(
                logits.float().unsqueeze(2),
                query.mask[:, None],
                query.norms[:, None],
                context.mask,
                context.gram,
                **self._options(),
            )
        return scores[:, 0]


class SCANTextToImage(SCANFusion):
    """``scan-t2i``: each word attends over the image's regions; relevances pooled over the words."""

    direction = "t2i"


class SCANImageToText(SCANFusion):
    """``scan-i2t``: each region attends over the caption's words; relevances pooled over the regions."""

    direction = "i2t"
