"""One training step, shared by the single-process reference and the DDP workers of the gloo test."""

from __future__ import annotations

import torch

import mmzoo
from mmzoo.training.distributed import DistContext
from mmzoo.training.step import TrainingStep
from tests.conftest import CAPTIONS, tiny_model

GLOBAL_BATCH = 8


class MeanHinge(mmzoo.plugin.Loss):
    """A third-party loss that averages its hinges over anchors (declares ``reduction = "mean"``)."""

    reduction = "mean"

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        positive = scores.diagonal()
        eye = torch.eye(len(scores), dtype=torch.bool, device=scores.device)
        rows = (0.2 + scores - positive[:, None]).clamp_min(0).masked_fill(eye, 0).sum(1)
        cols = (0.2 + scores - positive[None, :]).clamp_min(0).masked_fill(eye, 0).sum(0)
        return (rows + cols).mean()


class _MeanHingePlugin:
    @mmzoo.plugin.hookimpl
    def mmzoo_register(self, registry):
        registry.loss.register("ddp-mean-hinge", MeanHinge)


if "ddp-mean-hinge" not in mmzoo.registry.loss:
    mmzoo.plugin.register_plugin(_MeanHingePlugin(), name="ddp-test-loss")


def fixed_batch() -> tuple[torch.Tensor, list[str]]:
    g = torch.Generator().manual_seed(7)
    features = torch.randn(GLOBAL_BATCH, 5, 24, generator=g)
    words = ["red", "blue", "green", "small", "big", "circle", "square", "left", "of", "above"]
    captions = [
        " ".join(words[(i * 3 + j * 7) % len(words)] for j in range(2 + i % 4)) + " " + CAPTIONS[i % 4]
        for i in range(GLOBAL_BATCH)
    ]
    return features, captions


def one_step(ctx: DistContext, mode: str) -> dict[str, torch.Tensor]:
    """Build the model (same seed everywhere), take one SGD step on this process's share, return the weights.

    ``mode``: "mmca-all", "mmca-h2" (cheap hard negatives) or "vsepp", optionally with "-local" for per-process
    mining (the single-process reference then sums the two halves' losses, or averages them for a loss that
    averages) and "-mean" for the plugin loss that averages over anchors.
    """
    recipe = "vsepp" if mode.startswith("vsepp") else "mmca"
    h = 2 if "-h2" in mode else "all"
    settings = {"fusion.dropout": 0.0, "visual.dropout": 0.0} if recipe == "mmca" else {}
    if "-mean" in mode:
        settings["loss.name"] = "ddp-mean-hinge"
    model = tiny_model(recipe, **settings)
    model.eval()  # no dropout: the two runs must draw no random numbers differently
    module = TrainingStep(model, h, ctx, global_negatives="-local" not in mode)
    if ctx.enabled:
        module = torch.nn.parallel.DistributedDataParallel(module)
    # plain SGD: the update is proportional to the gradient (Adam would blow float noise in ~0 gradients up to lr)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    features, captions = fixed_batch()
    share = GLOBAL_BATCH // ctx.world_size
    mine = slice(ctx.rank * share, (ctx.rank + 1) * share)
    if not ctx.enabled and "-local" in mode:  # reference of per-process mining: the halves' losses combined
        half = GLOBAL_BATCH // 2
        loss = module(features[:half], captions[:half]) + module(features[half:], captions[half:])
        if model.loss_fn.reduction == "mean":
            loss = loss / 2
    else:
        loss = module(features[mine], captions[mine])
    loss.backward()
    optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
