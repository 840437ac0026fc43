"""Dev evaluation while training, split across the processes of a distributed run.

Every process encodes the split and scores its contiguous share of the image rows; the rows are gathered and
every process computes the same recall metrics (:func:`mmzoo.evaluation.evaluate` with ``shard=True``, which
``torchrun -m mmzoo eval`` uses too). A single process runs the plain evaluation; shortlist-and-rerank runs whole
in every process.
"""

from __future__ import annotations

import torch

from mmzoo.contracts import Split
from mmzoo.evaluation import evaluate
from mmzoo.model import MatchingModel
from mmzoo.training.distributed import DistContext


def evaluate_split(
    model: MatchingModel,
    dataset: Split,
    ctx: DistContext,
    batch_size: int,
    device: torch.device,
    rerank: int | None = None,
) -> dict:
    """Recall metrics of ``dataset`` (dev) by :func:`mmzoo.evaluation.evaluate`, the evaluation ``mmzoo eval``
    runs: every pair (sharded when distributed) or, with ``rerank``, shortlist-and-rerank (whole in every process,
    so each computes the same numbers). The model's training mode is restored."""
    was_training = model.training
    model.eval()
    try:
        return dict(
            evaluate(
                model, dataset, rerank=rerank, batch_size=batch_size, device=device, progress=False, shard=ctx.enabled
            )
        )
    finally:
        model.train(was_training)


__all__ = ["evaluate_split"]
