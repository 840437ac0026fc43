"""Wall-clock speed of MMCA scoring and training with 1, 2, ... torch threads on this (shared) machine.

    python benchmarks/threads.py        # writes benchmarks/results/threads.json

Threads only pay when cores are free: on a busy machine a second OpenMP thread waits for a core at every
parallel region, and every product has a barrier. Each setting runs ``--rounds`` times, the settings taking
turns; the median wall time per setting is reported with the load average before and after. The rule
mmzoo applies by default (``mmzoo.scoring.threads.default_threads``) is printed with what it would choose.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, random_fragments, settings_for
from training_speed import Setup, batches

import mmzoo
from mmzoo.data import make_shapes, open_split
from mmzoo.scoring import fused_matrix
from mmzoo.scoring.threads import default_threads, usable_cores

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "threads.json"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cores = usable_cores()
    counts = sorted({1, 2, cores} - {0})
    info = machine()
    torch.manual_seed(0)
    model = mmzoo.create_model("mmca", **settings_for(64)).eval()
    images, texts = random_fragments(30, 12, 64, seed=1), random_fragments(100, 10, 64, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        make_shapes(tmp, images=400, dev_images=10, test_images=10, seed=0)
        data = open_split(tmp, "train")
        work = batches(data, 32, 2 + args.rounds, seed=0)
        trainer = Setup("mmca", "cached", 8, list(data.captions), data.region_dim)
    jobs = {
        "score 30 x 100 pairs (d 64)": lambda: fused_matrix(model.fusion, images, texts),
        "training step (shapes, batch 32, h 8)": None,
    }
    wall: dict[str, dict[int, list[float]]] = {name: {n: [] for n in counts} for name in jobs}
    step = iter(work)
    for n in counts:  # warm-up at every count
        torch.set_num_threads(n)
        with torch.inference_mode():
            fused_matrix(model.fusion, images[:2], texts[:2])
    for _ in range(args.rounds):
        for n in counts:
            torch.set_num_threads(n)
            start = time.perf_counter()
            with torch.inference_mode():
                jobs["score 30 x 100 pairs (d 64)"]()
            wall["score 30 x 100 pairs (d 64)"][n].append(time.perf_counter() - start)
            batch = next(step, work[-1])
            start = time.perf_counter()
            trainer.run(batch)
            wall["training step (shapes, batch 32, h 8)"][n].append(time.perf_counter() - start)
    rows = []
    for name, per in wall.items():
        medians = {n: statistics.median(v) for n, v in per.items()}
        rows.append({"job": name, "median_wall_s": {str(n): t for n, t in medians.items()}})
        print(name, " ".join(f"{n} threads: {t:.3f} s" for n, t in medians.items()), flush=True)
    load_end = os.getloadavg()[0]
    result = {
        "machine": info,
        "load_average_end": load_end,
        "thread_counts": counts,
        "rows": rows,
        "default_threads_rule": {
            "start": default_threads(cores, info["load_average"]),
            "end": default_threads(cores, load_end),
        },
    }
    print("mmzoo's default would pick", result["default_threads_rule"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
