"""``mmzoo train``: train a model on precomputed features, or ``--resume`` a run where it stopped.

Examples::

    mmzoo train --model mmca --data data/shapes --out runs/mmca
    mmzoo train --model vsepp --data data/f30k_precomp --out runs/vsepp --set training.batch_size=128
    mmzoo train --model mmca --config mmca-coco --data data/coco_precomp --out runs/mmca-coco   # a shipped config
    mmzoo train --model mmca --config mmca-coco --data data/coco_precomp --out x --dry-run      # what would run
    mmzoo train --resume runs/mmca                      # continue after the last finished epoch
    torchrun --nproc_per_node 4 -m mmzoo train --model mmca --data data/coco_precomp --out runs/mmca-coco
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on precomputed region features",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="recipe name (`mmzoo list`), e.g. mmca, mmca-no-cross, vsepp")
    p.add_argument("--data", help="folder with {train,dev}_ims.npy and {train,dev}_caps.txt")
    p.add_argument("--out", help="run folder to create (run.json, metrics.jsonl, best/, last/)")
    p.add_argument("--epochs", type=int, help="number of epochs (overrides the recipe and the config file)")
    p.add_argument(
        "--config",
        help="YAML or JSON file with `model` (overrides or a full config) and `training`, or the name of a config "
        "that ships with mmzoo (mmca-coco, sgr-f30k, ...)",
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model override (fusion.heads=8, loss.name=triplet) or training.<field>=VALUE; repeatable",
    )
    p.add_argument("--resume", metavar="RUNDIR", help="continue the run in RUNDIR from its last checkpoint")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar: a log line every tenth of an epoch instead"
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log each epoch's loss, lr and dev metrics for TensorBoard in RUNDIR/tensorboard "
        '(pip install "mmzoo[tensorboard]"; view with: tensorboard --logdir RUNDIR)',
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved run (model, training, data settings) as JSON; train nothing",
    )
    p.set_defaults(run=run)


def _train(args: argparse.Namespace, spec: Any, run_dir: str, resume: bool = False) -> list:
    from mmzoo.training import train

    loggers = callbacks(args, run_dir)
    try:
        return train(spec, run_dir, resume=resume, progress=not args.no_progress, callbacks=loggers)
    finally:
        for logger in loggers:
            logger.close()


def callbacks(args: argparse.Namespace, run_dir: str) -> list:
    """The epoch callbacks the flags ask for (rank 0 only: one writer per run)."""
    if not args.tensorboard or os.environ.get("RANK", "0") != "0":
        return []
    from mmzoo.training import TensorBoardLogger

    return [TensorBoardLogger(Path(run_dir) / "tensorboard")]


def run(args: argparse.Namespace) -> int:
    from mmzoo.errors import ConfigError
    from mmzoo.training import TrainConfig, prepare_run, read_run
    from mmzoo.training.trainer import summary

    # a feature file truncated or rewritten while it is memory-mapped kills the process with SIGBUS, which Python
    # cannot catch: faulthandler at least prints where it happened (docs/guarantees.md, "What is not guaranteed")
    if not faulthandler.is_enabled():
        faulthandler.enable()
    if args.resume:
        if args.model or args.config or args.sets or (args.out and args.out != args.resume):
            raise ConfigError(
                "--resume continues a run with its recorded settings; only --epochs (to train longer) and --data "
                "(if the data moved) may be given with it."
            )
        spec = read_run(args.resume)
        if args.epochs is not None:
            spec.training = TrainConfig.for_recipe(spec.training.to_dict(), {"epochs": args.epochs})
        if args.data:
            spec.data = args.data
        if args.dry_run:
            return _print_spec(spec)
        records = _train(args, spec, args.resume, resume=True)
        out = args.resume
    else:
        missing = [flag for flag, value in (("--data", args.data), ("--out", args.out)) if not value]
        if missing:
            raise ConfigError(f"mmzoo train needs {' and '.join(missing)} (or --resume RUNDIR).")
        spec = prepare_run(args.data, args.model, args.config, args.sets, args.epochs)
        if args.dry_run:
            return _print_spec(spec)
        records = _train(args, spec, args.out)
        out = args.out
    if os.environ.get("RANK", "0") != "0":  # torchrun: only rank 0 reports
        return 0
    if records:
        print(f"{summary(records)}; run in {out}")
    else:
        print(f"nothing to train: {out} already finished its epochs (give --epochs N to train longer)")
    return 0


def _print_spec(spec: Any) -> int:
    print(json.dumps(spec.to_dict(), indent=1))
    return 0
