"""The MMCA engine at the paper's sizes on one GPU: which way of computing is fastest, its share of the bf16
matmul rate, the 5,000 x 25,000 projection, and bf16-versus-float32 agreement. One prepared run.

    python benchmarks/gpu_engine.py --out benchmarks/results/gpu_engine.json            # CUDA: ~5-8 minutes
    python benchmarks/gpu_engine.py --device cpu --small --out /tmp/gpu_engine.json     # proves the code on a CPU

Sizes (MMCA / SAEM): 36 regions, 32 tokens (no padding), d = 1024, 16 heads, FFN 2048, CNN windows 1/2/3 with
512 channels, bf16 autocast. Variants, each timed as the best of ``--repeats`` runs of ``fused_matrix`` over
``--images`` x ``--captions`` pairs after one warm-up run (which includes any compilation):

* ``merge``: cached intra block merged by log-sum-exp, eager (the engine as it was);
* ``sdpa``: ``scaled_dot_product_attention`` over the concatenated keys, eager;
* ``sdpa+compile`` / ``merge+compile``: each tile through ``torch.compile`` with static shapes;
* ``sdpa+compile+graphs``: ``mode="reduce-overhead"`` (CUDA graphs);
* then the fastest variant at ``--blocks`` pairs per block (the block size is chosen by this measurement).

The JSON is rewritten after every step, so a run cut short by a time limit still reports what it measured;
``--budget-s`` skips the remaining variants once that much wall time has passed. The engine's FLOPs per pair
are the formula of ``benchmarks/_common.py`` (927 M at these sizes; matrix products only). Without CUDA and
without ``--device cpu`` it writes ``{"skipped": true}`` and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import flops_per_pair, machine, random_fragments, timed

import mmzoo
from mmzoo.scoring import fused_matrix

PAPER = {"regions": 36, "words": 32, "dim": 1024, "heads": 16, "ffn": 2048, "channels": 512}
SMALL = {"regions": 12, "words": 10, "dim": 64, "heads": 4, "ffn": 256, "channels": 64}
#: in the order they are tried (the most informative first, in case the time budget runs out)
VARIANTS = {
    "merge": {"attention": "merge"},
    "sdpa": {"attention": "sdpa"},
    "sdpa+compile": {"attention": "sdpa", "compile": True},
    "sdpa+compile+graphs": {"attention": "sdpa", "compile": True, "compile_mode": "reduce-overhead"},
    "merge+compile": {"attention": "merge", "compile": True},
}


def build(s: dict[str, int], block_pairs: int, device: str) -> mmzoo.plugin.FusionBlock:
    torch.manual_seed(0)
    settings = {
        "text.name": "gru",
        "embed_dim": s["dim"],
        "visual.heads": s["heads"],
        "fusion.heads": s["heads"],
        "fusion.ffn_dim": s["ffn"],
        "fusion.channels": s["channels"],
        "fusion.pairs_per_block": block_pairs,
    }
    return mmzoo.create_model("mmca", **settings).fusion.to(device).eval()


def matmul_tflops(device: str, dtype: torch.dtype, size: int) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    return 2 * size**3 / min(timed(lambda: a @ b, device) for _ in range(5)) / 1e12


class Run:
    """The results so far, written to ``out`` after every step."""

    def __init__(self, out: Path, budget: float) -> None:
        self.out, self.budget, self.started = out, budget, time.perf_counter()
        self.result: dict[str, Any] = {"skipped": False, "complete": False, "variants": {}, "blocks": {}}

    def save(self) -> None:
        self.result["wall_seconds"] = time.perf_counter() - self.started
        self.out.write_text(json.dumps(self.result, indent=1) + "\n", encoding="utf-8")

    def over_budget(self) -> bool:
        return time.perf_counter() - self.started > self.budget


def measure(
    fusion: mmzoo.plugin.FusionBlock, options: dict, images, texts, device: str, repeats: int, precision: str
) -> dict:
    fusion.configure_engine(**{"attention": "merge", "compile": False, "compile_mode": None, **options})
    start = time.perf_counter()
    fused_matrix(fusion, images, texts, precision=precision)  # warm-up, compiles when asked to
    first = time.perf_counter() - start
    best = min(timed(lambda: fused_matrix(fusion, images, texts, precision=precision), device) for _ in range(repeats))
    return {
        "pairs": len(images) * len(texts),
        "seconds": best,
        "pairs_per_s": len(images) * len(texts) / best,
        "first_call_s": first,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/gpu_engine.json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny sizes (a check of the code path, e.g. on a CPU)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--captions", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-pairs", type=int, default=4096, help="pairs per block for the variant comparison")
    parser.add_argument("--blocks", default="2048,8192,16384", help="other block sizes tried with the best variant")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip what is left after this many seconds")
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_engine: no CUDA device here; skipped (run it on a GPU machine, or with --device cpu --small).")
        out.write_text(json.dumps({"skipped": True, "reason": "no CUDA device"}) + "\n", encoding="utf-8")
        return 0
    torch.set_num_threads(1) if device == "cpu" else None
    run = Run(out, args.budget_s)
    s = SMALL if args.small else PAPER
    k, length, d = s["regions"], s["words"], s["dim"]
    n_img, n_txt = (8, 40) if args.small else (args.images, args.captions)
    precision = "bf16" if device == "cuda" else "fp32"
    flops = flops_per_pair(k, length, d, s["ffn"], s["channels"])
    torch.backends.cuda.matmul.allow_tf32 = False  # the float32 reference is true float32
    size = 1024 if args.small else 8192
    run.result.update(
        {
            "machine": machine(),
            "sizes": s,
            "precision": precision,
            "flops_per_pair": flops,
            "matmul_bf16_tflops": matmul_tflops(device, torch.bfloat16, size) if device == "cuda" else None,
            "matmul_fp32_tflops": matmul_tflops(device, torch.float32, size),
        }
    )
    reference_rate = run.result["matmul_bf16_tflops"] or run.result["matmul_fp32_tflops"]
    run.save()

    # agreement with the float32 straightforward joint unit, checked with each variant's own (compiled) fusion:
    # compiled tiles have one static shape, so the small check reuses the graph the timing compiled
    probe = build(s, args.block_pairs, device)
    img, txt = random_fragments(4, k, d, device, seed=1), random_fragments(12, length, d, device, seed=2)
    with torch.no_grad():
        exact = probe.reference_forward(img, txt).float()
    images = random_fragments(n_img, k, d, device, seed=3)
    texts = random_fragments(n_txt, length, d, device, seed=4)
    for name in args.variants.split(","):
        if run.over_budget():
            run.result["variants"][name] = {"skipped": "time budget"}
            continue
        if "graphs" in name and device != "cuda":
            run.result["variants"][name] = {"skipped": "CUDA graphs need CUDA"}
            continue
        fusion = build(s, args.block_pairs, device)
        row = measure(fusion, VARIANTS[name], images, texts, device, args.repeats, precision)
        row["ratio_to_matmul"] = row["pairs_per_s"] * flops / 1e12 / reference_rate
        checks = [precision] if VARIANTS[name].get("compile") else sorted({precision, "fp32"})
        row["max_abs_diff_to_fp32_straightforward"] = {
            p: float((fused_matrix(fusion, img, txt, precision=p) - exact).abs().max()) for p in checks
        }
        run.result["variants"][name] = row
        run.save()
        print(
            f"{name}: {row['pairs_per_s']:,.0f} pairs/s, {100 * row['ratio_to_matmul']:.0f}% of the matmul rate, "
            f"first call {row['first_call_s']:.1f} s, max |diff| {row['max_abs_diff_to_fp32_straightforward']}",
            flush=True,
        )
    measured = {n: r for n, r in run.result["variants"].items() if "pairs_per_s" in r}
    best_name = max(measured, key=lambda n: measured[n]["pairs_per_s"])
    best = {"variant": best_name, "block_pairs": args.block_pairs, **measured[best_name]}
    for blocks in (int(b) for b in args.blocks.split(",") if b):
        if run.over_budget():
            run.result["blocks"][str(blocks)] = {"skipped": "time budget"}
            continue
        row = measure(build(s, blocks, device), VARIANTS[best_name], images, texts, device, args.repeats, precision)
        run.result["blocks"][str(blocks)] = row
        run.save()
        print(f"{best_name} at {blocks} pairs per block: {row['pairs_per_s']:,.0f} pairs/s", flush=True)
        if row["pairs_per_s"] > best["pairs_per_s"]:
            best = {"variant": best_name, "block_pairs": blocks, **row}
    baseline = measured.get("merge")
    run.result.update(
        {
            "best": best,
            "engine_tflops": best["pairs_per_s"] * flops / 1e12,
            "ratio_to_bf16_matmul": best["pairs_per_s"] * flops / 1e12 / reference_rate,
            "speedup_over_merge_eager": best["pairs_per_s"] / baseline["pairs_per_s"] if baseline else None,
            "projected_seconds_5000x25000": 5000 * 25000 / best["pairs_per_s"],
            "complete": True,
        }
    )
    run.save()
    r = run.result
    print(
        f"best: {best_name}, {best['block_pairs']} pairs per block: {best['pairs_per_s']:,.0f} pairs/s, "
        f"{100 * r['ratio_to_bf16_matmul']:.0f}% of the {'bf16' if device == 'cuda' else 'fp32'} matmul rate "
        f"({reference_rate:.1f} TFLOP/s); 5,000 x 25,000 in {r['projected_seconds_5000x25000']:.0f} s (projected)"
    )
    print(f"wrote {out} in {r['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
