"""``mmzoo extract-features``: run a visual backbone over a Karpathy image dataset once, write precomputed features.

Writes ``OUT/{split}_ims.npy`` (N, k, D) float32 and ``OUT/{split}_caps.txt`` (5 captions per image; Karpathy's
``val`` is written as ``dev`` and ``train+restval`` as ``train``), memory-mapped and resumable: run the same command again after an interruption and it continues.
The backbone is a pixel visual encoder: ``--model`` takes a saved model's, otherwise ``--visual``
(default ``timm-grid``) is built from ``--backbone``, ``--weights``, ``--grid`` and ``--image-size``.
"""

from __future__ import annotations

import argparse
from typing import Any

from mmzoo.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract-features", help="precompute backbone regions from images", description=__doc__)
    p.add_argument("--karpathy", required=True, help="Karpathy split file (dataset_flickr30k.json, dataset_coco.json)")
    p.add_argument("--images", required=True, help="folder the split file's image paths are relative to")
    p.add_argument("--out", required=True, help="features folder to write")
    p.add_argument("--splits", nargs="+", default=["train", "val", "test"], help="splits to extract")
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


def run(args: argparse.Namespace) -> int:
    from mmzoo._atomic import writable_dir
    from mmzoo.data.extract import check_extractor, extract_split, visual_source
    from mmzoo.data.images import KarpathyImages

    writable_dir(args.out, "--out folder")
    encoder, section = build_extractor(args)
    check_extractor(encoder)
    encoder.to(args.device)
    source = visual_source(section)
    for split in args.splits:
        dataset = KarpathyImages(args.karpathy, args.images, split)
        path = extract_split(
            encoder,
            dataset,
            args.out,
            OUTPUT_SPLITS.get(split, split),  # Karpathy's val is our dev, as import-features writes it
            batch_size=args.batch_size,
            workers=args.workers,
            overwrite=args.overwrite,
            source=source,
        )
        print(f"{split}: {len(dataset.records)} images -> {path}")
    return 0
