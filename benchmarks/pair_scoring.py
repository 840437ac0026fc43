"""Pair-scoring throughput against this machine's own float32 matmul rate, the speed-up over the
straightforward computation, and how time and peak memory grow with the number of pairs.

    python benchmarks/pair_scoring.py            # writes benchmarks/results/pair_scoring.json + docs/img PNG
    python benchmarks/report.py                  # turns the results into docs/performance.md

Every ratio is measured within one repeat (matmul rate, engine, straightforward back to back) and the
median over repeats is reported: the machine is shared, absolute CPU times are not meaningful.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    SHAPES_REGIONS,
    SHAPES_WORDS,
    flops_per_pair,
    machine,
    matmul_rate,
    median,
    random_fragments,
    settings_for,
    straightforward_flops_per_pair,
    timed,
)

import mmzoo
from mmzoo.scoring import fused_matrix

ROOT = Path(__file__).resolve().parents[1]


def build(dim: int, chunk_pairs: int = 4096) -> mmzoo.MatchingModel:
    torch.manual_seed(0)
    return mmzoo.create_model("mmca", **settings_for(dim), **{"fusion.block_pairs": chunk_pairs}).eval()


def throughput(dims: list[int], repeats: int, pairs_at_64: int) -> list[dict]:
    rows = []
    k, length = SHAPES_REGIONS, SHAPES_WORDS
    for dim in dims:
        model = build(dim)
        fusion = model.fusion
        n_pairs = max(200, int(pairs_at_64 * 64 / dim))
        n_img = max(4, round((n_pairs / 5) ** 0.5))
        n_txt = max(5, n_pairs // n_img)
        images, texts = random_fragments(n_img, k, dim, seed=1), random_fragments(n_txt, length, dim, seed=2)
        flops = flops_per_pair(k, length, dim, 4 * dim, dim)
        fused_matrix(fusion, images[:2], texts[:5])  # warm-up
        tokens = fusion.pairs_per_block * (k + length)
        ffn_in, ffn_w = torch.randn(tokens, dim), torch.randn(dim, 4 * dim)
        per = []
        for _ in range(repeats):
            mm = matmul_rate()
            # the engine's biggest product at these sizes: one block's tokens through the FFN's first layer
            gemm = 2 * tokens * dim * 4 * dim / min(timed(lambda a=ffn_in, b=ffn_w: a @ b) for _ in range(3))
            t_engine = timed(lambda f=fusion, a=images, b=texts: fused_matrix(f, a, b))
            with torch.no_grad():
                t_straight = timed(lambda f=fusion, a=images, b=texts: f(a, b))
            per.append((mm, n_img * n_txt / t_engine, n_img * n_txt / t_straight, gemm))
        mm = [p[0] for p in per]
        rows.append(
            {
                "embed_dim": dim,
                "heads": 4,
                "ffn_dim": 4 * dim,
                "cnn_channels": dim,
                "regions": k,
                "words": length,
                "pairs": n_img * n_txt,
                "flops_per_pair": flops,
                "straightforward_flops_per_pair": straightforward_flops_per_pair(k, length, dim, 4 * dim, dim),
                "matmul_gflops": median(mm) / 1e9,
                "ffn_gemm_gflops": median([p[3] for p in per]) / 1e9,
                "ffn_gemm_ratio_to_matmul": median([p[3] / p[0] for p in per]),
                "engine_pairs_per_s": median([p[1] for p in per]),
                "engine_gflops": median([p[1] * flops for p in per]) / 1e9,
                "ratio_to_matmul": median([p[1] * flops / p[0] for p in per]),
                "straightforward_pairs_per_s": median([p[2] for p in per]),
                "speedup": median([p[1] / p[2] for p in per]),
                "repeats": repeats,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


CHILD = r"""
import json, sys, time, torch
sys.path.insert(0, sys.argv[1])
from _common import random_fragments, settings_for
import mmzoo
from mmzoo.scoring import fused_matrix
n_img, n_txt, dim, chunk = map(int, sys.argv[2:6])
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
torch.manual_seed(0)
model = mmzoo.create_model("mmca", **settings_for(dim), **{"fusion.block_pairs": chunk}).eval()
images, texts = random_fragments(n_img, 12, dim, seed=1), random_fragments(n_txt, 10, dim, seed=2)
fused_matrix(model.fusion, images[:2], texts[:2])
base = hwm()
start = time.perf_counter()
out = fused_matrix(model.fusion, images, texts, block_size=256)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_delta_bytes": hwm() - base, "output_bytes": out.numel() * 4}))
"""


def activation_bound(dim: int, chunk: int, k: int = SHAPES_REGIONS, length: int = SHAPES_WORDS, heads: int = 4) -> int:
    """Bytes (float32) of the largest tensors one block of ``chunk`` pairs holds at once (analytic).

    Cross logits and weights (2 directions), attention outputs, token activations (out-proj, LN, residual:
    ~4 d per token) and the FFN hidden state with its GELU (2 x 4 d per token), the CNN taps (6 d per word).
    """
    tokens = chunk * (k + length)
    floats = 2 * chunk * k * length * heads + tokens * (4 * dim + 2 * 4 * dim) + chunk * length * 6 * dim
    return 4 * floats


def scaling(sizes: list[tuple[int, int]], dim: int, chunk: int, mmap: bool = False) -> list[dict]:
    """Time and resident-memory growth per size, each in a fresh process.

    ``mmap=True`` sets ``MALLOC_MMAP_THRESHOLD_=65536`` so glibc returns freed large buffers to the system: the
    high-water mark then shows live memory, not what the allocator kept from earlier blocks of other shapes.
    """
    rows = []
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"} if mmap else None
    for n_img, n_txt in sizes:
        cmd = [sys.executable, "-c", CHILD, str(Path(__file__).parent), str(n_img), str(n_txt), str(dim), str(chunk)]
        run = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        result = json.loads(run.stdout.splitlines()[-1])
        rows.append({"images": n_img, "texts": n_txt, "pairs": n_img * n_txt, **result})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def plot(rows: list[dict], bound: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [r["pairs"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.loglog(pairs, [r["seconds"] for r in rows], "o-")
    a.set_xlabel("pairs scored")
    a.set_ylabel("seconds (shared 2-core CPU)")
    a.set_title("time versus pairs")
    b.semilogx(pairs, [r["peak_delta_bytes"] / 2**20 for r in rows], "o-", label="measured peak (VmHWM delta)")
    b.semilogx(pairs, [(bound + r["output_bytes"]) / 2**20 for r in rows], "--", label="one block + output matrix")
    b.set_xlabel("pairs scored")
    b.set_ylabel("MiB")
    b.set_title("peak memory stays one block")
    b.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pair_scoring.json"))
    parser.add_argument("--plot", default=str(ROOT / "docs" / "img" / "scoring_scaling.png"))
    parser.add_argument("--dims", default="64,128,256", help="embedding sizes to measure (64 = shapes settings)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=6000, help="pairs per throughput measurement at d=64")
    parser.add_argument("--chunk-pairs", type=int, default=4096, help="fusion.block_pairs: pairs per engine block")
    parser.add_argument(
        "--mmap-check",
        action="store_true",
        help="only rerun 40x200 and 160x800 with glibc returning freed buffers (writes pair_scoring_mmap.json)",
    )
    args = parser.parse_args()
    if args.mmap_check:
        rows = scaling([(40, 200), (160, 800)], 64, args.chunk_pairs, mmap=True)
        path = Path(args.out).with_name("pair_scoring_mmap.json")
        path.write_text(json.dumps({"machine": machine(), "scaling": rows}, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path}")
        return
    info = machine()
    print(json.dumps(info), flush=True)
    rows = throughput([int(d) for d in args.dims.split(",")], args.repeats, args.pairs)
    sizes = [(10, 50), (20, 100), (40, 200), (80, 400), (160, 800)]
    scale = scaling(sizes, 64, args.chunk_pairs)
    bound = activation_bound(64, args.chunk_pairs)
    plot(scale, bound, Path(args.plot))
    result = {
        "machine": info,
        "throughput": rows,
        "scaling": scale,
        "chunk_pairs": args.chunk_pairs,
        "block_activation_bound_bytes": bound,
        "output_bytes_5000x25000": 5000 * 25000 * 4,
        "plot": str(Path(args.plot).relative_to(ROOT)) if Path(args.plot).is_relative_to(ROOT) else args.plot,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
