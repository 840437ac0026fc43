"""``mmzoo extract-features``: run a visual backbone over a folder of images once, write precomputed features.

The captions come from a Karpathy split file (``--karpathy dataset_flickr30k.json``) or from your own CSV or
JSON Lines table of (image, caption[, split]) rows (``--captions captions.csv``; any number of captions per
image). Writes ``OUT/{split}_ims.npy`` (N, k, D) float32 and ``OUT/{split}_caps.txt`` (``--captions-per-image``
lines per image, by default the fewest any image has; ``val`` is written as ``dev`` and ``train+restval`` as
``train``), memory-mapped and resumable: run the same command again after an interruption and it continues.
Every split name is checked before any image is read, and images that cannot be read are skipped with a
warning that names them. The backbone is a pixel visual encoder: ``--model`` takes a saved model's, otherwise
``--visual`` (default ``timm-grid``) is built from ``--backbone``, ``--weights``, ``--grid`` and ``--image-size``.
"""

from __future__ import annotations

import argparse
from typing import Any

from mmzoo.errors import ConfigError, DataError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract-features", help="precompute backbone regions from images", description=__doc__)
    captions = p.add_mutually_exclusive_group(required=True)
    captions.add_argument(
        "--karpathy", help="Karpathy split file (dataset_flickr30k.json, dataset_coco.json)", metavar="FILE"
    )
    captions.add_argument(
        "--captions", help="CSV / TSV / JSON Lines of image,caption[,split] rows (your own data)", metavar="FILE"
    )
    p.add_argument("--images", required=True, help="folder the caption file's image paths are relative to")
    p.add_argument("--out", required=True, help="features folder to write")
    p.add_argument(
        "--splits", nargs="+", help="splits to extract (default: every split of the file; Karpathy's restval left out)"
    )
    p.add_argument("--captions-per-image", type=int, help="captions kept per image (default: the fewest any image has)")
    p.add_argument("--model", help="a saved model folder whose visual encoder extracts (overrides the next options)")
    p.add_argument("--visual", default="timm-grid", help="registered pixel visual encoder (default: timm-grid)")
    p.add_argument("--backbone", default="tf_efficientnet_lite0", help="timm model name")
    p.add_argument("--weights", default="offline:efficientnet_lite0", help="none | timm | offline:NAME | a file")
    p.add_argument("--grid", type=int, help="pool the feature map to GRID x GRID regions")
    p.add_argument("--image-size", type=int, help="input side (default: the weights' own)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true", help="start again even when a split is complete")
    p.set_defaults(run=run)


def build_extractor(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The visual encoder to run and its config section (recorded with the features)."""
    from mmzoo import registry
    from mmzoo.cli._load import load_model
    from mmzoo.contracts import BuildContext
    from mmzoo.model import MatchingModel

    if args.model:
        model = load_model(args.model)
        if not isinstance(model, MatchingModel):
            raise ConfigError(f"{args.model} is an ensemble; extract features with one model's visual encoder.")
        return model.visual, model.config.visual.model_dump(mode="json")
    cls = registry.visual_encoder.get(args.visual)
    params: dict[str, Any] = {"backbone": args.backbone, "weights": args.weights, "grid": args.grid}
    if args.image_size:
        params["preprocess"] = {"image_size": args.image_size}
    try:
        config = cls.Config.model_validate(params)
    except ValueError as exc:
        raise ConfigError(f"extract-features: bad visual settings: {exc}") from None
    # only the backbone runs here: a one-wide head with no attention units keeps the build cheap
    encoder = cls(config.model_copy(update={"layers": 0, "heads": 1}), BuildContext(embed_dim=1))
    section = {"name": args.visual, **config.model_dump(mode="json")}
    return encoder, section


#: Karpathy split names -> the split names of the precomputed layout (what ``mmzoo train`` reads)
OUTPUT_SPLITS = {"val": "dev", "train+restval": "train"}


def plan_splits(path: str, wanted: list[str] | None) -> list[str]:
    """The splits to extract, every name checked against the file before any image is read."""
    from mmzoo.data.images import caption_file_splits

    available = caption_file_splits(path)
    if wanted is None:
        wanted = [s for s in available if s != "restval"] or available
    extra = ["train+restval"] if {"train", "restval"} <= set(available) else []
    unknown = [s for s in wanted if s not in available and s not in extra]
    if unknown:
        hint = ""
        if "val" in unknown and "dev" in available:
            hint = " (this file calls its validation split dev)"
        elif "dev" in unknown and "val" in available:
            hint = " (this file calls it val; it is written as dev)"
        raise DataError(
            f"{path} has no split {', '.join(map(repr, unknown))}; its splits are {', '.join(available + extra)}{hint}."
        )
    outputs: dict[str, str] = {}
    for split in wanted:
        name = OUTPUT_SPLITS.get(split, split)
        if name in outputs:
            raise DataError(f"--splits {outputs[name]} and {split} would both be written as {name!r}; keep one.")
        outputs[name] = split
    return list(dict.fromkeys(wanted))


def read_splits(args: argparse.Namespace, path: str, splits: list[str]) -> tuple[dict[str, list], int]:
    """Each split's readable images (the others skipped with a warning) and the captions kept per image."""
    from mmzoo.data.images import read_records, skip_unreadable

    records = {}
    for split in splits:
        found = read_records(path, args.images, split)
        kept = [found[i] for i in skip_unreadable([r.path for r in found], args.workers, f"{split} images")]
        if not kept:
            raise DataError(f"No image of split {split!r} can be read (from {args.images}); see the warning above.")
        records[split] = kept
    fewest = min(len(r.captions) for items in records.values() for r in items)
    per_image = fewest if args.captions_per_image is None else args.captions_per_image
    if per_image < 1:
        raise DataError(f"--captions-per-image must be at least 1; got {per_image}.")
    short = [r for items in records.values() for r in items if len(r.captions) < per_image]
    if short:
        named = ", ".join(f"{r.path.name} ({len(r.captions)})" for r in short[:5])
        raise DataError(
            f"{len(short)} images have fewer than {per_image} captions: {named}. Lower --captions-per-image "
            f"(at most {fewest} here) or add captions."
        )
    return records, per_image


def run(args: argparse.Namespace) -> int:
    from mmzoo._atomic import writable_dir
    from mmzoo.data.extract import check_extractor, extract_split, visual_source
    from mmzoo.data.images import KarpathyImages

    path = args.captions or args.karpathy
    splits = plan_splits(path, args.splits)  # a wrong split name fails here, before any image is read
    writable_dir(args.out, "--out folder")
    encoder, section = build_extractor(args)
    check_extractor(encoder)
    encoder.to(args.device)
    source = visual_source(section)
    records, per_image = read_splits(args, path, splits)
    for split in splits:
        dataset = KarpathyImages(path, args.images, split, captions_per_image=per_image, records=records[split])
        out = extract_split(
            encoder,
            dataset,
            args.out,
            OUTPUT_SPLITS.get(split, split),  # Karpathy's val is our dev, as import-features writes it
            batch_size=args.batch_size,
            workers=args.workers,
            overwrite=args.overwrite,
            source=source,
        )
        print(
            f"{split}: {len(dataset.records)} images, {per_image} caption{'s' if per_image != 1 else ''} each -> {out}"
        )
    return 0
