"""MMCA training-step speed and peak GPU memory at the paper's sizes, fp32 versus bf16 autocast.

Paper sizes: 36 regions x 2048, BERT-base (12 layers, hidden 768, frozen), 32 tokens, d = 1024, one
self-attention and one cross-attention unit (16 heads, FFN 2048), batch 64 and 128 with the hardest-negative
loss over all B x B fused pairs. BERT's weights are random here (the Hub cannot be reached on the benchmark
machine); that changes no timing. Needs CUDA; exits cleanly without it.

    python benchmarks/gpu_training.py --tokenizer PATH_TO_BERT_TOKENIZER --out gpu_training.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

import mmzoo

BERT_BASE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
}


def measure(tokenizer: str, batch: int, amp: bool, steps: int = 10) -> dict:
    torch.manual_seed(0)
    model = mmzoo.create_model("mmca", **{"text.bert_config": BERT_BASE, "text.tokenizer": tokenizer}).cuda().train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    features = torch.randn(batch, 36, 2048, device="cuda")
    ids = torch.randint(1000, 30000, (batch, 32), device="cuda")
    mask = torch.ones(batch, 32, dtype=torch.bool, device="cuda")
    mask[batch // 2 :, 20:] = False
    tokens = mmzoo.plugin.TokenBatch(ids, mask)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            out = model(features, tokens)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        optimizer.step()
        return out.loss.detach().item()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return {
        "batch": batch,
        "amp_bf16": amp,
        "step_ms": round(seconds * 1e3, 2),
        "pairs_per_s": round(batch / seconds, 1),
        "scored_pairs_per_s": round(batch * batch / seconds, 1),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="folder with a bert-base-uncased WordPiece tokenizer")
    parser.add_argument("--out", default="gpu_training.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing measured")
        return 0
    rows = [measure(args.tokenizer, b, amp) for b in (64, 128) for amp in (False, True)]
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    print(f"device: {meta['device']}, torch {meta['torch']}")
    print("| batch | bf16 autocast | step (ms) | image-caption pairs/s | fused pairs scored/s | peak memory (GiB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['batch']} | {r['amp_bf16']} | {r['step_ms']} | {r['pairs_per_s']} | {r['scored_pairs_per_s']} "
            f"| {r['peak_mem_gib']} |"
        )
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
