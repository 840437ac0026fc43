"""Peak memory of scoring and ranking a COCO-5K-sized score matrix (5,000 images x 25,000 captions).

Encodes nothing: it builds random image/caption Fragments of the sizes a real model produces and runs
``mmzoo.evaluation.score_matrix`` and ``recall_metrics`` on them, sampling the process's anonymous memory
(``RssAnon``) every 5 ms. The claim under test: beyond the float32 result (N_images x N_captions x 4 bytes),
scoring and ranking need the memory of one block, not of the whole pair set.

The fused model (MMCA's joint transformer per pair) is far too slow on a CPU for 125M pairs, so it runs at
N and 2N images with a fixed block: the overhead should not grow with N.

Run:  python benchmarks/eval_scoring_memory.py [--images 5000] [--dim 256] [--fused-images 10]
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import torch

import mmzoo
from mmzoo.contracts import Fragments
from mmzoo.evaluation import recall_metrics, score_matrix


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("needs Linux /proc/self/status")


class PeakSampler:
    def __init__(self) -> None:
        self.peak = rss_anon_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon_mb())
            time.sleep(0.005)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon_mb())


def fragments(n: int, length: int, dim: int, seed: int) -> Fragments:
    g = torch.Generator().manual_seed(seed)
    pooled = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)
    return Fragments(torch.randn(n, length, dim, generator=g), torch.ones(n, length, dtype=torch.bool), pooled)


def measure(model: torch.nn.Module, n_images: int, dim: int, regions: int, tokens: int, block: int) -> dict:
    images = fragments(n_images, regions, dim, 0)
    texts = fragments(5 * n_images, tokens, dim, 1)
    base = rss_anon_mb()
    start = time.perf_counter()
    with PeakSampler() as sampler:
        sims = score_matrix(model, images, texts, block_size=block)
        metrics = recall_metrics(sims)
    seconds = time.perf_counter() - start
    result_mb = sims.numel() * 4 / 2**20
    return {
        "pairs": f"{n_images} x {5 * n_images}",
        "result_mb": result_mb,
        "peak_growth_mb": sampler.peak - base,
        "overhead_mb": sampler.peak - base - result_mb,
        "seconds": seconds,
        "rsum": metrics["rsum"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument(
        "--fused-images", type=int, default=10, help="the fused model (slow on a CPU) runs at N and 2N images"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    with torch.inference_mode():
        dot = mmzoo.create_model("vsepp", **{"embed_dim": args.dim, "visual.in_dim": 16}).eval()
        print("pooled model (vsepp):", measure(dot, args.images, args.dim, 36, 32, 1024))
        if args.fused_images == 0:
            return
        fused = mmzoo.create_model(
            "mmca",
            **{"embed_dim": 64, "visual.in_dim": 16, "text.name": "gru", "visual.heads": 4, "fusion.heads": 4},
        ).eval()
        for n in (args.fused_images, 2 * args.fused_images):
            print(f"fused model (mmca, d=64), block 8, {n} images:", measure(fused, n, 64, 36, 32, 8))


if __name__ == "__main__":
    main()
