"""Bidirectional triplet ranking loss with in-batch negatives (VSE++ "max violation").

For a batch of B positive pairs with scores ``S`` (B, B), positives on the diagonal::

    image anchor:   [margin + S(i, j) - S(i, i)]_+   for captions j != i
    caption anchor: [margin + S(j, i) - S(i, i)]_+   for images j != i

With ``hardest_negative`` only the largest violation per anchor counts (VSE++); without it every
negative counts (the "sum of hinges" used for a warm-up epoch). Terms are summed over the batch, as in
the VSE++ and SCAN code; only the diagonal is masked.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from mmzoo.errors import InputError
from mmzoo.plugin import BuildContext, ComponentConfig, Loss


class TripletConfig(ComponentConfig):
    margin: float = Field(0.2, ge=0.0, description="Hinge margin between a positive and a negative score.")
    hardest_negative: bool = Field(True, description="Count only the hardest negative per anchor (VSE++).")
    reduction: Literal["sum", "mean"] = Field("sum", description="Sum (reference code) or average over anchors.")


class TripletLoss(Loss):
    """Hinge loss over the (B, B) score matrix; the trainer switches the hardest negative off for warm-up epochs."""

    Config = TripletConfig
    supports_hardest_negative = True

    def __init__(self, config: TripletConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        self.margin = config.margin
        self.hardest_negative = config.hardest_negative

    @property
    def reduction(self) -> Literal["sum", "mean"]:
        return self.config.reduction

    def set_hardest_negative(self, hardest: bool) -> None:
        self.hardest_negative = bool(hardest)

    def forward(self, scores: Tensor) -> Tensor:
        if scores.dim() != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] == 0:
            raise InputError(
                f"The triplet loss needs a non-empty square (B, B) score matrix; got {tuple(scores.shape)}."
            )
        positive = scores.diagonal()
        cost_caption = (self.margin + scores - positive[:, None]).clamp_min(0)  # image anchors, rows
        cost_image = (self.margin + scores - positive[None, :]).clamp_min(0)  # caption anchors, columns
        eye = torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
        cost_caption = cost_caption.masked_fill(eye, 0)
        cost_image = cost_image.masked_fill(eye, 0)
        if self.hardest_negative:
            per_anchor = cost_caption.max(dim=1).values + cost_image.max(dim=0).values
        else:
            per_anchor = cost_caption.sum(dim=1) + cost_image.sum(dim=0)
        return per_anchor.sum() if self.reduction == "sum" else per_anchor.mean()
