"""What MMCA can and cannot learn: its open hyper-parameters on the shapes data, several seeds per point.

The paper (Wei et al., CVPR 2020) leaves the number of cross-attention layers, the heads, d, alpha and the text
CNN's windows open. This study trains ``mmca`` on the shapes data (``mmzoo.data.make_shapes``: the test split
holds every scene with a twin that swaps one property of its focal pair) at the shapes benchmark's CPU settings,
varies one choice at a time, and reports test rsum and the binding probe **by twin type** (colour, shape, size,
position), mean and spread over seeds. Each run's result is written to ``OUT/results/POINT/seedS.json`` as soon as
it is measured, so an interrupted study resumes where it stopped, and two processes can share the work
(``--points``). ``--report`` writes the table into ``docs/mmca.md`` between markers.

Run:  python benchmarks/mmca_study.py --out runs/mmca-study --threads 1 [--points default layers2 ...] [--report]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "mmca.md"
RESULTS = ROOT / "benchmarks" / "results" / "mmca_study.json"
TWIN_TYPES = ("colour", "shape", "size", "position")
sys.path.insert(0, str(ROOT / "benchmarks"))
from shapes_benchmark import TRAINING as SHAPES_TRAINING  # noqa: E402  (a sibling script)

#: the shapes benchmark's shared schedule (benchmarks/shapes_benchmark.py), and full dev scoring so that the
#: best checkpoint is chosen on every dev image. The data's own suggestions give the CPU sizes (d 64, GRU text,
#: 4 heads, FFN 128, 32 CNN channels, 8 hard negatives after one warm-up epoch over all).
TRAINING = {**{k: v for k, v in SHAPES_TRAINING.items() if k != "seed"}, "dev_eval": "full"}
#: one choice varied at a time against the default; (settings, epochs), or (settings, epochs, recipe) for a
#: reference trained the same way: SCAN t2i, the one family the shapes benchmark saw learn positions.
POINTS: dict[str, tuple] = {
    "default": ([], 5),
    "layers=2": (["fusion.layers=2"], 5),
    "layers=3": (["fusion.layers=3"], 5),
    "windows=1-5": (["fusion.windows=[1,2,3,4,5]"], 5),
    "windows=1-9": (["fusion.windows=[1,2,3,4,5,6,7,8,9]"], 5),
    "heads=1": (["fusion.heads=1", "visual.heads=1"], 5),
    "heads=8": (["fusion.heads=8", "visual.heads=8"], 5),
    "d=128": (["embed_dim=128"], 5),
    "alpha=0.5": (["alpha=0.5"], 5),
    "alpha=2": (["alpha=2.0"], 5),
    "text_pool=mean": (["fusion.text_pool=mean"], 5),
    "negatives=all": (["training.hard_negatives=all"], 5),
    "epochs=12": ([], 12),
    "text=MiniLM (frozen)": (
        ["text.name=bert-cnn", "text.pretrained=offline:all-minilm-l6-v2", "text.channels=32"],
        5,
    ),
    "reference: scan-t2i": ([], 5, "scan-t2i"),
}


def slug(point: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in point).strip("_")


def make_data(out: Path, images: int, test_images: int, seed: int) -> Path:
    from mmzoo.data import make_shapes

    data = out / "data"
    if not (data / "mmzoo_data.json").is_file():
        make_shapes(data, images=images, dev_images=100, test_images=test_images, seed=seed)
    return data


def twin_types(data: Path) -> list[str | None]:
    """The swap of each test image's pair (the scene and its twin share it), from the scenes file."""
    from mmzoo.data.shapes import load_scenes

    scenes = load_scenes(data, "test")
    swaps: list[str | None] = []
    for s in scenes:
        swap = s["swap"] if s["swap"] is not None else (scenes[s["twin"]]["swap"] if s["twin"] is not None else None)
        swaps.append(swap)
    return swaps


def measure(model: Any, data: Path, recall_images: int) -> dict[str, float]:
    """Test recall on the first ``recall_images`` images (scenes with their twins) and the binding probe on every
    twin pair, overall and by twin type.

    A fused model scores each pair with a transformer, so the full 600 x 3,000 test matrix costs minutes per run
    on this CPU; recall needs the full matrix of its images, the probe only each pair's 2 x 10 scores.
    """
    import numpy as np

    from mmzoo.data import open_split
    from mmzoo.evaluation import binding_probe, encode_split, recall_metrics, score_matrix, twin_scores

    split = open_split(data, "test")
    images, texts = encode_split(model, split, batch_size=256, progress=False)
    cpi = split.captions_per_image
    n = min(recall_images, len(images))
    sims = score_matrix(model, images[:n], texts[: n * cpi], precision="fp32")
    out = {k: float(v) for k, v in recall_metrics(sims, cpi).items()}
    out["recall_images"] = n
    twins = np.asarray(split.twins, dtype=np.int64)
    paired = twin_scores(model, images, texts, twins, cpi, precision="fp32")
    out.update(binding_probe(paired, twins, cpi))
    swaps = twin_types(data)
    for kind in TWIN_TYPES:
        typed = np.where(np.array([s == kind for s in swaps]), twins, -1)
        if (typed >= 0).any():
            for key, value in binding_probe(paired, typed, cpi).items():
                out[f"{key}_{kind}"] = value
            out[f"pairs_{kind}"] = int((typed >= 0).sum()) // 2
    return out


def run_point(point: str, seed: int, data: Path, out: Path, recall_images: int) -> dict[str, Any]:
    """Train one (point, seed) into a fresh run folder and measure its best dev checkpoint on test.

    A run folder whose training finished (every epoch in metrics.jsonl) is measured again, not retrained.
    """
    import shutil

    import mmzoo
    from mmzoo.training import prepare_run, read_metrics, train

    sets, epochs, *rest = POINTS[point]
    recipe = rest[0] if rest else "mmca"
    run = out / "runs" / slug(point) / f"seed{seed}"
    finished = (run / "best").is_dir() and len(read_metrics(run)) == epochs
    if run.exists() and not finished:
        shutil.rmtree(run)
    training = {**TRAINING, "seed": seed}
    spec = prepare_run(data, recipe, sets=[*sets, *(f"training.{k}={v}" for k, v in training.items())], epochs=epochs)
    start = time.perf_counter()
    records = read_metrics(run) if finished else train(spec, run, progress=False)
    seconds = sum(r["seconds"] for r in records) if finished else time.perf_counter() - start
    model = mmzoo.from_pretrained(f"local-dir:{run / 'best'}")
    result = {
        "point": point,
        "seed": seed,
        "recipe": recipe,
        "settings": sets,
        "epochs": epochs,
        "train_seconds": seconds,
        "best_dev_rsum": max(r["dev"]["rsum"] for r in records),
        "load": os.getloadavg()[0],
        **measure(model, data, recall_images),
    }
    shutil.rmtree(run / "last", ignore_errors=True)  # keep best/ for re-measuring, drop the optimizer state
    return result


def stats(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, sd


def collect(out: Path) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for point in POINTS:
        folder = out / "results" / slug(point)
        runs = [json.loads(p.read_text()) for p in sorted(folder.glob("seed*.json"))] if folder.is_dir() else []
        if runs:
            found[point] = runs
    return found


def table(found: dict[str, list[dict[str, Any]]]) -> str:
    cols = [("rsum", "test rsum"), ("bind_t2i", "bind t2i")]
    cols += [(f"bind_t2i_{k}", f"t2i {k}") for k in TWIN_TYPES] + [(f"bind_i2t_{k}", f"i2t {k}") for k in TWIN_TYPES]
    lines = [
        "| point | seeds | " + " | ".join(c[1] for c in cols) + " | train s |",
        "|---|---|" + "---|" * (len(cols) + 1),
    ]
    for point, runs in found.items():
        cells = []
        for key, _ in cols:
            vals = [r[key] for r in runs if key in r]
            m, sd = stats(vals) if vals else (float("nan"), float("nan"))
            cells.append(f"{m:.1f} ± {sd:.1f}")
        secs = stats([r["train_seconds"] for r in runs])[0]
        lines.append(f"| {point} | {len(runs)} | " + " | ".join(cells) + f" | {secs:.0f} |")
    return "\n".join(lines)


def write_section(body: str) -> None:
    start, end = "<!-- mmca-study:start -->", "<!-- mmca-study:end -->"
    text = DOC.read_text(encoding="utf-8")
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text, encoding="utf-8")


def report(out: Path, args: argparse.Namespace) -> str:
    found = collect(out)
    pairs = next(iter(found.values()))[0] if found else {}
    counts = ", ".join(f"{k} {pairs.get(f'pairs_{k}', 0)}" for k in TWIN_TYPES)
    loads = [r["load"] for runs in found.values() for r in runs]
    body = "\n\n".join(
        [
            "### The study's table (`benchmarks/mmca_study.py`)",
            f"Data: `make_shapes(images={args.images}, dev_images=100, test_images={args.test_images}, "
            f"seed={args.data_seed})` (12 regions x 64; test twin pairs by type: {counts}). Every run: the data's "
            "CPU sizes (d 64, GRU text, 4 heads, FFN 128, 32 CNN channels, one layer, windows 1-3, alpha 1, "
            "8 hard negatives after one warm-up epoch over all), "
            + ", ".join(f"{k} {v}" for k, v in TRAINING.items())
            + "; one setting changed per row. Test metrics of the best dev epoch, mean ± sample standard deviation "
            f"over the seeds. Recall (rsum) is ranked on the first {args.recall_images} test images (scenes and their "
            "twins, the shapes benchmark's test size: a fused model scores every pair with a transformer), the "
            "binding probe on every twin pair; `t2i X` = percentage of captions that score their own image above its twin whose "
            "X was swapped (50 = chance), `i2t X` the same for an image and the twin's caption k.",
            table(found),
            f"Measured on 2 shared CPU cores, torch at 1 thread; 1-minute load average {min(loads or [0]):.1f} to "
            f"{max(loads or [0]):.1f} during the runs (train seconds are wall-clock under that load: compare them "
            "within the table only). Raw results: `benchmarks/results/mmca_study.json`.",
        ]
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(found, indent=1) + "\n", encoding="utf-8")
    return body


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/mmca-study", help="work folder (data, runs, per-run results)")
    p.add_argument("--images", type=int, default=800, help="training images")
    p.add_argument("--test-images", type=int, default=300, help="test base scenes (each with its twin)")
    p.add_argument("--recall-images", type=int, default=200, help="test images (scenes + twins) recall is ranked on")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds per point")
    p.add_argument("--points", nargs="+", default=list(POINTS), choices=list(POINTS), metavar="POINT")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--report", action="store_true", help="only write the table from the results found")
    p.add_argument("--no-doc", action="store_true", help="print the table, do not write docs/mmca.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    data = make_data(out, args.images, args.test_images, args.data_seed)
    if not args.report:
        for seed in args.seeds:  # seed-major: every point gets its first seed before any gets a third
            for point in args.points:
                target = out / "results" / slug(point) / f"seed{seed}.json"
                if target.is_file():
                    continue
                result = run_point(point, seed, data, out, args.recall_images)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
                print(
                    f"{point} seed {seed}: rsum {result['rsum']:.1f}, bind_t2i {result['bind_t2i']:.1f}, "
                    f"position {result.get('bind_t2i_position', float('nan')):.1f}, {result['train_seconds']:.0f} s",
                    flush=True,
                )
    body = report(out, args)
    print(body)
    if not args.no_doc:
        write_section(body)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
