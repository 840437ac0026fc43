"""torch.distributed plumbing for ``torchrun --nproc_per_node N -m mmzoo train``.

The process group is set up from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``): NCCL on GPUs, gloo on the CPU. Without those variables everything
here degrades to a single process (rank 0 of 1) and no collective is called.

Gathers used in the loss are differentiable (:func:`gather_tensor`): the backward pass sums, on each
process, the gradients that every process's loss sends to its local part (a reduce-scatter).
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from mmzoo.contracts import Fragments
from mmzoo.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_distributed(device_type: str) -> DistContext:
    """Join the process group torchrun described (once); a single process when not launched by it."""
    if not launched_by_torchrun():
        return DistContext()
    if not dist.is_available():
        raise ConfigError("This torch build has no torch.distributed; run without torchrun.")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
        logger.info("joined the %s process group as rank %d of %d", backend, dist.get_rank(), dist.get_world_size())
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank)


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each process the sum, over all processes, of its slice's gradient."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        world = dist.get_world_size()
        out = tensor.new_empty((world * tensor.shape[0], *tensor.shape[1:]))
        dist.all_gather_into_tensor(out, tensor.contiguous())
        ctx.rows = tensor.shape[0]
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        if dist.get_backend() == "nccl":
            out = grad.new_empty((ctx.rows, *grad.shape[1:]))
            dist.reduce_scatter_tensor(out, grad)
            return out
        dist.all_reduce(grad)  # gloo has no reduce-scatter: sum everything, keep this process's slice
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_tensor(tensor: Tensor) -> Tensor:
    """Differentiable all-gather along dim 0 (equal shapes on every rank): (n, ...) -> (world * n, ...)."""
    return _GatherWithGrad.apply(tensor)


def gather_plain(tensor: Tensor) -> Tensor:
    """All-gather without gradient (masks, indices)."""
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def max_over_ranks(value: int, device: torch.device) -> int:
    t = torch.tensor([value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def pad_fragments(frags: Fragments, length: int) -> Fragments:
    """Right-pad the fragment axis to ``length`` with zero features and a False mask (differentiable)."""
    extra = length - frags.features.shape[1]
    if extra <= 0:
        return frags
    features = torch.nn.functional.pad(frags.features, (0, 0, 0, extra))
    mask = torch.nn.functional.pad(frags.mask, (0, extra), value=False)
    return Fragments(features, mask, frags.pooled, frags.modality, frags.origin)


def gather_fragments(frags: Fragments) -> Fragments:
    """All processes' fragments, the fragment axis right-padded to the longest; gradient flows to each owner."""
    padded = pad_fragments(frags, max_over_ranks(frags.features.shape[1], frags.features.device))
    return Fragments(
        gather_tensor(padded.features),
        gather_plain(padded.mask),
        gather_tensor(padded.pooled),
        frags.modality,
        frags.origin,
    )


def all_reduce_mean(value: float, ctx: DistContext, device: torch.device) -> float:
    """The mean of a Python number over all processes (itself when single)."""
    if not ctx.enabled:
        return value
    t = torch.tensor([float(value)], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world_size


def true_everywhere(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """Whether ``flag`` holds on every process (itself when single): a decision all processes must take together."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0.5)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


__all__ = [
    "DistContext",
    "all_reduce_mean",
    "barrier",
    "gather_fragments",
    "gather_plain",
    "gather_tensor",
    "init_distributed",
    "launched_by_torchrun",
    "max_over_ranks",
    "pad_fragments",
    "shutdown_distributed",
    "true_everywhere",
]
