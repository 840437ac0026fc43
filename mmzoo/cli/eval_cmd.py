"""``mmzoo eval MODEL_OR_RUNDIR --data DIR --split test [--fold5] [--json FILE]``: recall metrics (and binding probe).

MODEL_OR_RUNDIR is a saved model folder (``config.json``), a training run folder (its ``best/`` model is
evaluated), or a name ``mmzoo.from_pretrained`` knows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mmzoo.cli._table import format_table
from mmzoo.errors import CheckpointError, InputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model by the standard retrieval protocol", description=__doc__)
    p.add_argument("model", help="saved model folder, run folder (uses RUNDIR/best) or pretrained name")
    p.add_argument("--data", required=True, help="dataset folder in the precomputed layout")
    p.add_argument("--split", default="test", help="split to evaluate (default test; testall for COCO)")
    p.add_argument("--fold5", action="store_true", help="COCO 1K: average over 5 folds of N/5 images")
    p.add_argument(
        "--json", dest="json_path", metavar="FILE", default=None, help="write the metrics as flat JSON to FILE"
    )
    p.add_argument(
        "--max-images", type=int, default=None, metavar="N", help="evaluate the first N images only (e.g. 1000)"
    )
    p.add_argument("--batch-size", type=int, default=128, help="encoding batch size (default 128)")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda or cpu (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(run=run)


def load_model(spec: str, device: str | None = None) -> Any:
    """A saved folder, a run folder's ``best/``, or ``mmzoo.from_pretrained(spec)`` when the Hub layer exists."""
    import mmzoo
    from mmzoo.serialization import load_pretrained

    path = Path(spec)
    if (path / "config.json").is_file():
        return load_pretrained(path, device=device)
    if (path / "best" / "config.json").is_file():
        return load_pretrained(path / "best", device=device)
    if path.is_dir():
        raise CheckpointError(
            f"{path} is neither a saved model (no config.json) nor a training run (no best/config.json)."
        )
    from_pretrained = getattr(mmzoo, "from_pretrained", None)
    if from_pretrained is None:
        raise CheckpointError(
            f"{spec!r} is not a folder, and this mmzoo cannot load pretrained names; pass a saved model or run folder."
        )
    return from_pretrained(spec, device=device)


def run(args: argparse.Namespace) -> int:
    import torch

    from mmzoo.data import PrecomputedDataset
    from mmzoo.evaluation import evaluate

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine; use --device cpu.")
    model = load_model(args.model, device=device)
    dataset = PrecomputedDataset(args.data, args.split, max_images=args.max_images)
    metrics = evaluate(
        model, dataset, fold5=args.fold5, batch_size=args.batch_size, device=device, progress=not args.no_progress
    )
    protocol = "5-fold" if args.fold5 else "all"
    print(f"{dataset}, protocol {protocol}")
    print(format_metrics(metrics))
    if args.json_path:
        out = Path(args.json_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({k: round(v, 6) for k, v in metrics.items()}, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0


def format_metrics(metrics: dict[str, float]) -> str:
    """Two-row recall table (image->text, text->image), then rsum and the binding probe if present."""
    rows = [
        (name, *(f"{metrics[f'{p}_{k}']:.1f}" for k in ("r1", "r5", "r10", "medr", "meanr")))
        for name, p in (("image->text", "i2t"), ("text->image", "t2i"))
    ]
    lines = [format_table(["direction", "R@1", "R@5", "R@10", "medr", "meanr"], rows), f"rsum {metrics['rsum']:.1f}"]
    if "bind_t2i" in metrics:
        lines.append(
            f"binding probe (50 = chance): text->image {metrics['bind_t2i']:.1f}  image->text {metrics['bind_i2t']:.1f}"
        )
    return "\n".join(lines)
