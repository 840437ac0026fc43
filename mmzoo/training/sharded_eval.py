"""Dev evaluation split across processes: each scores its share of the images, rank 0 ranks them all.

Every process encodes all captions and its contiguous slice of the images, computes its rows of the
(N_images, N_captions) score matrix with ``model.similarity`` (the expensive fused term is thus split
N ways), and the rows are gathered on every process; rank 0 turns them into the standard recall metrics.
A single process calls :func:`mmzoo.evaluation.evaluate` instead (which also reports the binding probe
on the shapes test split).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from mmzoo.contracts import Split
from mmzoo.evaluation import encode_captions, encode_images, evaluate, recall_metrics
from mmzoo.model import MatchingModel
from mmzoo.training.distributed import DistContext


@torch.no_grad()
def sharded_similarity(model: MatchingModel, dataset: Split, ctx: DistContext, batch_size: int) -> torch.Tensor:
    """The full (N_images, N_captions) score matrix, its rows computed across processes; on every rank."""
    n_img = dataset.num_images
    share = math.ceil(n_img / ctx.world_size)
    mine = range(min(ctx.rank * share, n_img), min((ctx.rank + 1) * share, n_img))
    device = model.device
    texts = encode_captions(model, dataset.captions, batch_size=batch_size).to(device)
    rows = torch.zeros(share, len(texts), device=device, dtype=torch.float32)
    if len(mine):
        images = encode_images(model, dataset, list(mine), batch_size=batch_size).to(device)
        for s in range(0, len(images), batch_size):
            rows[s : s + batch_size] = model.similarity(images[s : s + batch_size], texts).float()
    if not ctx.enabled:
        return rows[: len(mine)]
    parts = [torch.empty_like(rows) for _ in range(ctx.world_size)]
    dist.all_gather(parts, rows)
    return torch.cat(parts)[:n_img]


def evaluate_split(
    model: MatchingModel, dataset: Split, ctx: DistContext, batch_size: int, device: torch.device
) -> dict:
    """Recall metrics of ``dataset`` (dev): the standard evaluation, sharded when distributed."""
    was_training = model.training
    model.eval()
    try:
        if not ctx.enabled:
            return dict(evaluate(model, dataset, batch_size=batch_size, device=device, progress=False))
        sims = sharded_similarity(model, dataset, ctx, batch_size)
        return dict(recall_metrics(sims.cpu(), captions_per_image=dataset.captions_per_image))
    finally:
        model.train(was_training)


__all__ = ["evaluate_split", "sharded_similarity"]
