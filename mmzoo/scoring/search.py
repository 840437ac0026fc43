"""Retrieval: an index of encoded items, exhaustive search, and shortlist-and-rerank.

:class:`EmbeddingIndex` and :func:`search` shortlist by the cheap ``<i0, c0>`` score (one matrix product)
and compute the full score ``S = dual_weight * <i0, c0> + alpha * fused`` only for the top ``rerank``
candidates. Rankings are always built from float32 scores.

The functions take any *scorer*: an object with the attributes of :class:`Scorer` (a ``MatchingModel`` is
one), so this floor needs nothing above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from mmzoo.contracts import Fragments, FusionBlock
from mmzoo.errors import InputError
from mmzoo.scoring.engine import Precision, score_caches, score_pairs, scoring_mode


class Scorer(Protocol):
    """What retrieval needs of a model: its fusion block and the weights of the two terms of ``S``."""

    fusion: FusionBlock | None
    alpha: float
    dual_weight: float

    @property
    def uses_fusion(self) -> bool: ...


@dataclass
class EmbeddingIndex:
    """Encoded images or captions ready to be searched: their Fragments and the fusion block's cache.

    Attributes:
        side: ``"images"`` or ``"texts"``: what the index holds (queries are the other side).
        fragments: the encoded items.
        cache: the fusion block's prepared cache of all items (None for models without fusion).
        precision: the precision the cache was prepared in (``search`` scores in the same one).

    Example:
        >>> index = EmbeddingIndex.from_images(model, model.encode_images(features))  # doctest: +SKIP
        >>> hits = model.search(model.encode_texts(["a red circle"]), index, top_k=5, rerank=50)  # doctest: +SKIP
    """

    side: Literal["images", "texts"]
    fragments: Fragments
    cache: Any | None
    precision: Precision = "auto"

    @classmethod
    def from_images(cls, model: Scorer, images: Fragments, precision: Precision = "auto") -> EmbeddingIndex:
        return cls._build(model, "images", images, precision)

    @classmethod
    def from_texts(cls, model: Scorer, texts: Fragments, precision: Precision = "auto") -> EmbeddingIndex:
        return cls._build(model, "texts", texts, precision)

    @classmethod
    def _build(cls, model: Scorer, side: str, fragments: Fragments, precision: Precision) -> EmbeddingIndex:
        cache = None
        if model.uses_fusion:
            with scoring_mode(fragments.features.device, precision):
                prepare = model.fusion.prepare_images if side == "images" else model.fusion.prepare_texts
                cache = prepare(fragments)
        return cls(side, fragments, cache, precision)

    def __len__(self) -> int:
        return len(self.fragments)


@dataclass
class SearchResult:
    """What :func:`search` returns, one row per query, best first.

    Attributes:
        scores: (Q, top_k) float32 full scores ``S = <i0,c0> + alpha * fused`` of the hits.
        indices: (Q, top_k) long, positions of the hits in the index.
        shortlist: (Q, rerank) long, the candidates the cheap score kept (None when ``rerank`` is None).
    """

    scores: Tensor
    indices: Tensor
    shortlist: Tensor | None = None


def search(
    model: Scorer, queries: Fragments, index: EmbeddingIndex, top_k: int = 10, rerank: int | None = None
) -> SearchResult:
    """Best ``top_k`` index items for each query; see :meth:`mmzoo.MatchingModel.search`."""
    n = len(index)
    for name, value in (("top_k", top_k), ("rerank", rerank)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InputError(f"{name} must be an integer; got {value!r}.")
    wanted = "text" if index.side == "images" else "image"
    if queries.modality not in (None, wanted) or index.fragments.modality == wanted:
        raise InputError(
            f"This index holds {index.side}: its queries must be {wanted}s (encode them with "
            f"encode_{wanted}s), not {index.side}."
        )
    if top_k < 1 or (rerank is not None and rerank < 1):
        raise InputError(f"top_k and rerank must be at least 1; got top_k={top_k}, rerank={rerank}.")
    if rerank is not None and rerank < top_k:
        raise InputError(f"rerank={rerank} keeps fewer candidates than top_k={top_k}; use rerank >= top_k.")
    top_k, rerank = min(top_k, n), (min(rerank, n) if rerank is not None else None)
    with scoring_mode(queries.features.device, index.precision):
        return _search(model, queries, index, top_k, rerank)


def cheap_scores(images_pooled: Tensor, texts_pooled: Tensor) -> Tensor:
    """``<i0, c0>`` of every pair in float32, also inside the engine's autocast.

    Rankings are built from these scores (and the shortlists' lifted copies of them); bfloat16's 8-bit
    mantissa would round nearby scores into ties and wreck the ranking.
    """
    with torch.autocast(images_pooled.device.type, enabled=False):
        return images_pooled.float() @ texts_pooled.float().t()


def _search(model: Scorer, queries: Fragments, index: EmbeddingIndex, top_k: int, rerank: int | None) -> SearchResult:
    cheap = cheap_scores(queries.pooled, index.fragments.pooled)  # (Q, N)
    if not model.uses_fusion:
        scores, indices = cheap.topk(top_k, dim=1)
        return SearchResult(scores, indices)
    fusion, device = model.fusion, queries.features.device
    query_cache = (fusion.prepare_texts if index.side == "images" else fusion.prepare_images)(queries)
    if rerank is None:
        if index.side == "images":
            fused = score_caches(fusion, index.cache, query_cache).t()
        else:
            fused = score_caches(fusion, query_cache, index.cache)
        scores, indices = (model.dual_weight * cheap + model.alpha * fused).topk(top_k, dim=1)
        return SearchResult(scores, indices)
    shortlist = cheap.topk(rerank, dim=1).indices  # (Q, K)
    query_idx = torch.arange(len(queries), device=device).repeat_interleave(rerank)
    item_idx = shortlist.reshape(-1)
    if index.side == "images":
        fused = score_pairs(fusion, index.cache, query_cache, item_idx, query_idx)
    else:
        fused = score_pairs(fusion, query_cache, index.cache, query_idx, item_idx)
    full = model.dual_weight * cheap.gather(1, shortlist) + model.alpha * fused.view(len(queries), rerank)
    scores, order = full.topk(top_k, dim=1)
    return SearchResult(scores, shortlist.gather(1, order), shortlist)


@dataclass
class RerankRanking:
    """The rankings a shortlist-and-rerank search induces over a whole test set (see :func:`rerank_rankings`).

    Attributes:
        i2t: (N_images, N_texts) ranking scores for image queries (read row-wise): each image's
            shortlisted captions by their full score, above all others in their cheap order.
        t2i: (N_images, N_texts) the same for caption queries (read column-wise).
        i2t_shortlist, t2i_shortlist: (N_images, N_texts) bool, which pairs each direction shortlisted.
        pairs_scored: fused pair scores computed (the union of both directions' shortlists).
    """

    i2t: Tensor
    t2i: Tensor
    i2t_shortlist: Tensor
    t2i_shortlist: Tensor
    pairs_scored: int


def rerank_rankings(
    model: Scorer, images: Fragments, texts: Fragments, rerank: int, precision: Precision = "auto"
) -> RerankRanking:
    """Shortlist ``rerank`` candidates per query by ``<i0, c0>`` in both directions; fuse-score their union once.

    Every image query keeps its top ``rerank`` captions and every caption query its top ``rerank``
    images; a pair shortlisted by both directions is scored once. Memory: a few (N_images, N_texts)
    float32 matrices plus the fusion caches of all items.
    """
    if rerank < 1:
        raise InputError(f"rerank must be at least 1; got {rerank}.")
    device = images.features.device
    with scoring_mode(device, precision):
        cheap = cheap_scores(images.pooled, texts.pooled)
        rows = torch.zeros_like(cheap, dtype=torch.bool)
        rows.scatter_(1, cheap.topk(min(rerank, len(texts)), dim=1).indices, True)
        cols = torch.zeros_like(cheap, dtype=torch.bool)
        cols.scatter_(0, cheap.topk(min(rerank, len(images)), dim=0).indices, True)
        full, scored = cheap.clone(), 0
        if model.uses_fusion:
            image_idx, text_idx = (rows | cols).nonzero(as_tuple=True)
            fusion, scored = model.fusion, len(image_idx)
            image_cache, text_cache = fusion.prepare_images(images), fusion.prepare_texts(texts)
            fused = score_pairs(fusion, image_cache, text_cache, image_idx, text_idx)
            full[image_idx, text_idx] = model.dual_weight * cheap[image_idx, text_idx] + model.alpha * fused
        # every shortlisted pair must rank above every other: lift them past the largest magnitude present
        lift = 1.0 + float(full.abs().max()) + float(cheap.abs().max())
        i2t = torch.where(rows, full + lift, cheap - lift)
        t2i = torch.where(cols, full + lift, cheap - lift)
    return RerankRanking(i2t, t2i, rows, cols, scored)


__all__ = [
    "EmbeddingIndex",
    "RerankRanking",
    "Scorer",
    "SearchResult",
    "cheap_scores",
    "rerank_rankings",
    "search",
]
