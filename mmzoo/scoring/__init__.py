"""Scoring: the pair-scoring engine (blocks, memory bounds, precision) and retrieval (index, shortlist, rerank)."""

from __future__ import annotations

from mmzoo.scoring.engine import Precision, compute_dtype, fused_matrix, score_caches, score_pairs, scoring_mode
from mmzoo.scoring.search import (
    EmbeddingIndex,
    RerankRanking,
    Scorer,
    SearchResult,
    cheap_scores,
    cheap_vectors,
    listed_scores,
    rerank_rankings,
    search,
    shortlist_recall,
)
from mmzoo.scoring.threads import configure_threads, default_threads

__all__ = [
    "EmbeddingIndex",
    "Precision",
    "RerankRanking",
    "Scorer",
    "SearchResult",
    "cheap_scores",
    "cheap_vectors",
    "compute_dtype",
    "configure_threads",
    "default_threads",
    "fused_matrix",
    "listed_scores",
    "rerank_rankings",
    "score_caches",
    "score_pairs",
    "scoring_mode",
    "search",
    "shortlist_recall",
]
