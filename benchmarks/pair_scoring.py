"""Pair-scoring throughput against this machine's own float32 matmul rate, the speed-up over the
straightforward computation, and how time and peak memory grow with the number of pairs.

    python benchmarks/pair_scoring.py            # writes benchmarks/results/pair_scoring.json + docs/img PNG
    python benchmarks/pair_scoring.py --sweep    # also the tile-size sweep that chose engine.CPU_TILE_TOKENS
    python benchmarks/report.py                  # turns the results into docs/performance.md

The claim: the MMCA engine's share of the float32 matmul rate, ``F_pair x pairs/s`` over the rate of plain
(1024 x 1024) @ (1024 x 1024) products of the same total FLOPs, measured in the same process, one thread.
Each repeat runs the engine, the matmuls, the engine in whole 4,096-pair blocks (no tiles: what the engine
did before) and the straightforward ``reference_forward`` back to back. Times are this process's CPU time
(``time.process_time``): on a shared machine it leaves out the time other jobs hold the core, which wall
time does not (wall-clock ratios are recorded beside them); the best repeat of each is used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    SHAPES_REGIONS,
    SHAPES_WORDS,
    flops_per_pair,
    machine,
    median,
    random_fragments,
    settings_for,
    straightforward_flops_per_pair,
)

import mmzoo
from mmzoo.scoring import fused_matrix

ROOT = Path(__file__).resolve().parents[1]
#: the reference product: (MM x MM) @ (MM x MM) float32, repeated to the engine run's FLOPs
MM = 1024


def build(dim: int, chunk_pairs: int = 4096) -> mmzoo.MatchingModel:
    torch.manual_seed(0)
    return mmzoo.create_model("mmca", **settings_for(dim), **{"fusion.pairs_per_block": chunk_pairs}).eval()


def clocked(fn: Callable[[], object]) -> tuple[float, float]:
    """(process CPU seconds, wall seconds) of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def interleaved(runs: dict, repeats: int) -> dict[object, list[tuple[float, float]]]:
    """(CPU, wall) seconds of each run, the runs taking turns ``repeats`` times (load hits them alike)."""
    times: dict[object, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(clocked(fn))
    return times


def matmuls(total_flops: float) -> tuple[Callable[[], None], float]:
    """A run of plain float32 products with (about) ``total_flops`` FLOPs, and its exact FLOP count."""
    a, b = torch.randn(MM, MM), torch.randn(MM, MM)
    reps = max(1, round(total_flops / (2 * MM**3)))

    def run() -> None:
        for _ in range(reps):
            torch.mm(a, b)

    return run, reps * 2 * MM**3


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
        pairs = n_img * n_txt
        mm_run, mm_flops = matmuls(flops * pairs)
        untiled = build(dim)
        untiled.fusion.configure_engine(tile_tokens=10**9)
        runs = {
            "engine": lambda f=fusion, a=images, b=texts: fused_matrix(f, a, b),
            "matmul": mm_run,
            "untiled": lambda f=untiled.fusion, a=images, b=texts: fused_matrix(f, a, b),
            "straightforward": lambda f=fusion, a=images, b=texts: f.reference_forward(a, b),
        }
        tokens = fusion.pairs_per_block * (k + length)
        ffn_in, ffn_w = torch.randn(min(tokens, 3072), dim), torch.randn(dim, 4 * dim)
        runs["ffn_gemm"] = lambda a=ffn_in, w=ffn_w: [a @ w for _ in range(20)]
        with torch.inference_mode():
            for fn in runs.values():
                fn()  # warm-up
            times = interleaved(runs, repeats)
        best = {name: min(t[0] for t in ts) for name, ts in times.items()}
        mm_rate = mm_flops / best["matmul"]
        wall_ratio = median(
            [flops * pairs / e[1] / (mm_flops / m[1]) for e, m in zip(times["engine"], times["matmul"], strict=True)]
        )
        ffn_flops = 20 * 2 * ffn_in.shape[0] * dim * 4 * dim
        rows.append(
            {
                "embed_dim": dim,
                "heads": 4,
                "ffn_dim": 4 * dim,
                "cnn_channels": dim,
                "regions": k,
                "words": length,
                "pairs": pairs,
                "flops_per_pair": flops,
                "straightforward_flops_per_pair": straightforward_flops_per_pair(k, length, dim, 4 * dim, dim),
                "matmul_gflops": mm_rate / 1e9,
                "engine_pairs_per_s": pairs / best["engine"],
                "engine_gflops": flops * pairs / best["engine"] / 1e9,
                "ratio_to_matmul": flops * pairs / best["engine"] / mm_rate,
                "ratio_to_matmul_wall_median": wall_ratio,
                "untiled_ratio_to_matmul": flops * pairs / best["untiled"] / mm_rate,
                "tile_speedup": best["untiled"] / best["engine"],
                "ffn_gemm_ratio_to_matmul": ffn_flops / best["ffn_gemm"] / mm_rate,
                "straightforward_pairs_per_s": pairs / best["straightforward"],
                "speedup": best["straightforward"] / best["engine"],
                "tile_tokens": mmzoo_tile_tokens(fusion),
                "repeats": repeats,
                "clock": "process_time",
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def mmzoo_tile_tokens(fusion: mmzoo.plugin.FusionBlock) -> int | None:
    return fusion.engine_options.resolved_tile_tokens(torch.device("cpu"))


def sweep(dims: list[int], tiles: list[int], repeats: int) -> list[dict]:
    """Engine / matmul ratio per tile size (tokens per tile), the measurement behind engine.CPU_TILE_TOKENS."""
    rows = []
    for dim in dims:
        model = build(dim)
        n_img, n_txt = {64: (40, 150), 128: (28, 110)}.get(dim, (20, 75))
        images, texts = random_fragments(n_img, 12, dim, seed=1), random_fragments(n_txt, 10, dim, seed=2)
        flops = flops_per_pair(12, 10, dim, 4 * dim, dim) * n_img * n_txt
        mm_run, mm_flops = matmuls(flops)
        runs = {"matmul": mm_run}
        for tile in tiles:
            runs[tile] = lambda t=tile, m=model, a=images, b=texts: fused_matrix(
                m.fusion.configure_engine(tile_tokens=t), a, b
            )
        with torch.inference_mode():
            for fn in runs.values():
                fn()
            best = {name: min(t[0] for t in ts) for name, ts in interleaved(runs, repeats).items()}
        mm_rate = mm_flops / best["matmul"]
        row = {"embed_dim": dim, "ratio_by_tile_tokens": {str(t): flops / best[t] / mm_rate for t in tiles}}
        rows.append(row)
        print(json.dumps(row), flush=True)
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
model = mmzoo.create_model("mmca", **settings_for(dim), **{"fusion.pairs_per_block": chunk}).eval()
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
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=6000, help="pairs per throughput measurement at d=64")
    parser.add_argument("--chunk-pairs", type=int, default=4096, help="fusion.pairs_per_block: pairs per engine block")
    parser.add_argument(
        "--mmap-check",
        action="store_true",
        help="only rerun 40x200 and 160x800 with glibc returning freed buffers (writes pair_scoring_mmap.json)",
    )
    parser.add_argument("--sweep", action="store_true", help="also sweep the tile size (tokens per tile)")
    parser.add_argument("--no-scaling", action="store_true", help="skip the time/memory scaling runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.mmap_check:
        rows = scaling([(40, 200), (160, 800)], 64, args.chunk_pairs, mmap=True)
        path = Path(args.out).with_name("pair_scoring_mmap.json")
        path.write_text(json.dumps({"machine": machine(), "scaling": rows}, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path}")
        return
    info = machine()
    print(json.dumps(info), flush=True)
    dims = [int(d) for d in args.dims.split(",")]
    rows = throughput(dims, args.repeats, args.pairs)
    swept = sweep(dims, [768, 1536, 3072, 6144, 12288], max(2, args.repeats - 2)) if args.sweep else None
    previous = json.loads(Path(args.out).read_text(encoding="utf-8")) if Path(args.out).is_file() else {}
    if args.no_scaling and "scaling" in previous:
        scale = previous["scaling"]
    else:
        scale = scaling([(10, 50), (20, 100), (40, 200), (80, 400), (160, 800)], 64, args.chunk_pairs)
    bound = activation_bound(64, args.chunk_pairs)
    plot(scale, bound, Path(args.plot))
    result = {
        "machine": info,
        "load_average_end": os.getloadavg()[0],
        "throughput": rows,
        "tile_sweep": swept if swept is not None else previous.get("tile_sweep"),
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
