"""Exhaustive scoring versus shortlist-and-rerank on shapes data: time, rsum and shortlist recall, with the
reranking model's own cheap score and with another model's (cross-model shortlist and rerank).

    python benchmarks/rerank.py                     # 200 x 1,000 (100 base test scenes and their twins)
    python benchmarks/rerank.py --test-images 500 --out benchmarks/results/rerank_1000.json   # 1,000 x 5,000

Generates shapes data, trains the reranker B (the ``mmca`` recipe at the shapes settings, GRU text encoder) and
two dual encoders that can shortlist for it, ``mmca-no-cross`` (MMCA's two self-attention branches, no fusion)
and ``vsepp`` (mean-pooled regions), on the same training split; encodes the test split once per model; then
times ``B.similarity`` (every pair through the engine) against shortlist-and-rerank at each K: B's own
``<i0, c0>`` (``mmzoo.evaluation.rerank_metrics``) and each dual encoder's cosine
(``mmzoo.cli.eval_cmd.cross_rerank_metrics``; the dual encoder's own encoding time is counted). Speed-ups are
ratios of this process's CPU time (one thread; wall-clock ratios beside them): on a shared machine the CPU
time leaves out the time other jobs hold the core.
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
from mmzoo.cli.eval_cmd import cross_rerank_metrics
from mmzoo.data import make_shapes, open_split
from mmzoo.evaluation import encode_split, recall_metrics, rerank_metrics

ROOT = Path(__file__).resolve().parents[1]
#: the dual encoders that shortlist for B, at the same sizes (no fusion block)
SHORTLISTERS = {
    "mmca-no-cross": {k: v for k, v in SHAPES_SETTINGS.items() if not k.startswith("fusion.")},
    "vsepp": {"text.name": "gru", "visual.in_dim": 64, "embed_dim": 64, "text.word_dim": 64},
}


def train(model: mmzoo.MatchingModel, data: mmzoo.Split, epochs: int, batch: int, seed: int, lr: float) -> list[float]:
    """Adam, gradient clip 2, all negatives in the first epoch then hardest negatives (VSE++ style)."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    cpi, losses = data.captions_per_image, []
    model.train()
    for epoch in range(epochs):
        model.loss_fn.set_hardest_negative(epoch > 0)
        order, total = rng.permutation(data.num_images), 0.0
        for s in range(0, len(order) - batch + 1, batch):
            idx = np.sort(order[s : s + batch])
            feats, mask = (torch.from_numpy(x) for x in data.image_features(idx))
            caps = [data.captions[i * cpi + int(rng.integers(cpi))] for i in idx]
            out = model(feats, caps, mask)
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
            opt.step()
            total += float(out.loss.detach())
        losses.append(total / max(1, len(order) // batch))
        print(f"  epoch {epoch}: mean loss {losses[-1]:.3f}", flush=True)
    return losses


def sync(device: str) -> None:
    """Wait for queued GPU work, so that a timer stopped after it measures the work."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def clocked(fn, device: str):
    """(result, CPU seconds, wall seconds)."""
    c0, w0 = time.process_time(), time.perf_counter()
    result = fn()
    sync(device)
    return result, time.process_time() - c0, time.perf_counter() - w0


def build(recipe: str, settings: dict, captions: list[str], device: str) -> mmzoo.MatchingModel:
    torch.manual_seed(0)
    model = mmzoo.create_model(recipe, **settings)
    model.text.fit(captions)
    return model.to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rerank.json"))
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--test-images", type=int, default=100, help="base test scenes; each comes with its twin")
    parser.add_argument("--epochs", type=int, default=12, help="training epochs of the reranker")
    parser.add_argument("--shortlist-epochs", type=int, default=24, help="training epochs of each dual encoder")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ks", default="10,20,50,100,200")
    parser.add_argument("--shortlisters", default=",".join(SHORTLISTERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (times on a GPU include a synchronize)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    if args.device == "cpu":
        torch.set_num_threads(1)
    info = machine()
    names = [n for n in args.shortlisters.split(",") if n]
    with tempfile.TemporaryDirectory() as tmp:
        make_shapes(tmp, images=args.train_images, dev_images=10, test_images=args.test_images, seed=args.seed)
        train_set, test_set = open_split(tmp, "train"), open_split(tmp, "test")
        captions = list(train_set.captions)
        trained, train_seconds = {}, {}
        for recipe, settings, epochs in [("mmca", SHAPES_SETTINGS, args.epochs)] + [
            (n, SHORTLISTERS[n], args.shortlist_epochs) for n in names
        ]:
            print(f"training {recipe} for {epochs} epochs", flush=True)
            model = build(recipe, settings, captions, args.device)
            start = time.perf_counter()
            train(model, train_set, epochs, args.batch, args.seed, args.lr)
            train_seconds[recipe] = time.perf_counter() - start
            trained[recipe] = model.eval()
        reranker = trained["mmca"]
        (images, texts), _, encode_seconds = clocked(
            lambda: encode_split(reranker, test_set, device=args.device, progress=False), args.device
        )
        images, texts = images.to(args.device), texts.to(args.device)
        encoded = {}
        for n in names:
            (si, st), _, sw = clocked(
                lambda n=n: encode_split(trained[n], test_set, device=args.device, progress=False), args.device
            )
            encoded[n] = (si.to(args.device), st.to(args.device), sw)
    n_img, n_txt = len(images), len(texts)
    print(f"test: {n_img} images x {n_txt} captions = {n_img * n_txt} pairs", flush=True)
    with torch.inference_mode():
        cheap = recall_metrics((images.pooled @ texts.pooled.t()).cpu())
        sims, ex_cpu, ex_wall = clocked(lambda: reranker.similarity(images, texts), args.device)
    exhaustive = recall_metrics(sims.float().cpu())
    rows = [
        {
            "mode": "exhaustive",
            "shortlist": None,
            "cpu_seconds": ex_cpu,
            "wall_seconds": ex_wall,
            "pairs_scored": n_img * n_txt,
            "rsum": exhaustive["rsum"],
            "metrics": exhaustive,
        }
    ]
    print(json.dumps({k: v for k, v in rows[-1].items() if k != "metrics"}), flush=True)
    dual_alone = {}
    for n in names:
        si, st, _ = encoded[n]
        dual_alone[n] = recall_metrics((si.pooled @ st.pooled.t()).cpu())["rsum"]
    for k in (int(x) for x in args.ks.split(",")):
        for source in ["mmca", *names]:
            if source == "mmca":
                metrics, cpu, wall = clocked(lambda k=k: rerank_metrics(reranker, images, texts, rerank=k), args.device)
                extra = 0.0
            else:
                si, st, extra = encoded[source]
                metrics, cpu, wall = clocked(
                    lambda k=k, s=source, si=si, st=st: cross_rerank_metrics(
                        reranker, images, texts, k, test_set.captions_per_image, trained[s], si, st
                    ),
                    args.device,
                )
            rows.append(
                {
                    "mode": f"rerank K={k}",
                    "k": k,
                    "shortlist": "own <i0, c0>" if source == "mmca" else source,
                    "cpu_seconds": cpu + extra,
                    "wall_seconds": wall + extra,
                    "shortlist_encode_seconds": extra,
                    "speedup": ex_cpu / (cpu + extra),
                    "speedup_wall": ex_wall / (wall + extra),
                    "pairs_scored": int(metrics["pairs_scored"]),
                    "pair_ratio": n_img * n_txt / max(1, metrics["pairs_scored"]),
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
        "load_average_end": __import__("os").getloadavg()[0],
        "settings": SHAPES_SETTINGS,
        "shortlisters": {n: SHORTLISTERS[n] for n in names},
        "train_images": args.train_images,
        "epochs": args.epochs,
        "shortlist_epochs": args.shortlist_epochs,
        "batch": args.batch,
        "lr": args.lr,
        "train_seconds": train_seconds,
        "test_images": n_img,
        "test_captions": n_txt,
        "encode_seconds": encode_seconds,
        "cheap_only_rsum": cheap["rsum"],
        "dual_encoder_rsum": dual_alone,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
