"""One training forward as an ``nn.Module``: encode, score the batch, apply the loss.

DistributedDataParallel synchronises gradients only for work done inside the forward of the module it
wraps, so the whole training computation (encoders, score matrix, gathers, loss) lives in
:class:`TrainingStep`, the module DDP wraps.

Scaling across processes. With ``global_negatives`` every process gathers all fragments (a
differentiable all-gather), scores its own rows of the global (N*B, N*B) matrix, gathers the rows and
computes the same global loss L. The gathers' backward sums what every process's loss sends to each
local part, so process r holds its share of d(N*L)/dtheta; DDP averages the shares, which gives exactly
dL/dtheta, the gradient one process with batch N*B computes. With per-process mining each process's
loss covers only its B anchors; when the loss sums over anchors (``reduction="sum"``, the VSE++/SCAN
convention) it is multiplied by N so that DDP's average equals the gradient of the sum over all N*B
anchors; a loss that averages (``reduction="mean"``) is left as is, since the mean of the processes' means
is the mean over all anchors. Every loss declares its reduction (:class:`mmzoo.plugin.Loss`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from mmzoo.model import MatchingModel
from mmzoo.training.distributed import DistContext, gather_fragments, gather_tensor
from mmzoo.training.negatives import candidate_mask, score_rows


class TrainingStep(nn.Module):
    """Region features (B, k, D) and B captions (pair n positive) -> the training loss (a scalar)."""

    def __init__(
        self,
        model: MatchingModel,
        hard_negatives: Literal["all"] | int = "all",
        dist_ctx: DistContext | None = None,
        global_negatives: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.hard_negatives = hard_negatives
        self.dist_ctx = dist_ctx or DistContext()
        self.global_negatives = global_negatives

    def forward(self, features: Tensor, captions: Sequence[str], mask: Tensor | None = None) -> Tensor:
        model = self.model
        images = model.encode_images(features, mask)
        texts = model.encode_texts(captions)
        ctx = self.dist_ctx
        if ctx.enabled and self.global_negatives:
            all_images, all_texts = gather_fragments(images), gather_fragments(texts)
            b = len(images)
            mine = slice(ctx.rank * b, (ctx.rank + 1) * b)
            candidates = None
            if self.hard_negatives != "all" and model.uses_fusion:
                cheap = (all_images.pooled @ all_texts.pooled.t()).detach()
                candidates = candidate_mask(cheap, int(self.hard_negatives))[mine]
            rows = score_rows(model, all_images[mine], all_texts, self.hard_negatives, candidates)
            return model.loss_fn(gather_tensor(rows.float()))
        loss = model.loss_fn(score_rows(model, images, texts, self.hard_negatives).float())
        if ctx.enabled and model.loss_fn.reduction == "sum":
            loss = loss * ctx.world_size
        return loss


__all__ = ["TrainingStep"]
