"""``mmzoo index build|add|info``: saved, sharded, resumable retrieval indexes (see docs/serving.md).

``mmzoo index build MODEL SOURCE --out INDEX`` embeds SOURCE with MODEL (a zoo name, ``hf-hub:``/``local-dir:``
name, a saved model folder or a training run). SOURCE is a folder of images (recursive), a dataset folder with
``--split`` (region features, for region models), a Karpathy split ``.json`` with ``--image-root``, or a caption
``.txt`` file (one per line: an index of captions, searched with images). Rerun a killed build with the same
command to resume it. Under ``torchrun`` each process embeds its share of the shards; ``--engine ray`` runs the
shards on Ray Data.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from mmzoo.cli._load import load_model, resolve_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build, grow and describe saved retrieval indexes")
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    b = actions.add_parser("build", help="embed a collection into a new index folder (or resume one)")
    b.add_argument("model", help="zoo name, hf-hub:/local-dir: name, saved model folder or training run")
    b.add_argument("source", help="image folder, dataset folder (--split), Karpathy .json, or caption .txt")
    b.add_argument("--out", required=True, help="the index folder to write (new or empty, or a killed build)")
    _source_options(b)
    b.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="stored vectors (float16)")
    b.add_argument(
        "--kind",
        choices=["flat", "ivf", "hnsw"],
        default=None,
        help="ANN index: exact up to 100,000 items, IVF above (default by size)",
    )
    b.add_argument("--nprobe", type=int, default=None, help="IVF lists searched per query (saved default)")
    b.add_argument("--ef", type=int, default=None, help="HNSW search breadth (saved default)")
    b.add_argument("--shard-size", type=int, default=4096, help="items per shard (the unit of work and of resume)")
    b.add_argument(
        "--engine",
        choices=["sequential", "ray"],
        default="sequential",
        help="sequential (also under torchrun: each rank its shards) or ray (Ray Data)",
    )
    _common(b)
    b.set_defaults(run=run_build)

    a = actions.add_parser("add", help="add the items of another source to an index (a new version)")
    a.add_argument("index", help="the index folder")
    a.add_argument("source", help="image folder, dataset folder (--split), Karpathy .json, or caption .txt")
    _source_options(a)
    a.add_argument("--engine", choices=["sequential", "ray"], default="sequential", help="as for build")
    _common(a)
    a.set_defaults(run=run_add)

    i = actions.add_parser("info", help="describe an index folder")
    i.add_argument("index", help="the index folder")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")
    i.add_argument("--verify", action="store_true", help="also check the sha256 of every file")
    i.set_defaults(run=run_info)


def _source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default=None, help="split of a dataset folder (region features) or of a Karpathy file")
    p.add_argument("--image-root", default=None, help="the folder a Karpathy split file's images lie under")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=64, help="items encoded at once")
    p.add_argument("--device", default=None, help="e.g. cuda (under torchrun: cuda:LOCAL_RANK); default cpu")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _device(args: argparse.Namespace) -> str:
    if args.device is None:
        return "cpu"
    if args.device == "cuda" and "LOCAL_RANK" in os.environ:
        return resolve_device(f"cuda:{os.environ['LOCAL_RANK']}")
    return resolve_device(args.device)


def model_spec(spec: str) -> str:
    """A folder given as a relative path is saved absolute, so the index finds its model from anywhere."""
    path = Path(spec)
    return str(path.resolve()) if path.exists() else spec


def run_build(args: argparse.Namespace) -> int:
    from mmzoo.serving import build_index, detect_source

    source = detect_source(args.source, args.split, args.image_root)
    spec = model_spec(args.model)
    model = load_model(spec, _device(args))
    model.eval()
    out = build_index(
        model,
        spec,
        source,
        args.out,
        dtype=args.dtype,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        kind=args.kind,
        nprobe=args.nprobe,
        ef=args.ef,
        engine=args.engine,
        loader=load_model,
        progress=not args.no_progress,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        _print_info(out)
    return 0


def run_add(args: argparse.Namespace) -> int:
    from mmzoo.serving import add_items, detect_source, read_manifest

    manifest = read_manifest(args.index)
    source = detect_source(args.source, args.split, args.image_root)
    model = load_model(manifest["model"]["name"], _device(args))
    model.eval()
    add_items(model, args.index, source, engine=args.engine, loader=load_model, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_info(Path(args.index))
    return 0


def run_info(args: argparse.Namespace) -> int:
    from mmzoo.serving import SavedIndex, read_manifest

    if args.verify:
        SavedIndex.open(args.index, verify=True)
    if args.json:
        print(json.dumps(read_manifest(args.index), indent=2))
    else:
        _print_info(Path(args.index))
        if args.verify:
            print("files:    all sha256 match the manifest")
    return 0


def _print_info(path: Path) -> None:
    from mmzoo.serving import read_manifest

    m = read_manifest(path)
    size = sum((path / rel).stat().st_size for rel in m["files"])
    ann = m["ann"]
    knobs = ", ".join(f"{k}={ann[k]}" for k in ("nlist", "nprobe", "ef") if k in ann)
    print(f"index:    {path} (version {m['version']}, {size / 1e6:.1f} MB)")
    print(f"model:    {m['model']['name']} (weights {m['model']['weights_sha256'][:12]})")
    print(f"items:    {m['count']} {m['kind']}, {m['dim']}-d {m['dtype']} vectors in {len(m['shards'])} shard(s)")
    print(f"ann:      {ann['kind']}{' (' + knobs + ')' if knobs else ''}")
    for seg in m["sources"]:
        desc = ", ".join(f"{k}={v}" for k, v in seg["source"].items())
        print(f"source:   ids {seg['first_id']}..{seg['first_id'] + seg['count'] - 1}: {desc}")
