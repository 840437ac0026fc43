"""SCAN scoring: mmzoo's engine against a faithful per-caption loop like SCAN's ``shard_xattn_t2i``.

    python benchmarks/scan_scoring.py                     # CPU, one thread: writes benchmarks/results/scan_scoring.json
    python benchmarks/scan_scoring.py --device cuda --sizes 1000x5000 5000x25000 --out gpu.json

The loop is tests/reference/scan_reference.py's ``shard_xattn_t2i`` / ``shard_xattn_i2t`` (checked equal
to SCAN's own code): shards of 128 x 128, then one ``func_attention`` per caption against the shard's
images. The engine is ``mmzoo.scoring.fused_matrix`` on the ``scan-t2i`` / ``scan-i2t`` fusion block
(SCAN's README settings). Both get the same float32 fragments (d = 1024, 36 regions, captions of 9-15
words: SCAN's features and bi-GRU outputs are L2-normalised, so random unit vectors stand in for them)
and their scores are compared. The ratio is measured in one run, back to back; the machine is shared,
so its load is recorded at the start and the end. When the loop would take too long, it is timed on
the first captions of the same problem (``--loop-pairs``) and compared per pair (noted in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

import mmzoo  # noqa: E402
from mmzoo.scoring import fused_matrix  # noqa: E402
from tests.reference import scan_reference as ref  # noqa: E402

SETTINGS = {
    "t2i": {"agg_func": "LogSumExp", "lambda_softmax": 9.0, "lambda_lse": 6.0},
    "i2t": {"agg_func": "Mean", "lambda_softmax": 4.0, "lambda_lse": 6.0},
}


def fragments(n_images: int, n_texts: int, d: int, regions: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(n_images, regions, d, generator=g)
    img /= img.norm(dim=-1, keepdim=True)
    lengths = torch.randint(9, 16, (n_texts,), generator=g)
    length = int(lengths.max())
    txt = torch.randn(n_texts, length, d, generator=g)
    mask = torch.arange(length)[None] < lengths[:, None]
    txt = (txt / txt.norm(dim=-1, keepdim=True)).masked_fill(~mask[..., None], 0.0)
    pooled = lambda x: mmzoo.plugin.l2_normalize(x.sum(1))  # noqa: E731
    images = mmzoo.plugin.Fragments(img, torch.ones(n_images, regions, dtype=torch.bool), pooled(img))
    texts = mmzoo.plugin.Fragments(txt, mask, pooled(txt))
    return images, texts, lengths.tolist()


def run_size(direction: str, n_images: int, n_texts: int, args) -> dict:
    images, texts, lengths = fragments(n_images, n_texts, args.dim, args.regions)
    cls = mmzoo.registry.fusion.get(f"scan-{direction}")
    fusion = cls(
        cls.Config(raw_feature_norm="clipped_l2norm", **SETTINGS[direction], pairs_per_block=args.block_pairs),
        mmzoo.plugin.BuildContext(embed_dim=args.dim),
    ).eval()
    device = args.device
    images, texts = images.to(device), texts.to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fused_matrix(fusion, images[:4], texts[:8])  # warm-up
    sync()
    start = time.perf_counter()
    engine = fused_matrix(fusion, images, texts, block_size=args.block_size, precision=args.precision)
    sync()
    engine_s = time.perf_counter() - start
    row = {
        "direction": direction,
        "images": n_images,
        "captions": n_texts,
        "pairs": n_images * n_texts,
        "engine_s": round(engine_s, 3),
        "engine_pairs_per_s": round(n_images * n_texts / engine_s),
    }
    loop_texts = max(1, min(n_texts, args.loop_pairs // n_images))
    if args.no_loop:
        return row
    opt = ref.train_opts(cross_attn=direction, raw_feature_norm="clipped_l2norm", **SETTINGS[direction])
    img_np = images.features.cpu().numpy()
    cap_np = texts.features[:loop_texts].cpu().numpy()
    shard = ref.shard_xattn_t2i if direction == "t2i" else ref.shard_xattn_i2t
    if device == "cuda":  # their loop on the GPU: the same code on CUDA tensors
        shard = _cuda_shard(direction)
    start = time.perf_counter()
    loop = shard(img_np, cap_np, lengths[:loop_texts], opt, shard_size=128)
    sync()
    loop_s = time.perf_counter() - start
    loop_pairs = n_images * loop_texts
    diff = float(np.abs(engine[:, :loop_texts].cpu().double().numpy() - loop).max())
    row.update(
        {
            "loop_captions": loop_texts,
            "loop_s": round(loop_s, 3),
            "loop_pairs_per_s": round(loop_pairs / loop_s),
            "speedup": round((n_images * n_texts / engine_s) / (loop_pairs / loop_s), 2),
            "max_abs_diff": diff,
        }
    )
    return row


def _cuda_shard(direction):
    score = ref.xattn_score_t2i if direction == "t2i" else ref.xattn_score_i2t

    def shard(images, captions, caplens, opt, shard_size=128):
        out = np.zeros((len(images), len(captions)))
        with torch.no_grad():
            for i in range(0, len(images), shard_size):
                im = torch.from_numpy(images[i : i + shard_size]).cuda()
                for j in range(0, len(captions), shard_size):
                    s = torch.from_numpy(captions[j : j + shard_size]).cuda()
                    out[i : i + shard_size, j : j + shard_size] = (
                        score(im, s, caplens[j : j + shard_size], opt).cpu().numpy()
                    )
        return out

    return shard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["100x500", "1000x5000"], help="IMAGESxCAPTIONS")
    parser.add_argument("--directions", nargs="+", default=["t2i", "i2t"], choices=["t2i", "i2t"])
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--regions", type=int, default=36)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--block-pairs", type=int, default=4096)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument(
        "--loop-pairs", type=int, default=200_000, help="time the loop on the first captions, at most this many pairs"
    )
    parser.add_argument("--no-loop", action="store_true", help="time the engine only")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scan_scoring.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine()
    rows = []
    for size in args.sizes:
        n_images, n_texts = (int(x) for x in size.split("x"))
        for direction in args.directions:
            rows.append(run_size(direction, n_images, n_texts, args))
            print(json.dumps(rows[-1]), flush=True)
    info["load_average_end"] = os.getloadavg()[0]
    result = {
        "benchmark": "scan_scoring",
        "command": "python " + " ".join(sys.argv),
        "settings": {
            "dim": args.dim,
            "regions": args.regions,
            "caption_words": "9-15 (uniform)",
            "raw_feature_norm": "clipped_l2norm",
            "directions": SETTINGS,
            "block_pairs": args.block_pairs,
            "block_size": args.block_size,
            "precision": args.precision,
            "loop": "tests/reference/scan_reference.py shard_xattn_* (shard_size 128, one func_attention per caption)",
        },
        "machine": info,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
