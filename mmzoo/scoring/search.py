"""Retrieval: an index of encoded items, exhaustive search, and shortlist-and-rerank.

:class:`EmbeddingIndex` and :func:`search` shortlist by a cheap score (one matrix product) and compute the full
score ``S = dual_weight * <i0, c0> + alpha * fused`` only for the top ``rerank`` candidates. The cheap score is
the reranking model's own ``<i0, c0>`` (or its fusion block's own when the block declares one,
``FusionBlock.shortlists``: BLIP-2's maximum over query vectors), or another model's (*cross-model* shortlist and
rerank: a dual encoder's speed, a cross-attention model's accuracy): any model whose encodings have ``pooled``
vectors, or an ensemble of them (:func:`cheap_vectors`). Rankings are always built from float32 scores.

The functions take any *scorer*: an object with the attributes of :class:`Scorer` (a ``MatchingModel`` is
one), or one with a ``score_listed_pairs(images, texts, image_idx, text_idx)`` method (an ``Ensemble``), so
this floor needs nothing above it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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

    Examples:
        >>> index = EmbeddingIndex.from_images(model, model.encode_images(features))  # doctest: +SKIP
        >>> hits = model.search(model.encode_texts(["a red circle"]), index, top_k=5, rerank=50)  # doctest: +SKIP
    """

    side: Literal["images", "texts"]
    fragments: Fragments
    cache: Any | None
    precision: Precision = "auto"
    shortlist_model: Any | None = None
    shortlist_vectors: Tensor | None = None

    @classmethod
    def from_images(
        cls, model: Scorer, images: Fragments, precision: Precision = "auto", shortlist: tuple[Any, Any] | None = None
    ) -> EmbeddingIndex:
        """Index images; ``shortlist=(other_model, other_model.encode_images(same images))`` adds the vectors
        another model shortlists with (see :func:`search`)."""
        return cls._build(model, "images", images, precision, shortlist)

    @classmethod
    def from_texts(
        cls, model: Scorer, texts: Fragments, precision: Precision = "auto", shortlist: tuple[Any, Any] | None = None
    ) -> EmbeddingIndex:
        return cls._build(model, "texts", texts, precision, shortlist)

    @classmethod
    def _build(
        cls, model: Scorer, side: str, fragments: Fragments, precision: Precision, shortlist: tuple[Any, Any] | None
    ) -> EmbeddingIndex:
        cache = None
        if model.uses_fusion:
            with scoring_mode(fragments.features.device, precision):
                prepare = model.fusion.prepare_images if side == "images" else model.fusion.prepare_texts
                cache = prepare(fragments)
        index = cls(side, fragments, cache, precision)
        return index.with_shortlist(*shortlist) if shortlist is not None else index

    def with_shortlist(self, model: Any, fragments: Any) -> EmbeddingIndex:
        """This index plus another model's cheap vectors of the same items, in the same order."""
        vectors = cheap_vectors(model, fragments)
        if len(vectors) != len(self):
            raise InputError(
                f"The shortlist model's encodings hold {len(vectors)} items but the index holds {len(self)}: "
                "encode the same items, in the same order, with both models."
            )
        return replace(self, shortlist_model=model, shortlist_vectors=vectors)

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
    model: Scorer,
    queries: Fragments,
    index: EmbeddingIndex,
    top_k: int = 10,
    rerank: int | None = None,
    shortlist: Any | None = None,
    shortlist_queries: Any | None = None,
) -> SearchResult:
    """Best ``top_k`` index items for each query; see :meth:`mmzoo.MatchingModel.search`.

    With ``shortlist`` (another model; ``rerank`` required) the candidates are the top ``rerank`` by that model's
    cheap score, from ``shortlist_queries`` (its encodings of the queries) against the vectors the index holds
    for it (:meth:`EmbeddingIndex.with_shortlist`); ``model``'s full score then ranks them.
    """
    n = len(index)
    if not isinstance(index, EmbeddingIndex):
        raise InputError(
            f"index must be an EmbeddingIndex (EmbeddingIndex.from_images / from_texts); got {index!r:.80}."
        )
    for name, value in (("top_k", top_k), ("rerank", rerank)):
        if (value is None and name == "top_k") or (
            value is not None and (isinstance(value, bool) or not isinstance(value, int))
        ):
            raise InputError(f"{name} must be an integer; got {value!r}.")
    if model.uses_fusion and index.cache is None:
        raise InputError(
            "This index holds no cache of the model's cross-attention block: it was built by another model (one "
            "without that block). Build the index with the model that searches it: "
            "EmbeddingIndex.from_images(model, model.encode_images(...))."
        )
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
    other = None
    if shortlist is not None:
        other = _shortlist_scores(shortlist, shortlist_queries, index, len(queries), rerank)
    top_k, rerank = min(top_k, n), (min(rerank, n) if rerank is not None else None)
    with scoring_mode(queries.features.device, index.precision):
        return _search(model, queries, index, top_k, rerank, other)


def _shortlist_scores(
    shortlist: Any, queries: Any, index: EmbeddingIndex, n_queries: int, rerank: int | None
) -> Tensor:
    """The shortlist model's cheap scores (Q, N) of the queries against the index, float32, after the checks."""
    if rerank is None:
        raise InputError("A shortlist model picks rerank candidates: give rerank=K too.")
    if index.shortlist_vectors is None or index.shortlist_model is not shortlist:
        raise InputError(
            "The index holds no vectors of this shortlist model: build it with "
            "EmbeddingIndex.from_images(model, images, shortlist=(other_model, other_model.encode_images(...))) "
            "or index.with_shortlist(other_model, its encodings of the same items)."
        )
    if queries is None:
        raise InputError("Give shortlist_queries: the shortlist model's encodings of the same queries.")
    vectors = cheap_vectors(shortlist, queries)
    if len(vectors) != n_queries:
        raise InputError(f"shortlist_queries holds {len(vectors)} queries but queries holds {n_queries}.")
    return _float_product(vectors, index.shortlist_vectors.to(vectors.device))


def cheap_vectors(model: Any, fragments: Any) -> Tensor:
    """The vectors whose dot products are ``model``'s cheap scores of ``fragments`` against the other side's.

    ``pooled`` for a model's Fragments; for an ensemble's (``fragments.parts``, ``model.weights``) the members'
    pooled vectors scaled by the square root of their weights and concatenated, so that one product gives the
    weighted mean of the members' cheap scores.

    Examples:
        >>> cheap = cheap_vectors(vse, vse_images) @ cheap_vectors(vse, vse_texts).t()  # doctest: +SKIP
    """
    parts = getattr(fragments, "parts", None)
    if parts is None:
        return fragments.pooled
    weights = getattr(model, "weights", None) or [1.0 / len(parts)] * len(parts)
    return torch.cat([p.pooled * float(w) ** 0.5 for p, w in zip(parts, weights, strict=True)], dim=-1)


def cheap_scores(images_pooled: Tensor, texts_pooled: Tensor) -> Tensor:
    """``<i0, c0>`` of every pair in float32, also inside the engine's autocast.

    Rankings are built from these scores (and, for a shortlist, exact float64 moves of them); bfloat16's 8-bit
    mantissa would round nearby scores into ties and wreck the ranking.
    """
    return _float_product(images_pooled, texts_pooled)


def _float_product(a: Tensor, b: Tensor) -> Tensor:
    with torch.autocast(a.device.type, enabled=False):
        return a.float() @ b.float().t()


def _search(
    model: Scorer, queries: Fragments, index: EmbeddingIndex, top_k: int, rerank: int | None, other: Tensor | None
) -> SearchResult:
    cheap = cheap_scores(queries.pooled, index.fragments.pooled)  # (Q, N): the model's own <i0, c0>
    ranking = cheap if other is None else other
    if not model.uses_fusion:
        if rerank is None:
            scores, indices = cheap.topk(top_k, dim=1)
            return SearchResult(scores, indices)
        shortlist = ranking.topk(rerank, dim=1).indices
        scores, order = cheap.gather(1, shortlist).topk(top_k, dim=1)
        return SearchResult(scores, shortlist.gather(1, order), shortlist)
    fusion, device = model.fusion, queries.features.device
    query_cache = (fusion.prepare_texts if index.side == "images" else fusion.prepare_images)(queries)
    if rerank is None:
        if index.side == "images":
            fused = score_caches(fusion, index.cache, query_cache).t()
        else:
            fused = score_caches(fusion, query_cache, index.cache)
        scores, indices = (model.dual_weight * cheap + model.alpha * fused).topk(top_k, dim=1)
        return SearchResult(scores, indices)
    if other is None and getattr(fusion, "shortlists", False):  # the block's own cheap score (BLIP-2's query max)
        if index.side == "images":
            ranking = fusion.shortlist_scores(index.cache, query_cache).t()
        else:
            ranking = fusion.shortlist_scores(query_cache, index.cache)
    shortlist = ranking.topk(rerank, dim=1).indices  # (Q, K)
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
        i2t: (N_images, N_texts) float64 ranking scores for image queries (read row-wise): each image's
            shortlisted captions with their full score, above all others in their cheap order (moved below the
            shortlist; see :func:`shortlist_first`). Both orders are exact, with no ties that the scores lack.
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
    model: Any,
    images: Any,
    texts: Any,
    rerank: int,
    precision: Precision = "auto",
    shortlist: Any | None = None,
    shortlist_images: Any | None = None,
    shortlist_texts: Any | None = None,
) -> RerankRanking:
    """Shortlist ``rerank`` candidates per query in both directions; full-score their union once with ``model``.

    The shortlist comes from ``model``'s own cheap ``<i0, c0>``, or with ``shortlist`` (another model) from that
    model's cheap score of ``shortlist_images`` x ``shortlist_texts``: its encodings of the same items, in the same
    order. Every image query keeps its top ``rerank`` captions and every caption query its top ``rerank`` images; a
    pair shortlisted by both directions is scored once. ``model`` is a MatchingModel-like scorer or an ensemble
    (anything with ``score_listed_pairs``). Memory: a few (N_images, N_texts) float32 and float64 matrices plus the
    fusion caches of all items.

    Examples:
        >>> ranking = rerank_rankings(mmca, images, texts, 50, shortlist=vse, shortlist_images=vi, shortlist_texts=vt)  # doctest: +SKIP
    """
    if rerank < 1:
        raise InputError(f"rerank must be at least 1; got {rerank}.")
    device = images.device if not isinstance(images, Fragments) else images.features.device
    with scoring_mode(device, precision):
        fusion = getattr(model, "fusion", None) if _fuses(model) else None
        if shortlist is None and getattr(fusion, "shortlists", False):  # the block's own cheap score
            cheap = fusion.shortlist_scores(fusion.prepare_images(images), fusion.prepare_texts(texts)).float()
        elif shortlist is None:
            cheap = _float_product(cheap_vectors(model, images), cheap_vectors(model, texts))
        else:
            if shortlist_images is None or shortlist_texts is None:
                raise InputError(
                    "A shortlist model needs its own encodings: give shortlist_images and shortlist_texts."
                )
            cheap = _float_product(
                cheap_vectors(shortlist, shortlist_images), cheap_vectors(shortlist, shortlist_texts).to(device)
            ).to(device)
            if cheap.shape != (len(images), len(texts)):
                raise InputError(
                    f"The shortlist model's encodings score {tuple(cheap.shape)} pairs but the reranker's hold "
                    f"{len(images)} images x {len(texts)} captions: encode the same items with both models."
                )
        rows = torch.zeros_like(cheap, dtype=torch.bool)
        rows.scatter_(1, cheap.topk(min(rerank, len(texts)), dim=1).indices, True)
        cols = torch.zeros_like(cheap, dtype=torch.bool)
        cols.scatter_(0, cheap.topk(min(rerank, len(images)), dim=0).indices, True)
        image_idx, text_idx = (rows | cols).nonzero(as_tuple=True)
        full = cheap.clone()
        full[image_idx, text_idx] = listed_scores(model, images, texts, image_idx, text_idx, precision)
        i2t = shortlist_first(full, cheap, rows, dim=1)
        t2i = shortlist_first(full, cheap, cols, dim=0)
    return RerankRanking(i2t, t2i, rows, cols, len(image_idx) if _fuses(model) else 0)


def shortlist_first(full: Tensor, cheap: Tensor, shortlisted: Tensor, dim: int) -> Tensor:
    """float64 ranking scores: every ``shortlisted`` pair above every other, each group in its own exact order.

    ``dim`` is the axis a query reads (1: each row is a query, 0: each column). The shortlisted keep their full
    scores unchanged (float32 values are exact in float64); the others keep their cheap scores, moved below the
    lowest shortlisted score by subtracting an integer ``shift`` in float64. (Adding a lift in float32 instead
    rounded scores a few ulps apart into ties, and a tie ranks a positive pessimistically low.) That subtraction
    is exact for every cheap score ``c`` with ``|c| >= (max|cheap| + shift) * 2**-29``: ``c - shift`` is then a
    multiple of ``c``'s last float32 bit below ``2**53`` of them. A query whose line holds a nonzero score below
    twice that (a handful of near-orthogonal pairs in a large test set) gets its others placed by dense rank
    instead, which is exact too; equal cheap scores stay equal either way.
    """
    if bool(shortlisted.all()):
        return full.double()
    ceiling = full[shortlisted].min().double()  # the lowest shortlisted score
    top = cheap.masked_fill(shortlisted, float("-inf")).max().double()  # the highest other one
    # none when they already rank below; else an integer with top - shift <= ceiling - 1
    shift = torch.where(top < ceiling, 0.0, torch.ceil(top - ceiling) + 1.0)
    scores = cheap.double()
    if bool(shift != 0):
        scores.sub_(shift)
        bound = cheap.abs().max().double() + shift  # the largest |c - shift|
        if bool(torch.isfinite(bound)) and bool(bound < 2.0**52):
            inexact = ((cheap.abs() < bound * 2.0**-28) & (cheap != 0)).any(dim).nonzero().flatten()
        else:
            inexact = torch.arange(cheap.shape[1 - dim], device=cheap.device)
        if len(inexact):
            lines = cheap.index_select(1 - dim, inexact)
            ranked = (torch.floor(ceiling) - 1.0) - _dense_ranks(lines, dim).double()
            scores.index_copy_(1 - dim, inexact, torch.where(torch.isnan(lines), float("nan"), ranked))  # NaN stays
    scores[shortlisted] = full[shortlisted].double()
    return scores


def _dense_ranks(scores: Tensor, dim: int) -> Tensor:
    """0 for the highest score along ``dim``, one more for each lower distinct value (equal scores, equal ranks)."""
    values, order = scores.sort(dim=dim, descending=True)
    n = values.shape[dim]
    steps = torch.zeros_like(values, dtype=torch.long)
    steps.narrow(dim, 1, n - 1).copy_(values.narrow(dim, 1, n - 1) != values.narrow(dim, 0, n - 1))
    return torch.empty_like(steps).scatter_(dim, order, steps.cumsum(dim))


def _fuses(model: Any) -> bool:
    members = getattr(model, "members", None)
    return any(m.uses_fusion for m in members) if members is not None else bool(model.uses_fusion)


def listed_scores(
    model: Any, images: Any, texts: Any, image_idx: Tensor, text_idx: Tensor, precision: Precision = "auto"
) -> Tensor:
    """The full score ``S`` (P,) float32 of the pairs (images[image_idx[p]], texts[text_idx[p]]).

    A model with ``score_listed_pairs`` (an ensemble) computes it itself; for a MatchingModel-like scorer it is
    ``dual_weight * <i0, c0> + alpha * fused`` with the fused term from the engine's listed-pairs path (each
    image and caption prepared once), or ``<i0, c0>`` for a model without fusion.
    """
    method = getattr(model, "score_listed_pairs", None)
    if method is not None:
        return method(images, texts, image_idx, text_idx, precision=precision).float()
    device = images.features.device
    with scoring_mode(device, precision):
        cheap = (images.pooled[image_idx].float() * texts.pooled[text_idx].float()).sum(-1)
        if not model.uses_fusion:
            return cheap
        fusion = model.fusion
        fused = score_pairs(fusion, fusion.prepare_images(images), fusion.prepare_texts(texts), image_idx, text_idx)
        return model.dual_weight * cheap + model.alpha * fused.float()


def shortlist_recall(ranking: RerankRanking, captions_per_image: int) -> tuple[float, float]:
    """(i2t, t2i) percentages: images with at least one of their captions in their shortlist (the ceiling of every
    image->text R@K), and captions whose image made their shortlist."""
    n_img, n_txt = ranking.i2t_shortlist.shape
    if n_txt != captions_per_image * n_img:
        raise InputError(f"Need {captions_per_image} captions per image: got {n_txt} captions for {n_img} images.")
    own = torch.arange(n_txt, device=ranking.i2t_shortlist.device) // captions_per_image
    caps = torch.arange(n_txt, device=own.device)
    hit_rows = ranking.i2t_shortlist[own, caps].view(n_img, captions_per_image).any(1)
    return 100.0 * float(hit_rows.double().mean()), 100.0 * float(ranking.t2i_shortlist[own, caps].double().mean())


__all__ = [
    "EmbeddingIndex",
    "RerankRanking",
    "Scorer",
    "SearchResult",
    "cheap_scores",
    "cheap_vectors",
    "listed_scores",
    "rerank_rankings",
    "search",
    "shortlist_first",
    "shortlist_recall",
]
