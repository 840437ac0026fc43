"""Evaluation: the retrieval metrics (score matrices in, numbers out) and the protocol that runs a model on a split.

``mmzoo.evaluation.recall_metrics(sims, captions_per_image=5)`` is the function other tools rely on; see
:mod:`mmzoo.evaluation.metrics` for the protocol's rules (ties, 5-fold COCO 1K, the binding probe).
"""

from __future__ import annotations

from mmzoo.evaluation.metrics import (
    BINDING_KEYS,
    METRIC_KEYS,
    RECALL_KEYS,
    average_folds,
    binding_by_type,
    binding_probe,
    captions_permute,
    fold_bounds,
    ranks,
    recall_metrics,
    recall_metrics_fold5,
)
from mmzoo.evaluation.protocol import (
    check_dims,
    encode_captions,
    encode_folder,
    encode_images,
    encode_split,
    evaluate,
    probe_metrics,
    rerank_metrics,
    score_matrix,
    split_twins,
    twin_scores,
    warn_if_constant,
)

__all__ = [
    "BINDING_KEYS",
    "METRIC_KEYS",
    "RECALL_KEYS",
    "average_folds",
    "binding_by_type",
    "binding_probe",
    "captions_permute",
    "check_dims",
    "encode_captions",
    "encode_folder",
    "encode_images",
    "encode_split",
    "evaluate",
    "fold_bounds",
    "probe_metrics",
    "ranks",
    "recall_metrics",
    "recall_metrics_fold5",
    "rerank_metrics",
    "score_matrix",
    "split_twins",
    "twin_scores",
    "warn_if_constant",
]
