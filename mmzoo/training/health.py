"""Signs that training went wrong, told to the user with the likely cause and the fix.

* a **non-finite loss** stops training at once (:func:`non_finite_loss`), naming the step, the batch and the
  likely cause; nothing of the epoch is saved and the last checkpoint stays intact;
* a **collapse** is flagged after each epoch (:func:`diagnose`): the embeddings of different items point the same
  way (spread near 0), the loss sits at the value it takes when every score is tied, dev recall is at chance.
  One collapsed spread, or two of the other signs, warn with an :class:`~mmzoo.errors.MMZooWarning`. A model that
  scores with its fused term alone (``dual_weight = 0``: SCAN, SGRAF) never scores its pooled embeddings, so their
  spread says nothing about it: its spread is read from its fused scores instead (:func:`score_spread`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mmzoo.errors import TrainingError
from mmzoo.training.config import TrainConfig

#: mean cosine distance between different items below which the embedding has collapsed to a point.
MIN_SPREAD = 0.02
#: relative distance of the epoch's loss to the all-tied loss that counts as "stuck there".
TIED_TOLERANCE = 0.02
#: dev rsum at most this many times the chance rsum counts as chance.
CHANCE_FACTOR = 1.5


def chance_rsum(num_images: int, captions_per_image: int) -> float:
    """Expected rsum of random scores: t2i R@K = K/N, i2t R@K = 1 - P(none of the cpi captions in the top K)."""
    n, cpi = num_images, captions_per_image
    m = n * cpi
    total = 0.0
    for k in (1, 5, 10):
        total += 100.0 * min(k, n) / n
        miss = 1.0
        for j in range(min(k, m)):
            miss *= max(m - cpi - j, 0) / (m - j)
        total += 100.0 * (1.0 - miss)
    return total


def spread(pooled: Tensor) -> float:
    """1 - the mean cosine between different rows of L2-normalised vectors (0: all the same point)."""
    n = len(pooled)
    if n < 2:
        return 1.0
    x = pooled.float()
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = x @ x.t()
    return float(1.0 - (cos.sum() - cos.diagonal().sum()) / (n * (n - 1)))


def score_spread(sims: Tensor) -> tuple[float, float]:
    """(image spread, caption spread) of a fused model, from its (n, n) score matrix of n items and their captions.

    The scores are double-centred (each row's and column's mean removed): what remains is the part of the score
    that depends on *which* image meets *which* caption, the only part that ranks anything. A collapsed model
    scores ``f(image) + g(caption)`` or a constant, which leaves nothing; then both spreads are 0. Otherwise the
    spread of the remaining rows (images) and columns (captions) is measured as for embeddings (:func:`spread`).
    """
    s = sims.double()
    residual = s - s.mean(1, keepdim=True) - s.mean(0, keepdim=True) + s.mean()
    scale = float((s - s.mean()).abs().max())
    if scale == 0.0 or float(residual.abs().max()) <= 1e-6 * scale:
        return 0.0, 0.0
    return spread(residual), spread(residual.t())


@dataclass
class Diagnosis:
    """What looks wrong after an epoch, and what to do."""

    signs: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    collapsed: bool = False

    def message(self, epoch: int) -> str:
        return f"Epoch {epoch}: the model looks collapsed: {'; '.join(self.signs)}. Likely fix: {' '.join(self.advice)}"


def diagnose(
    *,
    loss: float,
    tied_loss: float,
    dev_rsum: float,
    chance: float,
    image_spread: float,
    text_spread: float,
    feature_std: float,
    cfg: TrainConfig,
    hardest_negative: bool,
    spread_of: str = "embeddings",
) -> Diagnosis:
    """Collapse signs of one epoch and the advice that fits them (see the module docstring). ``spread_of`` says
    what the spreads were measured on: ``"embeddings"`` (the pooled vectors) or ``"fused scores"``."""
    found = Diagnosis()
    collapsed_spread = min(image_spread, text_spread) < MIN_SPREAD
    if collapsed_spread:
        what = (
            "the fused scores cannot tell different items apart"
            if spread_of == "fused scores"
            else "the embeddings of different items point the same way"
        )
        found.signs.append(f"{what} (spread {min(image_spread, text_spread):.4f})")
    if tied_loss > 0 and abs(loss - tied_loss) <= TIED_TOLERANCE * tied_loss:
        found.signs.append(f"the loss ({loss:.4g}) sits at its value for all-tied scores ({tied_loss:.4g})")
    if math.isfinite(dev_rsum) and dev_rsum <= CHANCE_FACTOR * chance:
        found.signs.append(f"dev rsum {dev_rsum:.1f} is at chance (random scores give about {chance:.1f})")
    found.collapsed = collapsed_spread or len(found.signs) >= 2
    if not found.collapsed:
        return found
    if feature_std < 1e-6:
        found.advice.append("The dev region features are constant (standard deviation 0): check the data.")
    if cfg.lr >= 1e-2:
        found.advice.append(f"training.lr={cfg.lr:g} is very high for {cfg.optimizer}: try 1e-4 to 1e-3.")
    if hardest_negative and cfg.warmup_epochs == 0:
        found.advice.append(
            "Hardest negatives from the first step often collapse a fresh embedding: warm up over all negatives "
            "first (--set training.warmup_epochs=1)."
        )
    if not found.advice:
        found.advice.append("Lower training.lr, add a warm-up epoch over all negatives, and check the data.")
    return found


def tied_loss(loss_fn: torch.nn.Module, batch_size: int, device: torch.device) -> float:
    """The loss of a batch whose scores are all equal: where a collapsed model's loss settles."""
    with torch.no_grad():
        return float(loss_fn(torch.zeros(batch_size, batch_size, device=device)))


def non_finite_loss(
    loss: Tensor,
    *,
    epoch: int,
    step: int,
    caption_ids: list[int],
    features: Tensor,
    model: torch.nn.Module,
    cfg: TrainConfig,
) -> TrainingError:
    """The error that stops training at a NaN or infinite loss, with the likely cause."""
    weights_bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    largest = float(features.detach().abs().max()) if features.numel() else 0.0
    if weights_bad:
        cause = (
            f"the weights already hold NaN or infinity ({', '.join(weights_bad[:3])}): the optimisation diverged; "
            f"lower training.lr (now {cfg.lr:g}) and keep training.grad_clip on"
        )
    elif not math.isfinite(largest) or largest > 1e4:
        cause = (
            f"the region features reach {largest:.3g}; scale or clean the data (bottom-up features stay in the tens)"
        )
    elif cfg.lr >= 1e-2:
        cause = f"training.lr={cfg.lr:g} is too high; try 1e-4 to 1e-3"
    else:
        cause = "a diverging optimisation; lower training.lr and keep training.grad_clip on"
    shown = ", ".join(map(str, caption_ids[:5])) + (" ..." if len(caption_ids) > 5 else "")
    return TrainingError(
        f"The training loss became {float(loss.detach())} at epoch {epoch}, step {step} (captions {shown} of the "
        f"training split). Likely cause: {cause}. Training stopped; nothing of this epoch was saved and the last "
        "checkpoint is intact."
    )


__all__ = ["Diagnosis", "chance_rsum", "diagnose", "non_finite_loss", "score_spread", "spread", "tied_loss"]
