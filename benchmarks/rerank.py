"""Exhaustive scoring versus shortlist-and-rerank on shapes data: time, rsum and shortlist recall, with the
reranking model's own cheap score and with another model's (cross-model shortlist and rerank).

    python benchmarks/rerank.py                     # 200 x 1,000 (100 base test scenes and their twins)
    python benchmarks/rerank.py --test-images 500 --out benchmarks/results/rerank_1000.json   # 1,000 x 5,000

Generates shapes data and trains, with ``mmzoo.training.train`` at the settings the shapes manifest suggests (what
``mmzoo train --model NAME --data shapes`` does), the reranker B (``mmca``) and two dual encoders that can shortlist
for it, ``mmca-no-cross`` (MMCA's two self-attention branches, no fusion) and ``vsepp`` (mean-pooled regions), on the
same training split; encodes the test split once per model; then
times ``B.similarity`` (every pair through the engine) against shortlist-and-rerank at each K: B's own
``<i0, c0>`` (``mmzoo.evaluation.rerank_metrics``) and each dual encoder's cosine
(``mmzoo.evaluation.rerank_metrics(..., shortlist=...)``; the dual encoder's own encoding time is counted). Speed-ups are
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

import mmzoo
from mmzoo.data import make_shapes, open_split
from mmzoo.evaluation import encode_split, recall_metrics, rerank_metrics
from mmzoo.model import load_folder
from mmzoo.training import prepare_run, train

ROOT = Path(__file__).resolve().parents[1]
#: the dual encoders that shortlist for B
SHORTLISTERS = ("mmca-no-cross", "vsepp")


def train_model(data: str, recipe: str, run_dir: Path, epochs: int, device: str) -> tuple[mmzoo.MatchingModel, dict]:
    """``mmzoo train --model RECIPE --data DATA --epochs EPOCHS``: the best dev checkpoint and its run's spec."""
    sets = ["training.device=" + ("cuda" if device.startswith("cuda") else "cpu")]
    spec = prepare_run(data, recipe, sets=sets, epochs=epochs)
    train(spec, run_dir, progress=False)
    return load_folder(run_dir / "best").to(device).eval(), spec.to_dict()


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rerank.json"))
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--dev-images", type=int, default=200)
    parser.add_argument("--test-images", type=int, default=100, help="base test scenes; each comes with its twin")
    parser.add_argument(
        "--epochs", type=int, default=5, help="training epochs (passes over the captions) of each model"
    )
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
        data = f"{tmp}/shapes"
        make_shapes(
            data, images=args.train_images, dev_images=args.dev_images, test_images=args.test_images, seed=args.seed
        )
        test_set = open_split(data, "test")
        trained, train_seconds, specs = {}, {}, {}
        for recipe in ["mmca", *names]:
            print(f"training {recipe} for {args.epochs} epochs", flush=True)
            start = time.perf_counter()
            trained[recipe], specs[recipe] = train_model(data, recipe, Path(tmp) / recipe, args.epochs, args.device)
            train_seconds[recipe] = time.perf_counter() - start
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
                metrics, cpu, wall = clocked(
                    lambda k=k: rerank_metrics(reranker, images, texts, k, test_set.captions_per_image), args.device
                )
                extra = 0.0
            else:
                si, st, extra = encoded[source]
                metrics, cpu, wall = clocked(
                    lambda k=k, s=source, si=si, st=st: rerank_metrics(
                        reranker,
                        images,
                        texts,
                        k,
                        test_set.captions_per_image,
                        shortlist=trained[s],
                        shortlist_images=si,
                        shortlist_texts=st,
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
        "runs": specs,
        "shortlisters": names,
        "train_images": args.train_images,
        "epochs": args.epochs,
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
