"""``mmzoo eval MODEL [MODEL ...] --data DIR --split test [--fold5] [--rerank K] [--ensemble] [--json FILE]``.

Recall metrics by the standard protocol, on a dataset folder (``--data``) or from pixels (``--images ROOT --karpathy
dataset_coco.json`` or ``--csv FILE``, for models that read images; ``--dtype bf16`` on a GPU). With ``--rerank K`` retrieval is shortlist-and-rerank
(``mmzoo.scoring``): the cheap <i0,c0> score keeps K candidates per query and only those get the full score;
the shortlist recall is reported beside recall. ``--shortlist A --rerank K`` takes the cheap score from another
model A (a dual encoder's cosine, say) and reranks its candidates with MODEL's full score. With ``--ensemble``,
the models' score matrices are averaged (how SCAN's t2i + i2t and SGRAF's SAF + SGR headline numbers are made).

Each MODEL is a saved model folder (``config.json``), a training run folder (its ``best/`` model is
evaluated), or a name ``mmzoo.from_pretrained`` knows. On data with twins the binding probe is reported;
``--by-type`` reports it per twin type where the data records the types (``{split}_twin_types.txt``).

The command only turns its flags into one :func:`mmzoo.evaluation.evaluate` call (``open_data`` and
``evaluate_options`` below are the two places a new flag goes).

Launched by ``torchrun --nproc-per-node N -m mmzoo eval ...`` the exhaustive scoring is split across the N
processes (each scores its share of the images against every caption, one GPU each) and rank 0 prints and
writes the metrics; shortlist-and-rerank is cheap and runs whole in every process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

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
    p.add_argument(
        "--by-type",
        action="store_true",
        help="on data that records what each twin pair differs in (shapes: colour, shape, size, position), report "
        "the binding probe per twin type too (printed and in --json)",
    )
    p.add_argument("--plot", metavar="FILE", help="also draw recall at K = 1, 5, 10 as a chart (.png, .svg, .pdf)")
    p.add_argument(
        "--sheet",
        metavar="FILE",
        help="also write a contact sheet of the top images for a few test captions (.png or .html; needs the "
        "image files, which features made by `mmzoo extract-features` record)",
    )
    p.add_argument("--sheet-queries", type=int, default=4, help="captions on the contact sheet (default 4)")
    p.add_argument("--batch-size", type=int, default=128, help="encoding batch size (default 128)")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda or cpu (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from mmzoo.training.distributed import init_distributed, shutdown_distributed

    device = resolve_device(args.device)
    for path, flag in ((args.json_path, "--json"), (args.plot, "--plot"), (args.sheet, "--sheet")):
        if path:
            writable_file(path, f"{flag} file")
    if args.plot:
        from mmzoo.cli._plots import _pyplot

        _pyplot()  # a missing matplotlib is named before the evaluation runs
    ctx = init_distributed(torch.device(device).type)
    if ctx.enabled and device.startswith("cuda"):
        device = f"cuda:{ctx.local_rank}"
    try:
        return evaluate_and_report(args, device, main=ctx.is_main, shard=ctx.enabled)
    finally:
        shutdown_distributed(ctx)


def evaluate_and_report(args: argparse.Namespace, device: str, main: bool = True, shard: bool = False) -> int:
    """Parse the flags into one :func:`mmzoo.evaluation.evaluate` call, print and write its metrics."""
    from mmzoo.evaluation import evaluate

    check_flags(args)
    if not main:
        args.no_progress = True
    model = build_model(args.model, args.ensemble, device)
    shortlist = load_model(args.shortlist, device=device) if args.shortlist is not None else None
    dataset = open_data(args)
    if args.dtype != "fp32":  # the weights and the encoding in half precision (a GPU's memory and time)
        for member in (model, shortlist):
            if member is not None:
                member.to(dtype=torch_dtype(args.dtype))
    metrics = evaluate(model, dataset, shortlist=shortlist, device=device, shard=shard, **evaluate_options(args))
    if not main:
        return 0
    print(f"{dataset}, protocol {describe_protocol(args)}")
    print(format_metrics(metrics))
    types = getattr(dataset, "twin_types", None)
    if "bind_t2i" in metrics and types is not None and not args.by_type:
        kinds = sorted({t for t, twin in zip(types, dataset.twins.tolist(), strict=True) if twin >= 0})
        print(f"(the data records the twin types {', '.join(kinds)}: --by-type reports the probe per type)")
    if args.json_path:
        out = Path(args.json_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps({k: round(v, 6) for k, v in metrics.items()}, indent=1) + "\n")
        print(f"wrote {out}")
    if args.plot:
        from mmzoo.cli._plots import plot_recall

        name = " + ".join(args.model)
        plot = plot_recall({name: metrics}, args.plot, title=f"{args.data} {args.split} ({describe_protocol(args)})")
        print(f"wrote {plot}")
    if args.sheet:
        print(f"wrote {write_sheet(model, dataset, args)}")
    return 0


def check_flags(args: argparse.Namespace) -> None:
    """Flag combinations that make no sense, refused in the flags' own words before anything loads."""
    if args.shortlist is not None and args.rerank is None:
        raise InputError("--shortlist picks rerank candidates: give --rerank K (K >= 1) too.")
    if args.rerank is not None and args.rerank < 1:
        raise InputError(f"--rerank must be at least 1; got {args.rerank}.")


def evaluate_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`mmzoo.evaluation.evaluate` the flags set (models and device aside)."""
    return {
        "fold5": args.fold5,
        "rerank": args.rerank,
        "batch_size": args.batch_size,
        "progress": not args.no_progress,
        "strict_features": args.strict_features,
        "precision": args.precision,
        "probe": "by_type" if args.by_type else True,
    }


def describe_protocol(args: argparse.Namespace) -> str:
    protocol = "5-fold" if args.fold5 else "all"
    if args.rerank is not None:
        protocol += f", shortlist-and-rerank K={args.rerank}"
    if args.shortlist is not None:
        protocol += f", shortlist by {args.shortlist}"
    if args.precision != "auto":
        protocol += f", precision {args.precision}"
    return protocol


def write_sheet(model: Any, dataset: Any, args: argparse.Namespace, top: int = 5) -> Path:
    """A contact sheet of retrievals: for a few captions spread over the split, the best images, the right one
    marked green (and wrong ones red)."""
    import torch

    from mmzoo.cli._contact_sheet import Hit, SheetRow, write_contact_sheet
    from mmzoo.data.extract import IMAGES_SUFFIX
    from mmzoo.evaluation import encode_captions, encode_images

    listing = Path(args.data) / f"{args.split}{IMAGES_SUFFIX}"
    if not listing.is_file():
        raise InputError(
            f"--sheet needs the image files of {args.data}'s {args.split} split ({listing} is missing): features "
            "made by `mmzoo extract-features` record them; these were made another way."
        )
    paths = [line for line in listing.read_text(encoding="utf-8").splitlines() if line]
    if args.max_images is None and len(paths) != dataset.num_images:
        raise InputError(f"{listing} lists {len(paths)} images, the split holds {dataset.num_images}.")
    if args.sheet_queries < 1:
        raise InputError(f"--sheet-queries must be at least 1; got {args.sheet_queries}.")
    n, cpi = dataset.num_images, dataset.captions_per_image
    picked = sorted({round(i * (n - 1) / max(args.sheet_queries - 1, 1)) for i in range(min(args.sheet_queries, n))})
    captions = [dataset.captions[i * cpi] for i in picked]
    with torch.no_grad():
        images = encode_images(model, dataset, batch_size=args.batch_size)
        texts = encode_captions(model, captions, batch_size=args.batch_size)
        scores = model.similarity(images.to(model.device), texts.to(model.device)).t().float().cpu()
    best = scores.topk(min(top, n), dim=1)
    rows = []
    for q, truth in enumerate(picked):
        hits = [
            Hit(paths[int(j)], float(s), correct=int(j) == truth)
            for s, j in zip(best.values[q], best.indices[q], strict=True)
        ]
        rows.append(SheetRow(captions[q], hits))
    return write_contact_sheet(rows, args.sheet)


def torch_dtype(name: str) -> Any:
    """``--dtype``'s torch dtype (torch is imported when a command runs, not for ``--help``)."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


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
        lines.extend(format_probe(metrics))
    return "\n".join(lines)


def format_probe(metrics: dict[str, float]) -> list[str]:
    """The binding probe: overall, then per twin type when the data records the types; image->text only where
    the twins' captions are word permutations of each other (else it measures words, not binding)."""
    i2t = "bind_i2t" in metrics
    i2t_text = f"image->text {metrics['bind_i2t']:.1f}" if i2t else "image->text not measured*"
    lines = [f"binding probe (50 = chance): text->image {metrics['bind_t2i']:.1f}  {i2t_text}"]
    types = [k.removeprefix("bind_t2i_") for k in metrics if k.startswith("bind_t2i_")]
    for kind in types:
        i2t_kind = f"  image->text {metrics[f'bind_i2t_{kind}']:.1f}" if i2t else ""
        lines.append(f"  {kind} twins: text->image {metrics[f'bind_t2i_{kind}']:.1f}{i2t_kind}")
    if not i2t:
        lines.append(
            "  * caption k of a twin is not a word permutation of caption k of its image here, so an image->text "
            "twin win can come from words alone: only text->image probes binding"
        )
    return lines
