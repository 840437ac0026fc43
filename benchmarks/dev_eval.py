"""What dev evaluation costs while training MMCA on shapes, and whether cheaper protocols pick the same epoch.

    python benchmarks/dev_eval.py          # writes benchmarks/results/dev_eval.json

The shapes data at its default sizes (2,000 training images, 500 dev images x 2,500 captions) and the settings its
manifest suggests (the ``mmca`` recipe with the GRU text encoder, batch 32, Adam 1e-3, one warm-up epoch of all
negatives then h = 8 hard negatives). After every training epoch the same model is evaluated on the dev split
by each protocol of ``training.dev_eval``: ``full`` (every pair), ``rerank`` K (shortlist K per query by
<i0, c0>) and ``subset`` N (every pair of the first N dev images). Reported per protocol: its CPU time against
the training epoch's, its rsum against the full one, and whether the epoch it ranks best is the full
evaluation's. Times are this process's CPU time (one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

import mmzoo
from mmzoo.data import make_shapes, open_split
from mmzoo.data.shapes import SHAPES_MODEL, SHAPES_TRAINING
from mmzoo.evaluation import encode_split, evaluate, rerank_metrics
from mmzoo.training.step import TrainingStep

ROOT = Path(__file__).resolve().parents[1]


def train_epoch(step: TrainingStep, opt: torch.optim.Optimizer, data: mmzoo.plugin.Split, batch: int, rng) -> float:
    """One pass over the training captions (each with its image), as the trainer's epochs are."""
    model, cpi = step.model, data.captions_per_image
    model.train()
    order, total, n = rng.permutation(len(data.captions)), 0.0, 0
    for s in range(0, len(order) - batch + 1, batch):
        caps_idx = order[s : s + batch]
        feats, mask = (torch.from_numpy(x) for x in data.image_features(caps_idx // cpi))
        loss = step(feats, [data.captions[i] for i in caps_idx], mask)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        total, n = total + float(loss.detach()), n + 1
    return total / max(n, 1)


def timed(fn):
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dev_eval.json"))
    parser.add_argument("--images", type=int, default=2000, help="training images (dev: a quarter of it)")
    parser.add_argument("--epochs", type=int, default=SHAPES_TRAINING["epochs"])
    parser.add_argument("--ks", default="20,50")
    parser.add_argument("--subsets", default="100,250")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    info = machine()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        make_shapes(tmp, images=args.images, seed=0)
        train_set, dev = open_split(tmp, "train"), open_split(tmp, "dev")
        subsets = {int(n): open_split(tmp, "dev", max_images=int(n)) for n in args.subsets.split(",")}
        model = mmzoo.create_model("mmca", **SHAPES_MODEL, **{"visual.in_dim": train_set.region_dim})
        model.text.fit(list(train_set.captions))
        step = TrainingStep(model, "all")
        opt = torch.optim.Adam(model.parameters(), lr=SHAPES_TRAINING["lr"])
        epochs = []
        for epoch in range(args.epochs):
            warm = epoch < SHAPES_TRAINING["warmup_epochs"]
            model.loss_fn.set_hardest_negative(not warm)
            step.hard_negatives = "all" if warm else SHAPES_TRAINING["hard_negatives"]
            loss, train_s = timed(lambda: train_epoch(step, opt, train_set, SHAPES_TRAINING["batch_size"], rng))
            model.eval()
            row = {"epoch": epoch + 1, "loss": loss, "train_cpu_s": train_s, "protocols": {}}
            full, full_s = timed(lambda: evaluate(model, dev, progress=False))
            row["protocols"]["full"] = {"cpu_s": full_s, "rsum": full["rsum"]}
            (images, texts), encode_s = timed(lambda: encode_split(model, dev, progress=False))
            for k in (int(x) for x in args.ks.split(",")):
                m, s = timed(lambda k=k, i=images, t=texts: rerank_metrics(model, i, t, k, dev.captions_per_image))
                row["protocols"][f"rerank {k}"] = {
                    "cpu_s": s + encode_s,
                    "rsum": m["rsum"],
                    "t2i_shortlist": m["t2i_shortlist"],
                }
            for n, subset in subsets.items():
                m, s = timed(lambda subset=subset: evaluate(model, subset, progress=False))
                row["protocols"][f"subset {n}"] = {"cpu_s": s, "rsum": m["rsum"]}
            epochs.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    best_full = max(epochs, key=lambda r: r["protocols"]["full"]["rsum"])["epoch"]
    for name in epochs[0]["protocols"]:
        best = max(epochs, key=lambda r: r["protocols"][name]["rsum"])["epoch"]
        summary[name] = {
            "cpu_s_per_epoch": float(np.mean([r["protocols"][name]["cpu_s"] for r in epochs])),
            "share_of_training_epoch": float(
                np.mean([r["protocols"][name]["cpu_s"] / r["train_cpu_s"] for r in epochs])
            ),
            "max_abs_rsum_gap_to_full": float(
                max(abs(r["protocols"][name]["rsum"] - r["protocols"]["full"]["rsum"]) for r in epochs)
            ),
            "best_epoch": best,
            "same_best_epoch_as_full": best == best_full,
        }
        print(name, json.dumps(summary[name]), flush=True)
    result = {
        "machine": info,
        "load_average_end": os.getloadavg()[0],
        "settings": {**SHAPES_MODEL, **SHAPES_TRAINING, "epochs": args.epochs},
        "dev_images": dev.num_images,
        "dev_captions": len(dev.captions),
        "epochs": epochs,
        "summary": summary,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
