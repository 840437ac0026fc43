"""Pair scoring at the paper's sizes on a GPU, in bfloat16: throughput against the GPU's own matmul rates,
speed-up over the straightforward computation, peak memory per block, and an equality check.

    python benchmarks/gpu_scoring.py results/gpu_scoring.json          # on a CUDA machine (< 3 minutes on an H100)
    python benchmarks/gpu_scoring.py /tmp/x.json --device cpu --small  # a smoke run of the same code on a CPU

Sizes (MMCA / SAEM): 36 regions, 32 tokens, d = 1024, 16 heads, FFN 2048, text CNN windows 1/2/3 with 512
channels. Without CUDA (and without ``--device cpu``) it prints why and exits 0 after writing
``{"skipped": true}``. The JSON is read by ``benchmarks/report.py`` into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import flops_per_pair, machine, median, random_fragments, straightforward_flops_per_pair, timed

import mmzoo
from mmzoo.scoring import fused_matrix, scoring_mode

PAPER = {"regions": 36, "words": 32, "dim": 1024, "heads": 16, "ffn": 2048, "channels": 512}
SMALL = {"regions": 12, "words": 10, "dim": 64, "heads": 4, "ffn": 256, "channels": 64}


def matmul_tflops(device: str, dtype: torch.dtype, size: int) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = min(timed(lambda: a @ b, device) for _ in range(5))
    return 2 * size**3 / best / 1e12


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="JSON file to write")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny sizes (a smoke run of the code path)")
    parser.add_argument("--chunk-pairs", type=int, default=4096, help="pairs per block (fusion.pairs_per_block)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_scoring: no CUDA device here; skipped (run it on a GPU machine).")
        out.write_text(json.dumps({"skipped": True, "reason": "no CUDA device"}) + "\n", encoding="utf-8")
        return 0
    started = time.perf_counter()
    s = SMALL if args.small else PAPER
    k, length, d = s["regions"], s["words"], s["dim"]
    torch.backends.cuda.matmul.allow_tf32 = False  # the float32 reference is true float32
    torch.manual_seed(0)
    model = mmzoo.create_model(
        "mmca",
        **{
            "text.name": "gru",
            "embed_dim": d,
            "fusion.heads": s["heads"],
            "fusion.ffn_dim": s["ffn"],
            "fusion.channels": s["channels"],
            "fusion.pairs_per_block": args.chunk_pairs,
            "visual.heads": s["heads"],
        },
    )
    fusion = model.fusion.to(device).eval()
    size = 1024 if args.small else 8192
    bf16_tflops = matmul_tflops(device, torch.bfloat16, size)
    fp32_tflops = matmul_tflops(device, torch.float32, size)
    flops = flops_per_pair(k, length, d, s["ffn"], s["channels"])

    # equality: engine vs straightforward on one small block, in float32 and in bfloat16
    img, txt = random_fragments(8, k, d, device, seed=1), random_fragments(16, length, d, device, seed=2)
    with torch.no_grad():
        reference = fusion.reference_forward(img, txt).float()
    fp32_diff = float((fused_matrix(fusion, img, txt, precision="fp32") - reference).abs().max())
    bf16_diff = float((fused_matrix(fusion, img, txt, precision="bf16") - reference).abs().max())

    n_img, n_txt = (16, 160) if args.small else (128, 1280)
    images, texts = random_fragments(n_img, k, d, device, seed=3), random_fragments(n_txt, length, d, device, seed=4)
    fused_matrix(fusion, images[:8], texts[:64])  # warm-up
    engine = [n_img * n_txt / timed(lambda: fused_matrix(fusion, images, texts), device) for _ in range(args.repeats)]
    n_straight = max(2, n_img // 8)
    with scoring_mode(device, "bf16" if device == "cuda" else "fp32"):
        fusion.reference_forward(images[:2], texts[:64])
        straight = [
            n_straight * n_txt / timed(lambda: fusion.reference_forward(images[:n_straight], texts), device)
            for _ in range(args.repeats)
        ]
    pairs_per_s, straight_per_s = median(engine), median(straight)

    memory = []
    for a, b in [(8, 80), (16, 160), (32, 320), (64, 640)] if not args.small else [(4, 40), (8, 80), (16, 160)]:
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        result = fused_matrix(fusion, images[:a], texts[:b])
        peak = torch.cuda.max_memory_allocated() - base if device == "cuda" else None
        memory.append({"pairs": a * b, "peak_bytes": peak, "output_bytes": result.numel() * 4})

    result = {
        "skipped": False,
        "machine": machine(),
        "sizes": s,
        "chunk_pairs": args.chunk_pairs,
        "precision": "bf16 autocast" if device == "cuda" else "fp32",
        "flops_per_pair": flops,
        "straightforward_flops_per_pair": straightforward_flops_per_pair(k, length, d, s["ffn"], s["channels"]),
        "matmul_bf16_tflops": bf16_tflops,
        "matmul_fp32_tflops": fp32_tflops,
        "engine_pairs_per_s": pairs_per_s,
        "engine_tflops": pairs_per_s * flops / 1e12,
        "ratio_to_bf16_matmul": pairs_per_s * flops / 1e12 / bf16_tflops,
        "ratio_to_fp32_matmul": pairs_per_s * flops / 1e12 / fp32_tflops,
        "straightforward_pairs_per_s": straight_per_s,
        "speedup": pairs_per_s / straight_per_s,
        "max_abs_diff_fp32": fp32_diff,
        "max_abs_diff_bf16": bf16_diff,
        "projected_seconds_5000x25000": 5000 * 25000 / pairs_per_s,
        "memory": memory,
        "wall_seconds": time.perf_counter() - started,
    }
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    rows = [
        ("pairs/s (engine, bf16)", f"{pairs_per_s:,.0f}"),
        ("necessary TFLOP/s (engine)", f"{result['engine_tflops']:.1f}"),
        ("bf16 / fp32 matmul TFLOP/s", f"{bf16_tflops:.1f} / {fp32_tflops:.1f}"),
        ("engine / bf16 matmul", f"{result['ratio_to_bf16_matmul']:.2f}"),
        ("pairs/s (straightforward, bf16)", f"{straight_per_s:,.0f}"),
        ("speed-up", f"{result['speedup']:.2f}x"),
        ("max |engine - straightforward| fp32 / bf16", f"{fp32_diff:.1e} / {bf16_diff:.1e}"),
        ("5,000 x 25,000 projected", f"{result['projected_seconds_5000x25000']:.0f} s"),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    for m in memory:
        peak = "n/a" if m["peak_bytes"] is None else f"{m['peak_bytes'] / 2**20:.0f} MiB"
        print(f"| peak memory at {m['pairs']:,} pairs | {peak} |")
    print(f"wrote {out} in {result['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
