"""The one search path over a saved index, shared by ``model.search(queries, saved_index)``, the HTTP service
and therefore :class:`mmzoo.serving.Client`: encode -> ANN shortlist -> optional rerank -> metadata.

Reranking reads the shortlisted items again from their source and prepares the reranker's caches for those K
items only, so memory follows K, not the index size. The full score is the reranker's ``S`` (its cheap score plus
its fused term), computed with :func:`mmzoo.scoring.listed_scores`, which also serves ensembles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mmzoo.contracts import Fragments
from mmzoo.errors import InputError
from mmzoo.scoring import cheap_vectors, listed_scores
from mmzoo.serving.errors import IndexMismatchError
from mmzoo.serving.shard import check_model_fits, model_identity, model_reads

#: the longest text query accepted, in characters.
MAX_QUERY_CHARS = 1000
#: the most results one query may ask for.
MAX_K = 10_000


@dataclass
class Ranked:
    """Ranked ids (Q, k) int64, their scores (Q, k) float32, the shortlist (Q, K) when reranked, stage seconds."""

    ids: np.ndarray
    scores: np.ndarray
    shortlist: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)


def check_index_model(index: Any, model: Any, name: str) -> None:
    """The index must have been built by this very model (same weights): else an IndexMismatchError naming both."""
    weights = model_identity(model, name)["weights_sha256"]
    if weights != index.model["weights_sha256"]:
        raise IndexMismatchError(
            f"The index at {index.path} was built by {index.model['name']} (weights "
            f"{index.model['weights_sha256'][:12]}), but the query model {name} has other weights ({weights[:12]}): "
            "queries must be encoded by the model that built the index."
        )


def check_reranker(index: Any, reranker: Any, name: str) -> None:
    """A reranker must read the items the index holds (pixels, region features or captions)."""
    if index.kind == "texts":
        return
    reads = model_reads(reranker)
    if reads != index.kind:
        raise IndexMismatchError(
            f"The index at {index.path} was built by {index.model['name']} over "
            f"{'images' if index.kind == 'images' else 'region features'}, but the reranker {name} reads "
            f"{'images' if reads == 'images' else 'region features'}: rerank with a model that reads the same items."
        )
    try:
        check_model_fits(reranker, index.kind, f"The reranker {name}")
    except InputError as exc:
        raise IndexMismatchError(str(exc)) from None


def is_text(queries: Any) -> bool:
    return isinstance(queries, list) and bool(queries) and all(isinstance(q, str) for q in queries)


def validate_queries(queries: Any, index_kind: str) -> None:
    if not is_text(queries):
        return
    if index_kind == "texts":
        raise InputError("This index holds captions: search it with an image (or an embedding), not text.")
    for q in queries:
        if not q.strip():
            raise InputError("The text query is empty; type what to look for.")
        if len(q) > MAX_QUERY_CHARS:
            raise InputError(f"The text query has {len(q)} characters; at most {MAX_QUERY_CHARS} are accepted.")


@torch.inference_mode()
def encode(model: Any, queries: Any, index_kind: str) -> Any:
    """Raw queries -> the model's encodings: captions (a list of strings) by the text tower, anything else (images,
    image paths, region features) by the image tower; an image searches an image index by image similarity."""
    if isinstance(queries, Fragments) or hasattr(queries, "parts"):
        return queries
    validate_queries(queries, index_kind)
    if is_text(queries):
        return model.encode_texts(list(queries))
    if model_reads(model) != "images" and not isinstance(queries, torch.Tensor):
        raise InputError("This index's model reads region features, not pictures: search it with text or an embedding.")
    return model.encode_images(queries)


def retrieve(
    index: Any,
    model: Any | None,
    queries: Any = None,
    *,
    k: int = 10,
    embeddings: np.ndarray | None = None,
    reranker: Any | None = None,
    rerank: int | None = None,
) -> Ranked:
    """Best ``k`` items of ``index`` per query: raw queries (captions, images, region features) encoded by
    ``model`` (the index's model), or ``embeddings`` (Q, dim) given directly; ``rerank=K`` rescores the ANN's top K
    with ``reranker`` (default: ``model``'s full score)."""
    for name, value in (("k", k), ("rerank", rerank)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InputError(f"{name} must be an integer; got {value!r}.")
    if not 1 <= k <= MAX_K:
        raise InputError(f"k must lie in 1..{MAX_K}; got {k}.")
    if rerank is not None and not k <= rerank <= MAX_K:
        raise InputError(f"rerank={rerank} must lie in k..{MAX_K} (k={k}).")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if embeddings is None:
        if model is None:
            raise InputError("Give queries with a model to encode them, or embeddings.")
        vectors = cheap_vectors(model, encode(model, queries, index.kind)).float().cpu().numpy()
    else:
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2 or vectors.shape[1] != index.dim or not np.isfinite(vectors).all():
            raise InputError(f"An embedding query must be finite numbers, {index.dim} per query; got {vectors.shape}.")
    t1 = time.perf_counter()
    timings["encode"] = t1 - t0
    want = rerank if rerank is not None else k
    scores, ids = index.search(vectors, want)
    t2 = time.perf_counter()
    timings["ann"] = t2 - t1
    if rerank is None:
        return Ranked(ids[:, :k], scores[:, :k], None, timings)
    scorer = reranker if reranker is not None else model
    if scorer is None or queries is None:
        raise InputError("Reranking needs the raw query (text or image) and a model to score it.")
    new_ids, new_scores = [], []
    for q in range(len(ids)):
        keep = ids[q][ids[q] >= 0]
        s, order = _rerank_one(index, scorer, _one(queries, q), keep)
        new_ids.append(keep[order][:k])
        new_scores.append(s[order][:k])
    timings["rerank"] = time.perf_counter() - t2
    return Ranked(_pad(new_ids, k, -1, np.int64), _pad(new_scores, k, np.nan, np.float32), ids, timings)


def _one(queries: Any, q: int) -> Any:
    if isinstance(queries, torch.Tensor):
        return queries[q : q + 1]
    return [queries[q]]


@torch.inference_mode()
def _rerank_one(index: Any, scorer: Any, query: Any, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reranker's full scores of one query against the items ``ids`` (read again from their source)."""
    if len(ids) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    _source, inputs = index.read_items(ids.tolist())
    n = len(ids)
    if index.kind == "texts":
        texts = scorer.encode_texts(list(inputs))
        images = encode(scorer, query, "texts")
        image_idx, text_idx = torch.zeros(n, dtype=torch.long), torch.arange(n)
    else:
        images = scorer.encode_images(*inputs) if index.kind == "regions" else scorer.encode_images(inputs)
        texts = encode(scorer, query, index.kind)
        image_idx, text_idx = torch.arange(n), torch.zeros(n, dtype=torch.long)
    device = getattr(scorer, "device", torch.device("cpu"))
    scores = listed_scores(scorer, images, texts, image_idx.to(device), text_idx.to(device)).float().cpu().numpy()
    order = np.argsort(-scores, kind="stable")
    return scores, order


def _pad(rows: list[np.ndarray], k: int, fill: Any, dtype: Any) -> np.ndarray:
    out = np.full((len(rows), k), fill, dtype=dtype)
    for n, row in enumerate(rows):
        out[n, : len(row)] = row
    return out


__all__ = ["MAX_K", "MAX_QUERY_CHARS", "Ranked", "check_index_model", "check_reranker", "encode", "retrieve"]
