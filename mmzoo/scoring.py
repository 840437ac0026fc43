"""The pair-scoring engine and shortlist-and-rerank retrieval.

A fusion block scores image-caption *pairs*; evaluating N images against M captions costs N x M of
its forward passes. This module is the model-agnostic part of making that affordable:

* **caching**: it asks the block to ``prepare_images`` / ``prepare_texts`` once (per-image and
  per-caption work, e.g. projections and intra-modality attention) and then calls
  ``score_prepared`` on blocks of the caches (see :class:`mmzoo.FusionBlock`);
* **bounded memory**: blocks hold at most ``fusion.pairs_per_block`` pairs, and caches are built one
  outer block at a time, so scoring 5,000 x 25,000 pairs never holds more than one block of pair
  activations;
* **precision**: everything runs under ``torch.inference_mode``, in bfloat16 autocast on a GPU and in
  float32 on the CPU (``precision=``);
* **less padding**: rows are sorted by their number of valid fragments, so a block's padded length
  is close to its real length;
* **retrieval**: :class:`EmbeddingIndex` and :func:`search` shortlist by the cheap ``<i0, c0>`` score
  with one matrix product and compute the fused term only for the top ``rerank`` candidates.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from mmzoo.contracts import Fragments, FusionBlock
from mmzoo.errors import InputError

if TYPE_CHECKING:
    from mmzoo.model import MatchingModel

Precision = Literal["auto", "fp32", "bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def compute_dtype(device: torch.device | str, precision: Precision = "auto") -> torch.dtype:
    """The dtype the engine computes in: bfloat16 on a GPU and float32 on the CPU for ``"auto"``."""
    if precision == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if precision == "fp32":
        return torch.float32
    if precision not in _DTYPES:
        raise InputError(f"precision must be one of auto, fp32, bf16, fp16; got {precision!r}.")
    return _DTYPES[precision]


@contextlib.contextmanager
def scoring_mode(device: torch.device | str, precision: Precision = "auto") -> Iterator[None]:
    """``torch.inference_mode`` plus autocast to the engine's dtype (nothing extra for float32)."""
    dtype = compute_dtype(device, precision)
    device_type = torch.device(device).type
    with torch.inference_mode():
        if dtype == torch.float32:
            yield
        else:
            with torch.autocast(device_type, dtype=dtype):
                yield


def _length_order(fragments: Fragments) -> Tensor:
    """Row order by number of valid fragments, so each block's padded length is close to its real one."""
    return torch.argsort(fragments.mask.sum(1), stable=True)


def _block_shape(n_images: int, n_texts: int, pairs: int) -> tuple[int, int]:
    """A near-square block of at most ``pairs`` pairs (images x texts) that fits the two sides."""
    pairs = max(int(pairs), 1)
    rows = max(1, min(n_images, math.isqrt(pairs)))
    cols = max(1, min(n_texts, pairs // rows))
    rows = max(1, min(n_images, pairs // cols))
    return rows, cols


def score_caches(
    fusion: FusionBlock,
    image_cache: Any,
    text_cache: Any,
    pairs_per_block: int | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """Fused scores (n_images, n_texts) of two prepared caches, one bounded block of pairs at a time.

    Must run inside :func:`scoring_mode` (or any no-grad context); ``out`` receives the scores in place.
    """
    n_img, n_txt = len(image_cache), len(text_cache)
    rows, cols = _block_shape(n_img, n_txt, pairs_per_block or fusion.pairs_per_block)
    if out is None:
        out = torch.empty(n_img, n_txt, dtype=torch.float32, device=_device_of(image_cache))
    for i in range(0, n_img, rows):
        img = image_cache[i : i + rows]
        for j in range(0, n_txt, cols):
            out[i : i + rows, j : j + cols] = fusion.score_prepared(img, text_cache[j : j + cols])
    return out


def fused_matrix(
    fusion: FusionBlock,
    images: Fragments,
    texts: Fragments,
    block_size: int = 256,
    pairs_per_block: int | None = None,
    precision: Precision = "auto",
) -> Tensor:
    """The fusion block's full (N_images, N_texts) score matrix through the engine, float32.

    Caches are prepared one outer block (``block_size`` images, ``block_size`` captions) at a time, and
    each outer block is scored in inner blocks of at most ``pairs_per_block`` pairs (default: the
    block's own ``pairs_per_block``), so memory is bounded whatever N and M are.

    Example:
        >>> fused = fused_matrix(model.fusion, images, texts)  # doctest: +SKIP
    """
    if block_size < 1:
        raise InputError(f"block_size must be at least 1; got {block_size}.")
    device = images.features.device
    img_order, txt_order = _length_order(images), _length_order(texts)
    images, texts = images[img_order], texts[txt_order]
    out = torch.empty(len(images), len(texts), dtype=torch.float32, device=device)
    with scoring_mode(device, precision):
        for i in range(0, len(images), block_size):
            image_cache = fusion.prepare_images(images[i : i + block_size])
            for j in range(0, len(texts), block_size):
                text_cache = fusion.prepare_texts(texts[j : j + block_size])
                view = out[i : i + block_size, j : j + block_size]
                score_caches(fusion, image_cache, text_cache, pairs_per_block, out=view)
    result = torch.empty_like(out)
    result[img_order[:, None], txt_order[None, :]] = out
    return result


def score_pairs(
    fusion: FusionBlock,
    image_cache: Any,
    text_cache: Any,
    image_idx: Tensor,
    text_idx: Tensor,
    pairs_per_block: int | None = None,
) -> Tensor:
    """Fused scores (P,) of the listed pairs of two prepared caches, a bounded block at a time."""
    step = pairs_per_block or fusion.pairs_per_block
    parts = [
        fusion.score_prepared_pairs(image_cache, text_cache, image_idx[s : s + step], text_idx[s : s + step]).float()
        for s in range(0, len(image_idx), step)
    ]
    return torch.cat(parts) if parts else torch.empty(0, device=image_idx.device)


def _device_of(cache: Any) -> torch.device:
    if isinstance(cache, Fragments):
        return cache.features.device
    return getattr(cache, "device", torch.device("cpu"))


# -- retrieval ---------------------------------------------------------------------------------------
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
    def from_images(cls, model: MatchingModel, images: Fragments, precision: Precision = "auto") -> EmbeddingIndex:
        return cls._build(model, "images", images, precision)

    @classmethod
    def from_texts(cls, model: MatchingModel, texts: Fragments, precision: Precision = "auto") -> EmbeddingIndex:
        return cls._build(model, "texts", texts, precision)

    @classmethod
    def _build(cls, model: MatchingModel, side: str, fragments: Fragments, precision: Precision) -> EmbeddingIndex:
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
    model: MatchingModel, queries: Fragments, index: EmbeddingIndex, top_k: int = 10, rerank: int | None = None
) -> SearchResult:
    """Best ``top_k`` index items for each query; see :meth:`mmzoo.MatchingModel.search`."""
    n = len(index)
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


def _search(
    model: MatchingModel, queries: Fragments, index: EmbeddingIndex, top_k: int, rerank: int | None
) -> SearchResult:
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
        scores, indices = (cheap + model.alpha * fused).topk(top_k, dim=1)
        return SearchResult(scores, indices)
    shortlist = cheap.topk(rerank, dim=1).indices  # (Q, K)
    query_idx = torch.arange(len(queries), device=device).repeat_interleave(rerank)
    item_idx = shortlist.reshape(-1)
    if index.side == "images":
        fused = score_pairs(fusion, index.cache, query_cache, item_idx, query_idx)
    else:
        fused = score_pairs(fusion, query_cache, index.cache, query_idx, item_idx)
    full = cheap.gather(1, shortlist) + model.alpha * fused.view(len(queries), rerank)
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
    model: MatchingModel, images: Fragments, texts: Fragments, rerank: int, precision: Precision = "auto"
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
            full[image_idx, text_idx] += model.alpha * fused
        # cheap scores lie in [-1, 1] and full ones in [-1 - |alpha|, 1 + |alpha|]: lift the shortlisted
        lift = 2.0 + 2.0 * abs(model.alpha)
        i2t = torch.where(rows, full + lift, cheap - lift)
        t2i = torch.where(cols, full + lift, cheap - lift)
    return RerankRanking(i2t, t2i, rows, cols, scored)


def rerank_metrics(
    model: MatchingModel,
    images: Fragments,
    texts: Fragments,
    rerank: int,
    captions_per_image: int = 5,
    precision: Precision = "auto",
) -> dict[str, float]:
    """Recall metrics of shortlist-and-rerank retrieval, plus the shortlist recall of each direction.

    Returns the keys of :func:`mmzoo.evaluation.recall_metrics` and ``i2t_shortlist`` (percentage of
    images with at least one of their captions in their shortlist: the ceiling of every i2t R@K),
    ``t2i_shortlist`` (percentage of captions whose image made their shortlist), ``rerank`` and
    ``pairs_scored``. A recall below exhaustive scoring with a shortlist recall below 100 is a
    shortlist miss, not a model error.

    Example:
        >>> m = rerank_metrics(model, images, texts, rerank=50)  # doctest: +SKIP
        >>> m["rsum"], m["t2i_shortlist"]  # doctest: +SKIP
    """
    from mmzoo.evaluation import METRIC_KEYS, RECALL_KEYS, recall_metrics

    cpi = captions_per_image
    if len(texts) != cpi * len(images):
        raise InputError(f"Need {cpi} captions per image: got {len(texts)} captions for {len(images)} images.")
    ranking = rerank_rankings(model, images, texts, rerank, precision)
    i2t, t2i = recall_metrics(ranking.i2t.cpu(), cpi), recall_metrics(ranking.t2i.cpu(), cpi)
    out = {k: (i2t if k.startswith("i2t") else t2i)[k] for k in METRIC_KEYS if k != "rsum"}
    out["rsum"] = sum(out[k] for k in RECALL_KEYS)
    own = torch.arange(len(texts), device=ranking.i2t_shortlist.device) // cpi
    hit_rows = ranking.i2t_shortlist[own, torch.arange(len(texts))].view(len(images), cpi).any(1)
    out["i2t_shortlist"] = 100.0 * float(hit_rows.double().mean())
    out["t2i_shortlist"] = 100.0 * float(ranking.t2i_shortlist[own, torch.arange(len(texts))].double().mean())
    out["rerank"] = float(rerank)
    out["pairs_scored"] = float(ranking.pairs_scored)
    return out


__all__ = [
    "EmbeddingIndex",
    "RerankRanking",
    "SearchResult",
    "compute_dtype",
    "fused_matrix",
    "rerank_metrics",
    "rerank_rankings",
    "score_caches",
    "score_pairs",
    "scoring_mode",
    "search",
]
