"""Exhaustive scoring versus shortlist-and-rerank on shapes data: time, rsum and shortlist recall.

    python benchmarks/rerank.py                     # writes benchmarks/results/rerank.json
    python benchmarks/rerank.py --test-images 500   # the 1,000-image x 5,000-caption scale (twins double it)

Generates shapes data, trains the ``mmca`` recipe at the shapes settings (GRU text encoder) for a few
epochs with Adam so that recall means something, encodes the test split once, then times
``model.similarity`` (every pair through the engine) against ``mmzoo.scoring.rerank_metrics`` at each K.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHAPES_SETTINGS, machine

import mmzoo
from mmzoo.data import make_shapes, open_split
from mmzoo.evaluation import encode_split, recall_metrics
from mmzoo.scoring import rerank_metrics

ROOT = Path(__file__).resolve().parents[1]


def train(model: mmzoo.MatchingModel, data: mmzoo.Split, epochs: int, batch: int, seed: int, lr: float) -> list[float]:
    """Adam, gradient clip 2, all negatives in the first epoch then hardest negatives (VSE++ style)."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    cpi, losses = data.captions_per_image, []
    model.train()
    for epoch in range(epochs):
        model.loss_fn.hardest_negative = epoch > 0
        order, total = rng.permutation(data.num_images), 0.0
        for s in range(0, len(order) - batch + 1, batch):
            idx = np.sort(order[s : s + batch])
            feats = torch.from_numpy(data.image_features(idx)[0])
            caps = [data.captions[i * cpi + int(rng.integers(cpi))] for i in idx]
            out = model(feats, caps)
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
            opt.step()
            total += float(out.loss.detach())
        losses.append(total / max(1, len(order) // batch))
        print(f"epoch {epoch}: mean loss {losses[-1]:.3f}", flush=True)
    return losses.copy()


def sync(device: str) -> None:
    """Wait for queued GPU work, so that a timer stopped after it measures the work."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rerank.json"))
    parser.add_argument("--train-images", type=int, default=1500)
    parser.add_argument("--test-images", type=int, default=100, help="base test scenes; each comes with its twin")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ks", default="10,50,100")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (times on a GPU include a synchronize)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        make_shapes(tmp, images=args.train_images, dev_images=10, test_images=args.test_images, seed=args.seed)
        train_set, test_set = open_split(tmp, "train"), open_split(tmp, "test")
        model = mmzoo.create_model("mmca", **SHAPES_SETTINGS)
        model.text.fit(train_set.captions)
        model.to(args.device)
        start = time.perf_counter()
        losses = train(model, train_set, args.epochs, args.batch, args.seed, args.lr)
        train_seconds = time.perf_counter() - start
        model.eval()
        start = time.perf_counter()
        images, texts = encode_split(model, test_set, device=args.device, progress=False)
        images, texts = images.to(args.device), texts.to(args.device)
        encode_seconds = time.perf_counter() - start
    n_img, n_txt = len(images), len(texts)
    print(f"test: {n_img} images x {n_txt} captions = {n_img * n_txt} pairs", flush=True)
    with torch.inference_mode():
        cheap = recall_metrics((images.pooled @ texts.pooled.t()).cpu())
        start = time.perf_counter()
        sims = model.similarity(images, texts)
        sync(args.device)
        exhaustive_seconds = time.perf_counter() - start
    exhaustive = recall_metrics(sims.float().cpu())
    rows = [
        {
            "mode": "exhaustive",
            "seconds": exhaustive_seconds,
            "pairs_scored": n_img * n_txt,
            "rsum": exhaustive["rsum"],
            "metrics": exhaustive,
        }
    ]
    print(json.dumps(rows[-1]), flush=True)
    for k in (int(x) for x in args.ks.split(",")):
        start = time.perf_counter()
        metrics = rerank_metrics(model, images, texts, rerank=k)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "mode": f"rerank K={k}",
                "k": k,
                "seconds": seconds,
                "speedup": exhaustive_seconds / seconds,
                "pairs_scored": int(metrics["pairs_scored"]),
                "rsum": metrics["rsum"],
                "rsum_delta": metrics["rsum"] - exhaustive["rsum"],
                "i2t_shortlist": metrics["i2t_shortlist"],
                "t2i_shortlist": metrics["t2i_shortlist"],
                "metrics": metrics,
            }
        )
        print(json.dumps({k2: v for k2, v in rows[-1].items() if k2 != "metrics"}), flush=True)
    result = {
        "machine": info,
        "settings": SHAPES_SETTINGS,
        "train_images": args.train_images,
        "epochs": args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "train_seconds": train_seconds,
        "losses": losses,
        "test_images": n_img,
        "test_captions": n_txt,
        "encode_seconds": encode_seconds,
        "cheap_only_rsum": cheap["rsum"],
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
