"""Measure what MMCA training holds in memory at the paper's sizes, to estimate memory per GPU.

Two parts, both measured here rather than assumed:

1. Parameter counts of ``mmca`` at the paper's settings (embed 1024, 36 x 2048 regions, BERT-base sized
   text encoder built from BertConfig() defaults: randomly initialised, nothing downloaded), split into
   frozen and trainable.
2. Activation memory of the cross-attention fusion per scored pair: peak resident memory of one
   forward + backward of ``fusion.score_pairs`` on P pairs (36 regions + 32 tokens, d = 1024, 16 heads,
   FFN 2048, text_pool cnn) in a fresh process, for several P; the slope is bytes per pair. Measured on
   the CPU in float32: GPU kernels (fused attention) can store less, bf16 roughly halves it.

Run:  python benchmarks/fusion_memory.py   (prints a JSON summary)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [8, 16, 32]


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure_pairs(pairs: int) -> int:
    """Peak extra resident bytes of one fused forward + backward over ``pairs`` pairs (run in a fresh process)."""
    import torch

    import mmzoo

    torch.manual_seed(0)
    fusion_cls = mmzoo.registry.fusion.get("mmca-cross")
    fusion = fusion_cls(fusion_cls.Config(), mmzoo.plugin.BuildContext(1024))
    regions = torch.randn(pairs, 36, 1024, requires_grad=True)
    words = torch.randn(pairs, 32, 1024, requires_grad=True)
    images = mmzoo.plugin.Fragments(regions, torch.ones(pairs, 36, dtype=torch.bool), regions[:, 0])
    texts = mmzoo.plugin.Fragments(words, torch.ones(pairs, 32, dtype=torch.bool), words[:, 0])
    before = rss_kib("VmRSS")
    fusion.score_pairs(images, texts).sum().backward()
    return (rss_kib("VmHWM") - before) * 1024


def parameter_counts() -> dict[str, int]:
    sys.path.insert(0, str(ROOT))
    import mmzoo
    from tests.conftest import minilm_path

    model = mmzoo.create_model("mmca", **{"text.bert_config": {}, "text.tokenizer": minilm_path()})
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    parts = {
        name: sum(p.numel() for p in getattr(model, name).parameters() if p.requires_grad)
        for name in ("visual", "text", "fusion")
    }
    return {"trainable": trainable, "frozen": frozen, **{f"trainable_{k}": v for k, v in parts.items()}}


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--pairs":
        print(measure_pairs(int(sys.argv[2])))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    peaks = {}
    for p in PAIRS:
        out = subprocess.run([sys.executable, __file__, "--pairs", str(p)], env=env, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stderr)
        peaks[p] = int(out.stdout.strip().splitlines()[-1])
    # least-squares slope of peak bytes against pairs
    n = len(PAIRS)
    mx, my = sum(PAIRS) / n, sum(peaks.values()) / n
    slope = sum((p - mx) * (peaks[p] - my) for p in PAIRS) / sum((p - mx) ** 2 for p in PAIRS)
    summary = {
        "peak_bytes_by_pairs": peaks,
        "bytes_per_pair": slope,
        "parameters": parameter_counts(),
        "note": "CPU, float32, one fusion layer (paper sizes), 36 regions + 32 tokens per pair",
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
