"""``mmzoo eval MODEL [MODEL ...] --data DIR --split test [--fold5] [--rerank K] [--ensemble] [--json FILE]``.

Recall metrics by the standard protocol, on a dataset folder (``--data``) or from pixels (``--images ROOT --karpathy
dataset_coco.json`` or ``--csv FILE``, for models that read images; ``--dtype bf16`` on a GPU). With ``--rerank K`` retrieval is shortlist-and-rerank
(``mmzoo.scoring``): the cheap <i0,c0> score keeps K candidates per query and only those get the full score;
the shortlist recall is reported beside recall. ``--shortlist A --rerank K`` takes the cheap score from another
model A (a dual encoder's cosine, say) and reranks its candidates with MODEL's full score. With ``--ensemble``,
the models' score matrices are averaged (how SCAN's t2i + i2t and SGRAF's SAF + SGR headline numbers are made).

Each MODEL is a saved model folder (``config.json``), a training run folder (its ``best/`` model is
evaluated), or a name ``mmzoo.from_pretrained`` knows.

Launched by ``torchrun --nproc-per-node N -m mmzoo eval ...`` the exhaustive scoring is split across the N
processes (each scores its share of the images against every caption, one GPU each) and rank 0 prints and
writes the metrics; shortlist-and-rerank is cheap and runs whole in every process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from mmzoo._atomic import atomic_write_text, writable_file
from mmzoo.cli._load import load_model, resolve_device
from mmzoo.cli._table import format_table
from mmzoo.errors import InputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model by the standard retrieval protocol", description=__doc__)
    p.add_argument("model", nargs="+", help="saved model folder, run folder (uses RUNDIR/best) or pretrained name")
    p.add_argument("--ensemble", action="store_true", help="average the score matrices of the given models")
    p.add_argument("--data", default=None, help="dataset folder in the precomputed layout (or use --images)")
    p.add_argument(
        "--images",
        default=None,
        metavar="ROOT",
        help="evaluate from pixels: the image root of --karpathy FILE (dataset_coco.json, dataset_flickr30k.json) "
        "or --csv FILE (columns image,caption), for models that read images",
    )
    p.add_argument("--karpathy", default=None, metavar="FILE", help="with --images: a Karpathy split file")
    p.add_argument("--csv", default=None, metavar="FILE", help="with --images: a CSV of image,caption rows")
    p.add_argument(
        "--dtype",
        choices=["fp32", "bf16", "fp16"],
        default="fp32",
        help="the models' weights and encoding (bf16 / fp16 halve a GPU's memory and time; default fp32)",
    )
    p.add_argument("--split", default="test", help="split to evaluate (default test; testall for COCO)")
    p.add_argument("--fold5", action="store_true", help="COCO 1K: average over 5 folds of N/5 images")
    p.add_argument(
        "--json", dest="json_path", metavar="FILE", default=None, help="write the metrics as flat JSON to FILE"
    )
    p.add_argument(
        "--max-images", type=int, default=None, metavar="N", help="evaluate the first N images only (e.g. 1000)"
    )
    p.add_argument(
        "--rerank",
        type=int,
        default=None,
        metavar="K",
        help="shortlist K candidates per query by <i0,c0>, fuse-score only those; adds the shortlist recall",
    )
    p.add_argument(
        "--shortlist",
        default=None,
        metavar="MODEL",
        help="with --rerank: shortlist by this model's cheap score (e.g. a dual encoder); MODEL reranks them",
    )
    p.add_argument(
        "--strict-features",
        action="store_true",
        help="features other than the model was trained on (extractor, size, region policy) are an error, not a warning",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default="auto",
        help="the scoring engine's precision (default auto: bf16 on a GPU, fp32 on the CPU); fp32 reproduces the "
        "float32 scores of the authors' code on a GPU",
    )
    p.add_argument("--batch-size", type=int, default=128, help="encoding batch size (default 128)")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda or cpu (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mmzoo.training.distributed import init_distributed, shutdown_distributed

    device = resolve_device(args.device)
    if args.json_path:
        writable_file(args.json_path, "--json file")
    ctx = init_distributed(torch.device(device).type)
    if ctx.enabled and device.startswith("cuda"):
        device = f"cuda:{ctx.local_rank}"
    try:
        return evaluate_and_report(args, device, main=ctx.is_main, shard=ctx.enabled)
    finally:
        shutdown_distributed(ctx)


def evaluate_and_report(args: argparse.Namespace, device: str, main: bool = True, shard: bool = False) -> int:
    from mmzoo.evaluation import evaluate

    if not main:
        args.no_progress = True
    model = build_model(args.model, args.ensemble, device)
    dataset = open_data(args)
    if args.dtype != "fp32":
        model.to(dtype=DTYPES[args.dtype])
    if args.shortlist is not None:
        shortlist = load_model(args.shortlist, device=device)
        shortlist.to(dtype=DTYPES[args.dtype])
        metrics = evaluate_rerank(model, dataset, args, device, shortlist)
    elif args.rerank is not None:
        metrics = evaluate_rerank(model, dataset, args, device)
    else:
        metrics = evaluate(
            model,
            dataset,
            fold5=args.fold5,
            batch_size=args.batch_size,
            device=device,
            progress=not args.no_progress,
            strict_features=args.strict_features,
            shard=shard,
            precision=args.precision,
        )
    if not main:
        return 0
    protocol = "5-fold" if args.fold5 else "all"
    if args.rerank is not None:
        protocol += f", shortlist-and-rerank K={args.rerank}"
    if args.shortlist is not None:
        protocol += f", shortlist by {args.shortlist}"
    if args.precision != "auto":
        protocol += f", precision {args.precision}"
    print(f"{dataset}, protocol {protocol}")
    print(format_metrics(metrics))
    if args.json_path:
        out = Path(args.json_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps({k: round(v, 6) for k, v in metrics.items()}, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def open_data(args: argparse.Namespace) -> Any:
    """The split to evaluate: a dataset folder (``--data``) or images with their captions (``--images``)."""
    from mmzoo.data import open_image_split, open_split

    if (args.data is None) == (args.images is None):
        raise InputError(
            "Give the data to evaluate on: --data DIR (features) or --images ROOT (with --karpathy/--csv)."
        )
    if args.images is None:
        return open_split(args.data, args.split, max_images=args.max_images)
    return open_image_split(
        args.images, karpathy=args.karpathy, csv_path=args.csv, split=args.split, max_images=args.max_images
    )


def build_model(specs: list[str], ensemble: bool, device: str) -> Any:
    """One model, or the ensemble of several (``--ensemble``)."""
    from mmzoo.model import Ensemble

    if len(specs) > 1 and not ensemble:
        raise InputError(f"{len(specs)} models given: pass --ensemble to average their scores, or give one model.")
    if ensemble and len(specs) < 2:
        raise InputError("--ensemble needs at least two models.")
    models = [load_model(spec, device=device) for spec in specs]
    return Ensemble(models).to(device) if ensemble else models[0]


def evaluate_rerank(
    model: Any, dataset: Any, args: argparse.Namespace, device: str, shortlist: Any | None = None
) -> dict[str, Any]:
    """Recall of shortlist-and-rerank retrieval (per fold with ``--fold5``), its shortlist recall and the binding
    probe (from MODEL's exact scores). With ``shortlist`` (``--shortlist A``) A's cheap score shortlists."""
    from mmzoo.evaluation import (
        average_folds,
        binding_probe,
        encode_split,
        fold_bounds,
        rerank_metrics,
        split_twins,
        twin_scores,
    )

    if args.rerank is None or args.rerank < 1:
        if shortlist is not None and args.rerank is None:
            raise InputError("--shortlist picks rerank candidates: give --rerank K (K >= 1) too.")
        raise InputError(f"--rerank must be at least 1; got {args.rerank}.")
    encoding = {
        "batch_size": args.batch_size,
        "device": device,
        "progress": not args.no_progress,
        "strict_features": args.strict_features,
    }
    images, texts = encode_split(model, dataset, **encoding)
    if shortlist is not None:
        s_images, s_texts = encode_split(shortlist, dataset, **encoding)
    cpi = dataset.captions_per_image
    bounds = fold_bounds(dataset.num_images) if args.fold5 else [(0, dataset.num_images)]
    folds = []
    for a, b in bounds:
        other = {}
        if shortlist is not None:
            other = {
                "shortlist": shortlist,
                "shortlist_images": s_images[a:b].to(device),
                "shortlist_texts": s_texts[a * cpi : b * cpi].to(device),
            }
        folds.append(
            rerank_metrics(
                model,
                images[a:b].to(device),
                texts[a * cpi : b * cpi].to(device),
                args.rerank,
                cpi,
                args.precision,
                **other,
            )
        )
    metrics: dict[str, Any] = average_folds(folds) if args.fold5 else folds[0]
    twins = split_twins(dataset)  # as evaluate(): no probe where --max-images cut off every twin
    if twins is not None:
        metrics.update(binding_probe(twin_scores(model, images, texts, twins, cpi, args.precision), twins, cpi))
    return metrics


def format_metrics(metrics: dict[str, float]) -> str:
    """Two-row recall table (image->text, text->image), then rsum and the binding probe if present."""
    rows = [
        (name, *(f"{metrics[f'{p}_{k}']:.1f}" for k in ("r1", "r5", "r10", "medr", "meanr")))
        for name, p in (("image->text", "i2t"), ("text->image", "t2i"))
    ]
    lines = [format_table(["direction", "R@1", "R@5", "R@10", "medr", "meanr"], rows), f"rsum {metrics['rsum']:.1f}"]
    if "i2t_shortlist" in metrics:
        lines.append(
            f"shortlist recall (true match among the K candidates): image->text {metrics['i2t_shortlist']:.1f}  "
            f"text->image {metrics['t2i_shortlist']:.1f}  ({metrics['pairs_scored']:.0f} pairs fuse-scored)"
        )
    if "bind_t2i" in metrics:
        lines.append(
            f"binding probe (50 = chance): text->image {metrics['bind_t2i']:.1f}  image->text {metrics['bind_i2t']:.1f}"
        )
    return "\n".join(lines)
