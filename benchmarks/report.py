"""Write docs/performance.md from the JSON the scoring benchmarks wrote.

python benchmarks/pair_scoring.py && python benchmarks/rerank.py && python benchmarks/report.py
python benchmarks/report.py --gpu results/gpu_scoring.json   # add a GPU run of benchmarks/gpu_scoring.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def machine_line(info: dict) -> str:
    load_avg = info.get("load_average")
    extra = f", load average {load_avg:.1f} at the start (shared machine)" if load_avg is not None else ""
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ""
    return (
        f"{info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['torch_threads']} threads), "
        f"Python {info['python']}{gpu}{extra}"
    )


def met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def pair_section(ps: dict) -> list[str]:
    rows, shapes = ps["throughput"], ps["throughput"][0]
    out = [
        "## 1. Pair-scoring throughput against this machine's float32 matmul rate",
        "",
        f"Machine: {machine_line(ps['machine'])}. Script: `python benchmarks/pair_scoring.py`.",
        "",
        "The necessary FLOPs of one pair in the engine (first unit; multiply-add = 2 FLOPs; element-wise work not",
        "counted), with k regions, L words, embedding d, FFN f, CNN channels C and windows w (1, 2, 3):",
        "",
        "    F_pair = 8 k L d              cross-modal logits and value sums, both directions",
        "           + 2 (k + L) d^2        attention output projection",
        "           + 4 (k + L) d f        feed-forward",
        "           + 2 L d C sum(w) + 2 C n_w d   text 1D-CNN taps and its output layer",
        "           + 2 d                  the final dot product",
        "",
        "The straightforward computation adds the Q, K, V projections of every token of every pair (6 (k + L) d^2)",
        "and attention over all k + L tokens instead of the cross blocks. Each repeat measures the float32",
        "2048 x 2048 matmul rate, the engine and the straightforward `pair_scores` back to back; the table shows",
        f"medians over {shapes['repeats']} repeats of the ratios (absolute CPU numbers are not meaningful on a",
        f"shared machine). k = {shapes['regions']} regions and L = {shapes['words']} words as in shapes data,",
        f"4 heads, f = 4 d, C = d, engine blocks of {ps['chunk_pairs']} pairs. d = 64 is the shapes setting.",
        "",
        "| d | FLOPs/pair (engine / straightforward) | engine / matmul rate | FFN-shaped GEMM / matmul rate"
        " | speed-up over straightforward |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['embed_dim']} | {r['flops_per_pair'] / 1e6:.1f} M / {r['straightforward_flops_per_pair'] / 1e6:.1f} M"
            f" | **{100 * r['ratio_to_matmul']:.0f}%** | {100 * r['ffn_gemm_ratio_to_matmul']:.0f}%"
            f" | {r['speedup']:.2f}x |"
        )
    out += [
        "",
        "\"FFN-shaped GEMM\" is one block's tokens times the FFN's first weight, `(block x (k+L), d) @ (d, 4d)`, timed",
        "in the same repeat: it is the ceiling for the engine's largest product at that d on this machine.",
        "",
    ]
    return out


def scaling_section(ps: dict, mmap: dict | None) -> list[str]:
    bound = ps["block_activation_bound_bytes"]
    out = [
        "## 3. How time and memory grow with the number of pairs",
        "",
        f"![time and peak memory versus pairs]({Path(ps['plot']).relative_to('docs')})",
        "",
        "Each size runs in a fresh subprocess; peak memory is the growth of the process's resident high-water mark",
        "(`VmHWM` in /proc/self/status) during scoring, shapes settings (d = 64), engine blocks of",
        f"{ps['chunk_pairs']} pairs.",
        "",
        "| images x captions | pairs | seconds | peak growth |",
        "|---|---|---|---|",
    ]
    for r in ps["scaling"]:
        out.append(
            f"| {r['images']} x {r['texts']} | {r['pairs']:,} | {r['seconds']:.1f} | "
            f"{r['peak_delta_bytes'] / 2**20:.0f} MiB |"
        )
    out += [
        "",
        f"Analytic bound of one block's pair activations at these settings: {bound / 2**20:.0f} MiB (float32 logits of",
        "both cross blocks, attention outputs, token activations, FFN hidden state and its GELU, CNN taps). The measured",
        "peak stays below it at every size. It still creeps up slowly after the first block is full: glibc keeps freed",
        "buffers of earlier blocks (which have other shapes, since caption lengths differ between blocks) and reuses",
        "them imperfectly.",
    ]
    if mmap:
        a, b = mmap["scaling"][0], mmap["scaling"][-1]
        out += [
            f"With `MALLOC_MMAP_THRESHOLD_=65536` (freed large buffers go back to the system;"
            " `python benchmarks/pair_scoring.py --mmap-check`) the growth is"
            f" {a['peak_delta_bytes'] / 2**20:.0f} MiB at {a['pairs']:,} pairs and"
            f" {b['peak_delta_bytes'] / 2**20:.0f} MiB at {b['pairs']:,} pairs: {b['pairs'] // a['pairs']}x the pairs,"
            f" {(b['peak_delta_bytes'] - a['peak_delta_bytes']) / 2**20:.0f} MiB more, of which"
            f" {(b['output_bytes'] - a['output_bytes']) / 2**20:.1f} MiB is the larger result matrix.",
        ]
    out += [
        "Time grows linearly with the pairs (noisy: shared machine); memory stays one block.",
        "Scoring 5,000 x 25,000 pairs holds one such block, the caches of one outer block (256 images, 256",
        f"captions) and the float32 result, {ps['output_bytes_5000x25000'] / 2**20:.0f} MiB, which any full score matrix",
        "needs. We did not run 5,000 x 25,000 on this CPU (125 M pairs at the rates above is about a day); the",
        "bound follows from the code (the engine loops over blocks and keeps nothing of a finished block but its",
        "scores) and the measured series above.",
        "",
    ]
    return out


def rerank_section(rr: dict, title: str) -> list[str]:
    rows = rr["rows"]
    ex = rows[0]
    out = [
        title,
        "",
        f"Machine: {machine_line(rr['machine'])}. Script: `python benchmarks/rerank.py"
        f"{' --device cuda' if rr['machine'].get('gpu') else ''} --train-images {rr['train_images']}"
        f" --test-images {rr['test_images'] // 2} --epochs {rr['epochs']} --batch {rr['batch']}`.",
        "",
        f"Shapes data; the `mmca` recipe at the shapes settings (GRU text encoder, d = 64) trained for {rr['epochs']}",
        f"epochs on {rr['train_images']} images (batch {rr['batch']}, Adam {rr.get('lr', 2e-4):g}, all negatives then hardest;",
        f"{rr['train_seconds']:.0f} s), evaluated on {rr['test_images']} test images x {rr['test_captions']} captions.",
        f"`<i0, c0>` alone gives rsum {rr['cheap_only_rsum']:.1f}. Times exclude encoding ({rr['encode_seconds']:.1f} s,",
        "the same for both); rerank times include the cheap product, the shortlists and the preparation of all caches.",
        "",
        "| mode | pairs fuse-scored | seconds | speed-up | rsum | delta rsum | shortlist recall i2t / t2i |",
        "|---|---|---|---|---|---|---|",
        f"| exhaustive | {ex['pairs_scored']:,} | {ex['seconds']:.1f} | 1.0x | {ex['rsum']:.1f} | | |",
    ]
    for r in rows[1:]:
        out.append(
            f"| rerank K={r['k']} | {r['pairs_scored']:,} | {r['seconds']:.1f} | {r['speedup']:.1f}x | {r['rsum']:.1f}"
            f" | {r['rsum_delta']:+.1f} | {r['i2t_shortlist']:.1f} / {r['t2i_shortlist']:.1f} |"
        )
    dense_rate = ex["pairs_scored"] / ex["seconds"]
    listed = [r["pairs_scored"] / r["seconds"] for r in rows[1:]]
    out += [
        "",
        f"Per fuse-scored pair, listed pairs (the rerank path) ran at {min(listed) / dense_rate:.2f}-"
        f"{max(listed) / dense_rate:.2f} of the dense-block rate ({dense_rate:,.0f} pairs/s here): each pair gathers its",
        "own cached Q/K/V and runs small batched products instead of one large product per head. The speed-up is",
        "therefore below the ratio of pairs. The shortlist recall explains the rsum: where the cheap <i0, c0> score",
        "misses the true match (small K, a weakly trained model, shapes twins whose captions share every word) no",
        "rerank can recover it; once the shortlist holds what the full score would rank first, rsum equals exhaustive.",
        "",
    ]
    return out


def gpu_section(gpu: dict | None) -> list[str]:
    out = ["## 4. GPU at the paper's sizes", ""]
    if gpu is None or gpu.get("skipped"):
        out += [
            "Not run here (no GPU on this machine). `python benchmarks/gpu_scoring.py OUT.json` measures, in bfloat16",
            "on a CUDA GPU, 36 regions x 32 tokens, d = 1024, 16 heads, FFN 2048, CNN 512 channels: engine pairs/s and",
            "TFLOP/s against the GPU's bf16 and fp32 matmul rates, the speed-up over the straightforward computation,",
            "peak memory per block, and the engine-versus-straightforward difference in fp32 and bf16; then",
            "`python benchmarks/report.py --gpu OUT.json` adds it here.",
            "",
        ]
        return out
    s = gpu["sizes"]
    out += [
        f"Machine: {machine_line(gpu['machine'])}. {s['regions']} regions x {s['words']} tokens, d = {s['dim']},"
        f" {s['heads']} heads, FFN {s['ffn']}, CNN {s['channels']} channels; {gpu['precision']}; blocks of"
        f" {gpu['chunk_pairs']} pairs.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| FLOPs per pair (engine / straightforward) | {gpu['flops_per_pair'] / 1e6:.0f} M /"
        f" {gpu['straightforward_flops_per_pair'] / 1e6:.0f} M |",
        f"| engine pairs/s | {gpu['engine_pairs_per_s']:,.0f} |",
        f"| engine necessary TFLOP/s | {gpu['engine_tflops']:.1f} |",
        f"| bf16 / fp32 matmul TFLOP/s (8192^3) | {gpu['matmul_bf16_tflops']:.1f} / {gpu['matmul_fp32_tflops']:.1f} |",
        f"| engine / bf16 matmul rate | {100 * gpu['ratio_to_bf16_matmul']:.0f}% |",
        f"| engine / fp32 matmul rate | {100 * gpu['ratio_to_fp32_matmul']:.0f}% |",
        f"| straightforward pairs/s (bf16) | {gpu['straightforward_pairs_per_s']:,.0f} |",
        f"| speed-up | {gpu['speedup']:.2f}x |",
        f"| max abs difference to straightforward, fp32 / bf16 | {gpu['max_abs_diff_fp32']:.1e} /"
        f" {gpu['max_abs_diff_bf16']:.1e} |",
        f"| 5,000 x 25,000 pairs (projected from pairs/s) | {gpu['projected_seconds_5000x25000']:.0f} s |",
    ]
    for m in gpu["memory"]:
        if m["peak_bytes"] is not None:
            out.append(f"| peak memory growth at {m['pairs']:,} pairs | {m['peak_bytes'] / 2**20:.0f} MiB |")
    out.append("")
    return out


def targets(ps: dict, rr: dict | None) -> list[str]:
    shapes = ps["throughput"][0]
    best = max(ps["throughput"], key=lambda r: r["ratio_to_matmul"])
    out = ["## Targets", ""]
    out.append(
        f"- Pair scoring at the shapes settings reaches >= 50% of the float32 matmul rate: {met(shapes['ratio_to_matmul'] >= 0.5)}"
        f" ({100 * shapes['ratio_to_matmul']:.0f}% at d = {shapes['embed_dim']};"
        f" {100 * best['ratio_to_matmul']:.0f}% at d = {best['embed_dim']}). At d = 64 even the engine's largest"
        f" matrix product alone reaches only {100 * shapes['ffn_gemm_ratio_to_matmul']:.0f}% of the 2048^3 rate"
        " (inner dimension 64: too little work per byte for this CPU), and the element-wise work (softmax, LayerNorm,"
        " GELU, residuals, layout copies), which the FLOP count leaves out, takes most of the time. The ratio"
        " rises with d as the products dominate."
    )
    if rr is not None:
        k50 = next((r for r in rr["rows"] if r.get("k") == 50), None)
        if k50 is not None:
            ok = k50["speedup"] >= 20 and abs(k50["rsum_delta"]) <= 1.0
            scale = rr["test_images"] == 1000
            out.append(
                f"- Rerank K = 50 >= 20x faster than exhaustive with rsum within 1.0: {met(ok and scale)}"
                f" ({k50['speedup']:.1f}x, rsum {k50['rsum_delta']:+.1f}, at {rr['test_images']} x {rr['test_captions']})."
                + (
                    ""
                    if scale
                    else " Not at the 1,000 x 5,000 scale: its exhaustive run alone (5 M pairs, about"
                    f" {5e6 / (rr['rows'][0]['pairs_scored'] / rr['rows'][0]['seconds']) / 60:.0f} minutes at the rate"
                    " measured here) plus training and the reranks did not fit this session on the shared 2-core CPU (a run"
                    " was started and stopped unfinished at the deadline);"
                    " `python benchmarks/rerank.py --test-images 500` runs it there."
                )
                + (
                    f" The rsum gap is a shortlist miss, not a scoring error: the cheap <i0, c0> score alone gives rsum"
                    f" {rr['cheap_only_rsum']:.1f} against {rr['rows'][0]['rsum']:.1f} exhaustive, because on shapes"
                    " most of what cross attention adds is binding (twins share every word), which the global"
                    " vectors cannot see; the true match then never reaches the shortlist."
                    if scale
                    else ""
                )
                + " With both directions reranked, K = 50 at 1,000 x 5,000 fuse-scores at least 5,000 x 50 = 250,000"
                " pairs (every caption query's shortlist), 1/20 of the 5 M pairs, and listed pairs cost more per pair"
                " than dense blocks, so 20x is out of reach for the text->image direction by construction; image->text"
                " alone scores 50,000."
            )
    out.append(
        "- 5,000 x 25,000 never holds more than one block of pair activations: **met by construction and measured on"
        " smaller runs** (section 3); not run at full size on this CPU."
    )
    out.append("")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", default=str(RESULTS / "gpu_scoring.json"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    args = parser.parse_args()
    ps, small, gpu = load(RESULTS / "pair_scoring.json"), load(RESULTS / "rerank.json"), load(Path(args.gpu))
    full = load(RESULTS / "rerank_1000.json")
    rr = full or small
    sections = ["## 2. Exhaustive scoring versus shortlist and rerank", ""]
    if full:
        sections += rerank_section(full, "### At 1,000 images x 5,000 captions (`--test-images 500`)")
    if small:
        sections += rerank_section(small, "### At 200 images x 1,000 captions (the default, `--test-images 100`)")
    if ps is None:
        raise SystemExit("run benchmarks/pair_scoring.py first")
    lines = [
        "# Performance: pair scoring and shortlist-and-rerank",
        "",
        "Generated by `python benchmarks/report.py` from `benchmarks/results/*.json`; rerun the scripts named in",
        "each section to reproduce it. What the engine and the rerank do is explained in [retrieval.md](retrieval.md).",
        "CPU numbers come from a 2-core machine shared with other jobs: we quote ratios measured within one run;",
        "absolute times only mean something from a GPU.",
        "",
        *targets(ps, rr),
        *pair_section(ps),
        *sections,
        *scaling_section(ps, load(RESULTS / "pair_scoring_mmap.json")),
        *gpu_section(gpu),
    ]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
