"""``mmzoo import-features {tsv,npy-folder,hdf5} SOURCE [SOURCE ...] --karpathy FILE --out DIR``: import features.

Reads region features as they are distributed (bottom-up-attention TSV shards, folders of per-image
``.npy`` / ``.npz`` files, HDF5 files) with captions and splits from a Karpathy split file (or SCAN-style
``{split}_caps.txt`` / ``{split}_ids.txt`` files, or your own CSV / JSON Lines of image,caption[,split] rows,
matched on the image's file stem), and writes memory-mapped ``train``, ``dev`` and
``test`` splits with a manifest. Streaming, so memory stays small for COCO; run the same command again
after an interruption and it continues. See docs/features.md.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from mmzoo.cli._table import format_table

if TYPE_CHECKING:
    from mmzoo.data.importing import CaptionTable, FeatureSource

logger = logging.getLogger(__name__)

FORMATS = ("tsv", "npy-folder", "hdf5")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-features",
        help="import BUTD TSV / per-image .npy|.npz / HDF5 region features into memory-mapped splits",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("format", choices=FORMATS, help="the source format")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="TSV files or folders, feature folders, HDF5 files")
    captions = p.add_mutually_exclusive_group(required=True)
    captions.add_argument(
        "--karpathy", metavar="FILE", help="Karpathy split file: dataset_coco.json, dataset_flickr30k.json"
    )
    captions.add_argument(
        "--captions",
        metavar="DIR|FILE",
        help="folder of {split}_caps.txt and {split}_ids.txt files, or a CSV / JSON Lines of image,caption[,split] rows",
    )
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--extractor", help='the extractor, as you name it: "BUTD Faster R-CNN R101 VG, 36 boxes"')
    p.add_argument("--normalisation", default="none", help="what was done to the features before saving (default none)")
    p.add_argument(
        "--restval",
        choices=("train", "skip"),
        default="train",
        help="Karpathy restval: into train (default) or left out",
    )
    p.add_argument("--splits", nargs="+", help="splits to write (default: train dev test, or every caption-file split)")
    p.add_argument(
        "--captions-per-image",
        type=int,
        help="captions kept per image (default 5; for a CSV / JSON Lines table the fewest any image has)",
    )
    p.add_argument(
        "--match",
        choices=("auto", "cocoid", "filename", "imgid"),
        default="auto",
        help="what feature ids are matched on (auto: cocoid for COCO, the file-name stem otherwise)",
    )
    p.add_argument("--key", help="array in each .npz (feat, x), HDF5 dataset or group member (default: guessed)")
    p.add_argument("--boxes", metavar="DIR", help="npy-folder: folder of {id}.npy box files (cocobu_box, bu_box)")
    p.add_argument("--box-key", help="box array in each .npz (bbox) or HDF5 box dataset (default image_bb/boxes)")
    p.add_argument("--transpose", action="store_true", help="arrays are stored D x k")
    p.add_argument("--index", nargs="+", metavar="FILE", help="hdf5: id index per file (imgid2idx.pkl, .json, .txt)")
    p.add_argument("--index-key", help="hdf5: dataset of image ids inside each file")
    p.add_argument("--group", help="hdf5: the group holding the features (default: the root)")
    p.add_argument(
        "--skip-extra-features", action="store_true", help="leave out features of images the captions do not list"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset or unfinished import in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def build_source(args: argparse.Namespace) -> FeatureSource:
    from mmzoo.data.importing import FolderSource, Hdf5Source, TsvSource
    from mmzoo.errors import ConfigError

    folder_only = {"--boxes": args.boxes}
    hdf5_only = {"--index": args.index, "--index-key": args.index_key, "--group": args.group}
    wrong = {name for name, value in {**folder_only, **hdf5_only}.items() if value}
    if args.format == "tsv":
        wrong |= {name for name, value in (("--key", args.key), ("--box-key", args.box_key)) if value}
        wrong |= {"--transpose"} if args.transpose else set()
    elif args.format == "npy-folder":
        wrong -= set(folder_only)
    else:
        wrong -= set(hdf5_only)
    if wrong:
        raise ConfigError(f"{', '.join(sorted(wrong))} do not apply to {args.format} sources.")
    if args.format == "tsv":
        return TsvSource(args.sources)
    if args.format == "npy-folder":
        return FolderSource(
            args.sources, key=args.key, boxes=args.boxes, box_key=args.box_key, transpose=args.transpose
        )
    return Hdf5Source(
        args.sources,
        key=args.key,
        box_key=args.box_key,
        index=args.index,
        index_key=args.index_key,
        group=args.group,
        transpose=args.transpose,
    )


def read_table(args: argparse.Namespace) -> CaptionTable:
    from mmzoo.data.caption_table import is_caption_table
    from mmzoo.data.importing import read_caption_files, read_caption_table, read_karpathy_captions

    splits = tuple(args.splits) if args.splits else None
    if args.captions and is_caption_table(args.captions):
        return read_caption_table(args.captions, captions_per_image=args.captions_per_image, splits=splits)
    per_image = 5 if args.captions_per_image is None else args.captions_per_image
    if args.karpathy:
        return read_karpathy_captions(
            args.karpathy,
            restval=args.restval,
            captions_per_image=per_image,
            match=args.match,
            splits=splits,
        )
    return read_caption_files(args.captions, captions_per_image=per_image, match=args.match, splits=splits)


def run(args: argparse.Namespace) -> int:
    from mmzoo.data.importing import import_features

    source = build_source(args)
    table = read_table(args)
    if not args.extractor:
        logger.warning(
            "No --extractor given: the manifest cannot tell these features from another extractor's, and models "
            "trained on them cannot warn when used on other features."
        )
    manifest = import_features(
        source,
        table,
        args.out,
        extractor=args.extractor,
        normalisation=args.normalisation,
        skip_extra=args.skip_extra_features,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    rows = [
        (split, s["images"], s["captions"], f"{s['regions_min']}-{s['regions_max']}")
        for split, s in manifest["splits"].items()
    ]
    print(format_table(["split", "images", "captions", "regions"], rows))
    print(
        f"{args.out}: {manifest['source_format']} -> precomp, D = {manifest['region_dim']}, "
        f"k_max = {manifest['regions']} ({manifest['region_policy']}), boxes: {'yes' if manifest['boxes'] else 'no'}, "
        f"extractor: {manifest.get('extractor') or 'not named'}"
    )
    return 0
