"""Training pairs/s of MMCA through the cached decomposition versus the straightforward joint unit.

    python benchmarks/training_speed.py          # writes benchmarks/results/training_speed.json

Shapes data at the settings its manifest suggests (the ``mmca`` recipe with the GRU text encoder, d = 64,
batch 32). One training step is the whole of it: encoders, the fused score matrix (all B x B pairs, or the
positives and h = 8 cheap-ranked hard negatives per anchor), the triplet loss, backward, gradient clipping
and an Adam step. The two paths (``fusion.configure_engine(path="cached" | "reference")``) and both
negative settings run round-robin in one process, so that load on the shared machine hits them alike; the
times are this thread's CPU time per step (``time.thread_time``, one thread), the best of the repeats, with
wall-clock medians beside them. ``mmca-no-cross`` (no fusion block) gives the floor. On a shared machine the best
steps of two settings can come from differently quiet moments, so the speedups are also given as the median over
rounds of the ratio within a round (``cpu_paired_median``: both paths' steps of one round meet the same load).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

import mmzoo
from mmzoo.data import make_shapes, open_split
from mmzoo.data.shapes import SHAPES_MODEL
from mmzoo.training.negatives import candidate_mask, score_rows
from mmzoo.training.step import TrainingStep
from mmzoo_plugins.mmca import engine

ROOT = Path(__file__).resolve().parents[1]


def batches(
    data: mmzoo.plugin.Split, batch: int, count: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    rng = np.random.default_rng(seed)
    cpi, out = data.captions_per_image, []
    for _ in range(count):
        idx = np.sort(rng.choice(data.num_images, batch, replace=False))
        features, mask = data.image_features(idx)
        caps = [data.captions[i * cpi + int(rng.integers(cpi))] for i in idx]
        out.append((torch.from_numpy(features), torch.from_numpy(mask), caps))
    return out


class Setup:
    """One model + optimizer + negatives setting, stepped on the same batches as the others."""

    def __init__(
        self, recipe: str, path: str | None, negatives: str | int, train_captions: list[str], region_dim: int
    ) -> None:
        torch.manual_seed(0)
        settings = {k: v for k, v in SHAPES_MODEL.items() if recipe == "mmca" or not k.startswith("fusion.")}
        settings["visual.in_dim"] = region_dim
        self.model = mmzoo.create_model(recipe, **settings)
        self.model.text.fit(train_captions)
        if path is not None:
            self.model.fusion.configure_engine(path=path)
        self.model.train()
        self.step = TrainingStep(self.model, negatives)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.name = f"{recipe}" + (f" {path}" if path else "") + f" negatives={negatives}"
        self.cpu: list[float] = []
        self.wall: list[float] = []

    def run(self, batch: tuple[torch.Tensor, torch.Tensor, list[str]]) -> None:
        features, mask, caps = batch
        c0, w0 = time.thread_time(), time.perf_counter()
        loss = self.step(features, caps, mask)
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 2.0)
        self.opt.step()
        self.cpu.append(time.thread_time() - c0)
        self.wall.append(time.perf_counter() - w0)


PHASES = ("encoders", "fused scores", "loss", "backward", "clip + Adam")
PARTS = (
    "f: prepare (Q, K, V, intra attention)",
    "f: cross attention (gathers, both directions)",
    "f: token-wise tail (out-proj, LN, FFN, LN)",
    "f: pooling (region sum, text CNN, score)",
    "b: pooling",
    "b: token-wise tail",
    "b: cross attention (and the gathers' scatter)",
    "b: prepare",
)


def phase_times(s: Setup, batch: tuple[torch.Tensor, torch.Tensor, list[str]]) -> list[float]:
    """One training step split into :data:`PHASES` (thread CPU time), as TrainingStep computes it on one process."""
    features, mask, caps = batch
    model = s.model
    t = [time.thread_time()]
    images, texts = model.encode_images(features, mask), model.encode_texts(caps)
    t.append(time.thread_time())
    scores = score_rows(model, images, texts, s.step.hard_negatives)
    t.append(time.thread_time())
    loss = model.loss_fn(scores.float())
    t.append(time.thread_time())
    s.opt.zero_grad()
    loss.backward()
    t.append(time.thread_time())
    torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
    s.opt.step()
    t.append(time.thread_time())
    return [b - a for a, b in itertools.pairwise(t)]


def fusion_parts(s: Setup, batch: tuple[torch.Tensor, torch.Tensor, list[str]]) -> list[float]:
    """The cached path's fused scores, forward and backward, split into :data:`PARTS` (thread CPU time).

    Forward boundaries are stamped after the engine's calls; backward ones when the gradient reaches the tail's
    outputs, the attention outputs and the caches (tensor hooks, first arrival), all on fixed fragments (leaves, so
    the encoders are out of it) with a random upstream gradient."""
    fusion = s.model.fusion
    features, mask, caps = batch
    with torch.no_grad():
        images, texts = s.model.encode_images(features, mask), s.model.encode_texts(caps)
    images = mmzoo.plugin.Fragments(images.features.clone().requires_grad_(True), images.mask, images.pooled)
    texts = mmzoo.plugin.Fragments(texts.features.clone().requires_grad_(True), texts.mask, texts.pooled)
    stamps: list[tuple[str, float]] = []

    def mark(name: str) -> None:
        stamps.append((name, time.thread_time()))

    def hook(x: torch.Tensor, name: str) -> torch.Tensor:
        if x.requires_grad:
            x.register_hook(lambda _: mark(name))
        return x

    calls = {"prepare": 0, "attend": 0, "tail": 0}
    real = engine.prepare, engine.attend_pairs, engine.attend_dense, type(fusion)._token_work

    def prepare(*a, **k):
        cache = real[0](*a, **k)
        calls["prepare"] += 1
        if calls["prepare"] == 2:
            mark(PARTS[0])
        for x in (cache.q, cache.k, cache.v, cache.lse, cache.intra):
            hook(x, PARTS[6])
        return cache

    def attending(fn):
        def wrapped(*a, **k):
            out = fn(*a, **k)
            calls["attend"] += 1
            if calls["attend"] == 2:
                mark(PARTS[1])
            return hook(out, PARTS[5])

        return wrapped

    def token_work(self, *a, **k):
        out = real[3](self, *a, **k)
        calls["tail"] += 1
        if calls["tail"] == 2:
            mark(PARTS[2])
        return hook(out, PARTS[4])

    engine.prepare, engine.attend_pairs, engine.attend_dense = prepare, attending(real[1]), attending(real[2])
    type(fusion)._token_work = token_work
    try:
        mark("start")
        if s.step.hard_negatives == "all":
            out = fusion(images, texts)
        else:
            candidates = candidate_mask(images.pooled @ texts.pooled.t(), int(s.step.hard_negatives))
            out = fusion.score_pairs_indexed(images, texts, *candidates.nonzero(as_tuple=True))
        mark(PARTS[3])
        out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(0)))
        mark(PARTS[7])
    finally:
        engine.prepare, engine.attend_pairs, engine.attend_dense = real[:3]
        type(fusion)._token_work = real[3]
    first: dict[str, float] = {}
    for name, at in stamps:
        first.setdefault(name, at)
    ordered = [first["start"]] + [first[name] for name in PARTS]
    return [b - a for a, b in itertools.pairwise(ordered)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "training_speed.json"))
    parser.add_argument("--batch", type=int, default=32, help="training pairs per step (the shapes setting)")
    parser.add_argument("--steps", type=int, default=30, help="measured steps per setting (after 2 warm-up steps)")
    parser.add_argument("--hard-negatives", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        make_shapes(tmp, images=max(400, 2 * args.batch), dev_images=10, test_images=10, seed=0)
        data = open_split(tmp, "train")
        work = batches(data, args.batch, args.steps + 2, seed=0)
        captions, region_dim = list(data.captions), data.region_dim
    setups = [
        Setup("mmca", path, negatives, captions, region_dim)
        for negatives in ("all", args.hard_negatives)
        for path in ("cached", "reference")
    ] + [Setup("mmca-no-cross", None, "all", captions, region_dim)]
    for i, batch in enumerate(work):
        for s in setups:
            s.run(batch)
        print(f"step {i + 1}/{len(work)}", flush=True)
    phases: dict[str, list[list[float]]] = {s.name: [] for s in setups[:4]}
    parts: dict[str, list[list[float]]] = {s.name: [] for s in setups[:4] if "cached" in s.name}
    for batch in work[2:]:  # the breakdowns, after the measured steps (their stamps cost a little)
        for s in setups[:4]:
            phases[s.name].append(phase_times(s, batch))
            if s.name in parts:
                parts[s.name].append(fusion_parts(s, batch))
    breakdown = {
        name: {
            "step_phases_cpu_s_median": dict(zip(PHASES, np.median(np.array(v), 0).tolist(), strict=True)),
            **(
                {
                    "cached_fusion_parts_cpu_s_median": dict(
                        zip(PARTS, np.median(np.array(parts[name]), 0).tolist(), strict=True)
                    )
                }
                if name in parts
                else {}
            ),
        }
        for name, v in phases.items()
    }
    rows = []
    for s in setups:
        cpu, wall = s.cpu[2:], s.wall[2:]
        rows.append(
            {
                "setting": s.name,
                "pairs_per_s_cpu": args.batch / min(cpu),
                "pairs_per_s_wall_median": args.batch / statistics.median(wall),
                "step_cpu_s_min": min(cpu),
                "step_cpu_s_median": statistics.median(cpu),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    by = {r["setting"]: r for r in rows}
    setups_by = {s.name: s for s in setups}
    speedups = {}
    for negatives in ("all", args.hard_negatives):
        cached, ref = by[f"mmca cached negatives={negatives}"], by[f"mmca reference negatives={negatives}"]
        c_steps = setups_by[f"mmca cached negatives={negatives}"].cpu[2:]
        r_steps = setups_by[f"mmca reference negatives={negatives}"].cpu[2:]
        speedups[str(negatives)] = {
            "cpu": cached["pairs_per_s_cpu"] / ref["pairs_per_s_cpu"],
            "cpu_paired_median": statistics.median(r / c for c, r in zip(c_steps, r_steps, strict=True)),
            "wall_median": cached["pairs_per_s_wall_median"] / ref["pairs_per_s_wall_median"],
        }
        print(
            f"negatives={negatives}: cached / straightforward training pairs/s = {speedups[str(negatives)]['cpu']:.2f}x"
            f" (paired median {speedups[str(negatives)]['cpu_paired_median']:.2f}x)"
        )
    result = {
        "machine": info,
        "load_average_end": __import__("os").getloadavg()[0],
        "settings": SHAPES_MODEL,
        "batch": args.batch,
        "steps": args.steps,
        "rows": rows,
        "speedup": speedups,
        "breakdown": breakdown,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
