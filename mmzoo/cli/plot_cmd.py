"""``mmzoo plot RUNDIR [--out FILE]``: the training curves of a run as one picture.

Reads ``RUNDIR/metrics.jsonl`` (one line per finished epoch, as ``mmzoo train`` writes it) and draws the training
loss, the learning rate, the dev recall at K = 1, 5, 10 in both directions and the dev rsum, with the best epoch
(the one saved as ``best/``) starred and epochs that looked collapsed crossed out. Writes ``RUNDIR/curves.png``
unless ``--out`` names another file (``.png``, ``.svg`` or ``.pdf``). Needs matplotlib: ``pip install "mmzoo[plot]"``.
Works while the run is still training: it draws the epochs finished so far.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot", help="draw a training run's loss, learning-rate and dev-recall curves", description=__doc__
    )
    p.add_argument("rundir", metavar="RUNDIR", help="training run folder (holds metrics.jsonl)")
    p.add_argument("--out", help="picture to write: .png, .svg or .pdf (default RUNDIR/curves.png)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mmzoo._atomic import writable_file
    from mmzoo.cli._plots import _pyplot, plot_run
    from mmzoo.errors import DataError
    from mmzoo.training.rundir import METRICS_NAME, read_metrics

    folder = Path(args.rundir)
    if not (folder / METRICS_NAME).is_file():
        what = "is not a folder" if not folder.is_dir() else f"holds no {METRICS_NAME}"
        raise DataError(f"{folder} {what}: give a training run folder (`mmzoo train --out RUNDIR`).")
    out = writable_file(args.out or folder / "curves.png", "--out file")
    _pyplot()  # a missing matplotlib is named before anything is read
    records = read_metrics(folder)
    path = plot_run(records, out, title=f"{folder} ({len(records)} epoch{'s' if len(records) != 1 else ''})")
    print(f"wrote {path}")
    return 0
