"""Shared pieces of the scoring benchmarks: settings, the FLOPs-per-pair formula, timing, the machine."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import mmzoo

#: the "shapes settings": the mmca recipe with the GRU text encoder, sized to train on a 2-core CPU,
#: on shapes data (12 regions of 64 features per image, captions of about 10 words).
SHAPES_SETTINGS: dict[str, Any] = {
    "text.name": "gru",
    "visual.in_dim": 64,
    "embed_dim": 64,
    "visual.heads": 4,
    "visual.ffn_dim": 256,
    "fusion.heads": 4,
    "fusion.ffn_dim": 256,
    "fusion.channels": 64,
    "text.word_dim": 64,
}
SHAPES_REGIONS, SHAPES_WORDS = 12, 10


def settings_for(dim: int, heads: int = 4, regions_in: int = 64) -> dict[str, Any]:
    """The shapes settings scaled to embedding size ``dim`` (FFN 4 d, CNN channels d)."""
    return {
        **SHAPES_SETTINGS,
        "visual.in_dim": regions_in,
        "embed_dim": dim,
        "visual.heads": heads,
        "fusion.heads": heads,
        "visual.ffn_dim": 4 * dim,
        "fusion.ffn_dim": 4 * dim,
        "fusion.channels": dim,
        "text.word_dim": dim,
    }


def flops_per_pair(
    k: int, length: int, d: int, ffn: int, channels: int | None, windows: tuple[int, ...] = (1, 2, 3)
) -> int:
    """Matrix-product FLOPs (multiply-add = 2) that one pair necessarily costs in the engine (1 unit).

    8 k L d        cross-modal logits and value sums, both directions (region->word, word->region)
    2 (k + L) d^2  attention output projection of every token
    4 (k + L) d f  feed-forward (d -> f -> d) of every token
    2 L d C sum(w) + 2 C n_w d   text 1D-CNN (all window taps) and its output layer (0 for mean pooling)
    2 d            the final dot product
    Element-wise work (softmax, LayerNorm, GELU, pooling) is not counted.
    """
    cnn = 0 if channels is None else 2 * length * d * channels * sum(windows) + 2 * channels * len(windows) * d
    return 8 * k * length * d + 2 * (k + length) * d * d + 4 * (k + length) * d * ffn + cnn + 2 * d


def straightforward_flops_per_pair(k: int, length: int, d: int, ffn: int, channels: int | None) -> int:
    """FLOPs of the straightforward joint unit over [R; X]: adds Q,K,V projections and the full attention."""
    n = k + length
    cnn = 0 if channels is None else 2 * length * d * channels * 6 + 2 * channels * 3 * d
    return 6 * n * d * d + 4 * n * n * d + 2 * n * d * d + 4 * n * d * ffn + cnn + 2 * d


def matmul_rate(size: int = 2048, repeats: int = 3, device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of one (size x size) @ (size x size) product, best of ``repeats``."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):
        best = min(best, timed(lambda: a @ b, device))
    return 2 * size**3 / best


def timed(fn: Callable[[], Any], device: str = "cpu") -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def random_fragments(n: int, length: int, d: int, device: str = "cpu", seed: int = 0) -> mmzoo.plugin.Fragments:
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, length, d, generator=g)
    pooled = mmzoo.plugin.l2_normalize(torch.randn(n, d, generator=g))
    return mmzoo.plugin.Fragments(features, torch.ones(n, length, dtype=torch.bool), pooled).to(device)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        names = [x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
