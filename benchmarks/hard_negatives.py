"""Cheap hard negatives for MMCA: training speed and accuracy of ``hard_negatives = h`` against ``"all"``.

Trains ``mmca`` on the same shapes data with the same budget once per setting (``all`` = the paper's
B x B fused scores per batch; h = the fused term only for each positive and the top-h negatives per
anchor by the cheap <i0, c0> score), in one process one after the other, and writes the training
pairs/s, the speed-up over ``all`` (a ratio measured within one run, the only kind of timing that
means something on a shared CPU), the best dev rsum and the test metrics into ``docs/benchmarks.md``.

Run:  python benchmarks/hard_negatives.py [--h all 8 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shapes_benchmark import (
    MMCA_SETS,
    MODEL_SETS,
    TRAINING,
    machine,
    machine_line,
    make_data,
    train_and_test,
    write_section,
)


def in_run_speeds(records: list[dict], warmup_epochs: int) -> tuple[float, float]:
    """Training pairs/s of the warm-up epochs (every pair fused, in every setting) and of the later epochs.

    Their ratio is measured within one training run, minutes apart, so a shared machine's changing load
    disturbs it far less than a comparison between runs.
    """

    def rate(rs: list[dict]) -> float:
        return sum(r["pairs_per_s"] * r["seconds"] for r in rs) / max(sum(r["seconds"] for r in rs), 1e-9)

    return rate(records[:warmup_epochs]), rate(records[warmup_epochs:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/hard-negatives-bench")
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--test-images", type=int, default=100)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--h", nargs="+", default=["all", "8", "2"], help="settings to compare; 'all' first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("--reuse", action="store_true", help="evaluate finished runs in --out again instead of retraining")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    began, info = time.perf_counter(), machine()
    out = Path(args.out)
    data = make_data(out, args.images, args.test_images, args.seed)
    rows = []
    for h in args.h:
        value = h if h == "all" else int(h)
        rows.append(
            train_and_test("mmca", data, out / f"mmca-h{h}", args.epochs, {"hard_negatives": value}, args.reuse)
        )
    lines = [
        "| hard_negatives | fused pairs per batch (B=32) | pairs/s, warm-up epoch | pairs/s, later epochs | "
        "in-run speed-up | best dev rsum | test rsum | "
        "i2t R@1 | t2i R@1 | bind i2t | bind t2i |",
        "|" + "---|" * 11,
    ]
    b = TRAINING["batch_size"]
    for r in rows:
        h = r["hard_negatives"]
        fused = f"{b * b}" if h == "all" else f"<= {min(b * b, b + 2 * b * int(h))}"
        warm, later = in_run_speeds(r["records"], TRAINING["warmup_epochs"])
        lines.append(
            f"| {h} | {fused} | {warm:.0f} | {later:.0f} | {later / warm:.2f}x | {r['best_dev_rsum']:.1f} | "
            f"{r['rsum']:.1f} | {r['i2t_r1']:.1f} | {r['t2i_r1']:.1f} | {r['bind_i2t']:.1f} | {r['bind_t2i']:.1f} |"
        )
    minutes = (time.perf_counter() - began) / 60
    body = "\n\n".join(
        [
            "## Cheap hard negatives for MMCA (`benchmarks/hard_negatives.py`)",
            f"`mmca` on `make_shapes(images={args.images}, dev_images={args.test_images}, test_images="
            f"{args.test_images}, seed={args.seed})`, {args.epochs} epochs each, training settings "
            + ", ".join(f"{k} {v}" for k, v in TRAINING.items())
            + f"; model sizes `{' '.join(MODEL_SETS + MMCA_SETS)}`. The warm-up epoch fuses every pair in every "
            "setting (all negatives); h applies from epoch 2 on. The in-run speed-up is the later epochs' training "
            "pairs/s over the warm-up epoch's, within the same run (for `all` it shows the noise of the machine). "
            "Dev evaluation always scores every pair.",
            "\n".join(lines),
            machine_line(info, os.getloadavg()[0], minutes),
            f"Rerun: `python benchmarks/hard_negatives.py --threads {args.threads or info['threads']}`.",
        ]
    )
    print(body)
    if not args.no_doc:
        write_section("hard-negatives-benchmark", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
