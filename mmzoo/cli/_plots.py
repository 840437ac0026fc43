"""The charts of the CLI: a run's training curves (``mmzoo plot``) and recall at K (``mmzoo eval --plot``).

matplotlib (the ``plot`` extra) draws them off-screen (the Agg backend) into PNG, SVG or PDF files.

Example:
    >>> plot_run(read_metrics("runs/mmca"), "runs/mmca/curves.png", title="runs/mmca")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmzoo._atomic import atomic_write_bytes
from mmzoo._optional import require
from mmzoo.errors import DataError

DIRECTIONS = (("i2t", "image → text"), ("t2i", "text → image"))
KS = ("r1", "r5", "r10")
#: one colour per K, solid for image → text and dashed for text → image.
K_COLOURS = {"r1": "#1f77b4", "r5": "#ff7f0e", "r10": "#2ca02c"}


def _pyplot() -> Any:
    matplotlib = require("matplotlib", extra="plot", purpose="Plotting")
    matplotlib.use("Agg", force=True)  # files only: no window, no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, out: str | Path) -> Path:
    """Write the figure in the format of ``out``'s suffix, atomically (a half-written PNG never stays)."""
    import io

    out = Path(out)
    fmt = out.suffix.lstrip(".").lower() or "png"
    if fmt not in ("png", "svg", "pdf"):
        raise DataError(f"Cannot write a chart as {out.name}: use a .png, .svg or .pdf file name.")
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=120, bbox_inches="tight")
    atomic_write_bytes(out, buffer.getvalue())
    return out


def _dev(record: Mapping[str, Any]) -> Mapping[str, Any]:
    dev = record.get("dev", record)
    return dev if isinstance(dev, Mapping) else {}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def plot_run(records: Sequence[Mapping[str, Any]], out: str | Path, *, title: str = "") -> Path:
    """Loss, learning rate, dev recall at K and dev rsum per epoch of a run's ``metrics.jsonl`` records.

    The best epoch (the one saved as ``best/``: highest dev rsum) is starred; epochs the collapse check flagged
    are marked with a red cross on the rsum panel.
    """
    if not records:
        raise DataError("The run has no finished epoch yet: nothing to plot.")
    plt = _pyplot()
    epochs = [int(r.get("epoch", i + 1)) for i, r in enumerate(records)]
    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    (loss_ax, lr_ax), (recall_ax, rsum_ax) = axes
    losses = [_number(r.get("loss")) for r in records]
    loss_ax.plot(epochs, losses, "o-", color="#444444")
    finite = [v for v in losses if v > 0 and math.isfinite(v)]
    if finite and max(finite) > 20 * min(finite):  # a huge first epoch would flatten the rest
        loss_ax.set_yscale("log")
    hardest = [r.get("hardest_negative") for r in records]
    if True in hardest and False in hardest:  # a warm-up over all negatives: its loss is on another scale
        warm = [e for e, h in zip(epochs, hardest, strict=True) if h is False]
        for e in warm:
            loss_ax.axvspan(e - 0.5, e + 0.5, color="#ffd27f", alpha=0.35, lw=0)
        loss_ax.text(
            warm[0] - 0.45,
            0.97,
            "warm-up:\nall negatives",
            transform=loss_ax.get_xaxis_transform(),
            va="top",
            fontsize=8,
            color="#7a4f00",
        )
    loss_ax.set(title="training loss", xlabel="epoch", ylabel="loss (epoch mean)")
    lrs = [_number(r.get("lr")) for r in records]
    lr_ax.plot(epochs, lrs, "o-", color="#9467bd", drawstyle="steps-post")
    if any(v > 0 for v in lrs):
        lr_ax.set_yscale("log")  # step decays (x0.1) read as equal steps
    distinct = sorted({v for v in lrs if v > 0})
    if 0 < len(distinct) <= 6:  # a step schedule: label the rates themselves
        lr_ax.set_yticks(distinct)
        lr_ax.yaxis.set_minor_locator(plt.NullLocator())
    lr_ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.1g}"))
    lr_ax.yaxis.set_minor_formatter(plt.NullFormatter())
    lr_ax.set(title="learning rate", xlabel="epoch", ylabel="learning rate (epoch start)")
    for key, label in DIRECTIONS:
        style, marker = ("-", "o") if key == "i2t" else ("--", "s")
        for k in KS:
            values = [_number(_dev(r).get(f"{key}_{k}")) for r in records]
            recall_ax.plot(epochs, values, style, marker=marker, color=K_COLOURS[k], label=f"{label} R@{k[1:]}")
    recall_ax.set(title="dev recall at K", xlabel="epoch", ylabel="recall (%)", ylim=(0, 102))
    recall_ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    rsums = [_number(_dev(r).get("rsum")) for r in records]
    rsum_ax.plot(epochs, rsums, "o-", color="#d62728", label="dev rsum")
    collapsed = [(e, v) for e, v, r in zip(epochs, rsums, records, strict=True) if r.get("collapse")]
    if collapsed:
        rsum_ax.plot(
            *zip(*collapsed, strict=True), "x", markersize=12, color="red", mew=3, label="looked collapsed", zorder=6
        )
    ranked = [(v, -e) for v, e in zip(rsums, epochs, strict=True) if not math.isnan(v)]
    if ranked:
        value, best = max(ranked)
        rsum_ax.plot(
            [-best], [value], "*", markersize=16, color="#ffbf00", markeredgecolor="black", label="best/", zorder=5
        )
    top = max((v for v in rsums if math.isfinite(v)), default=600.0)
    rsum_ax.set(title="dev rsum (sum of the six recalls, max 600)", xlabel="epoch", ylabel="rsum")
    rsum_ax.set_ylim(0, min(600.0, top * 1.25 + 10))
    rsum_ax.legend(fontsize=8, loc="best")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.set_xticks(epochs if len(epochs) <= 15 else ax.get_xticks())
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    try:
        return _save(figure, out)
    finally:
        plt.close(figure)


def plot_recall(results: Mapping[str, Mapping[str, Any]], out: str | Path, *, title: str = "") -> Path:
    """Recall at K = 1, 5, 10 of each direction as grouped bars, one group per model (``name -> metrics``)."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    names = list(results)
    width = 0.8 / max(len(names), 1)
    for ax, (key, label) in zip(axes, DIRECTIONS, strict=True):
        for n, name in enumerate(names):
            values = [_number(results[name].get(f"{key}_{k}")) for k in KS]
            positions = [i + (n - (len(names) - 1) / 2) * width for i in range(len(KS))]
            bars = ax.bar(positions, values, width * 0.9, label=name)
            ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
        ax.set_xticks(range(len(KS)), [f"R@{k[1:]}" for k in KS])
        ax.set(title=label, ylim=(0, 105), ylabel="recall (%)" if key == "i2t" else None)
        ax.grid(axis="y", alpha=0.3)
    if len(names) > 1:
        axes[1].legend(fontsize=8, loc="upper left")
    rsums = ", ".join(f"{name}: rsum {_number(m.get('rsum')):.1f}" for name, m in results.items())
    figure.suptitle(f"{title}\n{rsums}" if title else rsums)
    figure.tight_layout()
    try:
        return _save(figure, out)
    finally:
        plt.close(figure)


__all__ = ["plot_recall", "plot_run"]
