"""Strict weight loading: every tensor must fit, nothing is loaded partially, nothing non-finite is accepted."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from mmzoo.errors import CheckpointError


def _show(items: list[str]) -> str:
    return ", ".join(items[:10]) + (f" and {len(items) - 10} more" if len(items) > 10 else "")


def check_finite(tensors: Mapping[str, Tensor], source: str) -> None:
    """Raise a CheckpointError naming the floating-point tensors that hold NaN or infinity."""
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(
            f"The weights in {source} hold NaN or infinite values in {len(bad)} tensor(s): {_show(sorted(bad))}. "
            "The file is corrupted, or it was saved from a run whose training diverged; use an earlier checkpoint."
        )


def check_fit(expected: Mapping[str, Tensor], tensors: Mapping[str, Tensor], source: str) -> None:
    """Every key of ``expected`` (a model's state dict) in ``tensors`` with its shape, no other key, and no integer
    tensor for a floating-point weight; a CheckpointError naming them. Works on ``meta`` tensors too (shapes only)."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(tensors))
        if tensors[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = [
            f"{len(missing)} missing: {_show(missing)}" if missing else "",
            f"{len(unexpected)} unexpected: {_show(unexpected)}" if unexpected else "",
            f"{len(mismatched)} with another shape: {_show(mismatched)}" if mismatched else "",
        ]
        raise CheckpointError(
            f"The weights in {source} do not fit this architecture ({'; '.join(p for p in parts if p)}). "
            "Nothing was loaded. Check that the config matches the checkpoint."
        )
    integers = [
        f"{k} ({tensors[k].dtype})"
        for k in sorted(set(expected) & set(tensors))
        if expected[k].is_floating_point() and not (tensors[k].is_floating_point() or tensors[k].is_complex())
    ]
    if integers:
        raise CheckpointError(
            f"The weights in {source} hold integers where the model has floating-point weights: "
            f"{_show(integers)}. Trained weights are never integers (a quantised or a corrupted export?); nothing "
            "was loaded. Export the floating-point weights."
        )


def load_state_strict(model: torch.nn.Module, tensors: Mapping[str, Tensor], source: str) -> None:
    """Copy ``tensors`` into ``model``; any missing, unexpected or mis-shaped key, or integers for a floating-point
    weight, is a CheckpointError.

    Examples:
        >>> mmzoo.plugin.load_state_strict(model, {"fc.weight": w, "fc.bias": b}, "their checkpoint")  # doctest: +SKIP
    """
    check_fit(model.state_dict(), tensors, source)
    check_finite(tensors, source)
    model.load_state_dict(dict(tensors), strict=True)


__all__ = ["check_finite", "check_fit", "load_state_strict"]
