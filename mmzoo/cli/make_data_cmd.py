"""``mmzoo make-data shapes --out DIR [--images N] [--seed S]``: generate a dataset in the precomputed layout."""

from __future__ import annotations

import argparse

from mmzoo.cli._table import format_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-data",
        help="generate a synthetic dataset (shapes) in the precomputed-feature layout",
        description=__doc__,
    )
    p.add_argument("kind", choices=["shapes"], help="which generator (shapes: relational scenes with twins)")
    p.add_argument("--out", required=True, help="output folder, e.g. data/shapes")
    p.add_argument("--images", type=int, default=2000, help="training images (default 2000)")
    p.add_argument("--dev-images", type=int, default=None, help="dev images (default images/4)")
    p.add_argument(
        "--test-images", type=int, default=None, help="test scenes, each written with its twin (default images/4)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same bytes (default 0)")
    p.add_argument("--regions", type=int, default=12, help="regions per image k (default 12)")
    p.add_argument("--region-dim", type=int, default=64, help="size D of one region feature (default 64)")
    p.add_argument(
        "--render", action="store_true", help="also draw the scenes as PNG images (OUT/images, OUT/dataset_shapes.json)"
    )
    p.add_argument("--image-size", type=int, default=128, help="side of the rendered images (default 128)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.add_argument(
        "--twin-swaps",
        default="colour,shape,size,position",
        help="what a test twin may swap, comma-separated (default all four; 'position' makes a relation-heavy "
        "test split: every twin differs only in where its two objects are)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mmzoo._atomic import writable_dir
    from mmzoo.data.shapes import check_swaps, make_shapes

    swaps = check_swaps([s.strip() for s in args.twin_swaps.split(",") if s.strip()])  # before anything is written
    if args.render:  # before anything is written: a missing Pillow must not leave half a dataset behind
        from mmzoo._optional import require

        require("PIL", extra="vision", purpose="make-data --render")
    writable_dir(args.out, "--out folder")
    manifest = make_shapes(
        args.out,
        images=args.images,
        dev_images=args.dev_images,
        test_images=args.test_images,
        seed=args.seed,
        regions=args.regions,
        region_dim=args.region_dim,
        overwrite=args.overwrite,
        twin_swaps=swaps,
    )
    if args.render:
        from mmzoo.data.render import KARPATHY_NAME, render_shapes

        render_shapes(
            args.out,
            images=args.images,
            dev_images=args.dev_images,
            test_images=args.test_images,
            seed=args.seed,
            size=args.image_size,
            progress=True,
            twin_swaps=swaps,
        )
        print(f"rendered {args.image_size}px images to {args.out}/images (split file {KARPATHY_NAME})")
    rows = [(split, s["images"], s["captions"]) for split, s in manifest["splits"].items()]
    print(format_table(["split", "images", "captions"], rows))
    print(
        f"wrote {args.out}: regions {manifest['regions']} x {manifest['region_dim']}, seed {manifest['seed']}, "
        f"twins in {', '.join(manifest['twins'])}"
    )
    return 0
