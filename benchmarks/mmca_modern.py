"""MMCA's cross attention over a frozen modern tower vs. a dual encoder over the same frozen outputs (shapes).

Run:  python benchmarks/mmca_modern.py --out /tmp/mmca_modern [--images 2000 --epochs 5 --seeds 0 1 2]

1. ``mmzoo make-data shapes --render``: the shapes scenes as PNG images (with their twins: the same objects with
   two attributes swapped) and the Karpathy split file.
2. A tower: a randomly initialised SigLIP (``--family siglip``; ``clip`` works too) saved in the transformers layout,
   its sentencepiece tokenizer trained on the training captions (a tiny random tower, as the issue allows).
3. The image cache: the frozen vision tower runs once per image (``mmzoo extract-features``: row 0 the pooled
   embedding, then the patch tokens); the text tower runs once per caption (``text.cache_captions``). An epoch
   then costs only what trains.
4. For each seed, with the same data, epochs, schedule and loss (hinge over all negatives), both trained with
   ``mmzoo.training.train``: the dual encoder ``siglip`` with a trainable projection head on each side (an MLP over
   the tower's outputs less their running mean: ``head``, ``head_hidden``, ``head_centre``), scored by the cosine
   of the mean of the projected tokens (``pool: mean``), and ``siglip-mmca``: the same heads and pooling for
   <i0, c0>, plus MMCA's fusion over the projected patch and word tokens (S = <i0, c0> + <i1, c1>).
5. Test recall and the binding probe (``bind_i2t`` / ``bind_t2i``: how often an image's own caption outscores its
   twin's, and back; 50 is chance; ``bind_t2i_<type>`` per twin type) of each; the means over seeds.

Seeds can train in parallel processes (``--seeds 0 1`` and ``--seeds 2``, same ``--out``); ``--reuse`` with every
seed then assembles the table from each run's ``result.json``.
Results are written to OUT/mmca_modern.json and printed as a table (docs/clip.md quotes them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import mmzoo
from mmzoo.cli import main as mmzoo_main
from mmzoo.data import KarpathyImages, open_split
from mmzoo.data.extract import extract_split
from mmzoo.data.render import KARPATHY_NAME
from mmzoo.evaluation import evaluate
from mmzoo.training import prepare_run, train
from mmzoo_plugins.clip.towers import save_random_tower

#: transformer layers of the random tower. With none, a token is its layer-normed patch (or word) embedding plus its
#: position: a random but faithful code of the pixels and words (a linear probe reads an object's colour from the
#: patch at its centre as well as from the raw pixels), and the pooled embedding still goes through the
#: attention-pooling head. One random layer measured no better (colour probe 70 % vs 67 %; the linear dual's test
#: rsum 17.4 vs 20.0 in docs/clip.md's diagnosis) and costs more.
LAYERS = 0
#: the projection head on each side, over the same frozen outputs, for both models: an MLP (hidden 2 d) after
#: subtracting the running mean of the tower's outputs (a random tower gives every token nearly one direction,
#: mean cosine ~0.9, and a plain linear head spent its epochs unlearning it: test rsum near chance), pooled by the
#: mean of the projected tokens (a random tower's own pooled text vector reads only the padding: the same for
#: every caption). The dual baseline is this alone; siglip-mmca adds the fused term over the projected tokens, so
#: the two differ only by the cross attention (as mmca and mmca-no-cross do on regions).
HEADS = {
    **{f"{side}.{k}": v for side in ("visual", "text") for k, v in (("head", True), ("head_centre", True))},
    "visual.pool": "mean",
    "text.pool": "mean",
}
KEYS = ("rsum", "i2t_r1", "t2i_r1", "bind_i2t", "bind_t2i")
TYPES = ("colour", "shape", "size", "position")


def architecture(family: str, dim: int, size: int, patch: int = 8) -> dict[str, Any]:
    """A small random tower of width ``dim`` (:data:`LAYERS` layers), ``patch``-pixel patches of ``size``-pixel
    images."""
    vision = {
        "hidden_size": dim,
        "intermediate_size": 2 * dim,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 4,
        "image_size": size,
        "patch_size": patch,
    }
    text = {
        "hidden_size": dim,
        "intermediate_size": 2 * dim,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 4,
        "vocab_size": 256,
        "max_position_embeddings": 64 if family == "siglip" else 77,
    }
    if family == "clip":
        text.update({"vocab_size": 520, "bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513})
        return {"model_type": "clip", "projection_dim": dim, "vision_config": vision, "text_config": text}
    return {"model_type": "siglip", "vision_config": vision, "text_config": text}


def prepare_data(
    out: Path, images: int, size: int, family: str, dim: int, patch: int = 8, held_out: int | None = None
) -> tuple[Path, Path]:
    """Render the scenes, save the tower, cache the frozen vision tower's outputs; (tower folder, features folder)."""
    shapes = out / "shapes"
    if not (shapes / KARPATHY_NAME).is_file():
        code = mmzoo_main(
            [
                "make-data",
                "shapes",
                "--out",
                str(shapes),
                "--images",
                str(images),
                "--render",
                "--image-size",
                str(size),
                *(["--dev-images", str(held_out), "--test-images", str(held_out)] if held_out else []),
            ]
        )
        if code != 0:
            raise SystemExit("make-data failed")
    tower = out / f"tower-{family}"
    if not (tower / "config.json").is_file():
        captions = open_split(shapes, "train").captions
        save_random_tower(tower, architecture(family, dim, size, patch), corpus=sorted(set(captions)))
    feats = out / f"features-{family}"
    model = mmzoo.create_model(family, **sources(tower, dim))
    start = time.perf_counter()
    for split in ("train", "dev", "test"):
        dataset = KarpathyImages(shapes / KARPATHY_NAME, shapes / "images", split)
        extract_split(model.visual, dataset, feats, split, batch_size=64, progress=False)
        for name in (f"{split}_twins.npy", f"{split}_twin_types.txt"):
            if (shapes / name).is_file():  # the same scenes: the region data's twin tables hold for the images
                shutil.copy(shapes / name, feats / name)
    print(f"image cache: {time.perf_counter() - start:.1f} s for every split")
    return tower, feats


def sources(tower: Path, dim: int) -> dict[str, Any]:
    return {"visual.source": str(tower), "text.source": str(tower), "embed_dim": dim}


def run_one(
    recipe: str, sets: dict[str, Any], feats: Path, run_dir: Path, epochs: int, seed: int, batch: int
) -> dict[str, Any]:
    # the shapes benchmark's schedule (docs/benchmarks.md: lr 1e-3 decayed after epoch 4, one warm-up epoch, then the
    # fused term for the 8 hardest candidates per anchor), with the hinge summed over the negatives in every epoch
    # (loss.hardest_negative=false, as sgr needs on shapes): with the hardest negative alone the dual encoder
    # collapsed after the warm-up epoch (every embedding one direction, the loss at its all-tied value)
    training = {"epochs": epochs, "batch_size": batch, "lr": 1e-3, "lr_decay_every": 4, "grad_clip": 2.0}
    training["hard_negatives"] = 8
    training.update({"warmup_epochs": 1, "seed": seed, "device": "cpu", "amp": "off"})
    items = [f"{k}={json.dumps(v)}" for k, v in {**sets, "loss.hardest_negative": False}.items()]
    items += [f"training.{k}={json.dumps(v)}" for k, v in training.items()]
    spec = prepare_run(feats, recipe, sets=items)
    start = time.perf_counter()
    train(spec, run_dir, progress=False)
    seconds = time.perf_counter() - start
    model = mmzoo.from_pretrained(f"local-dir:{run_dir / 'best'}")
    metrics = evaluate(model, open_split(feats, "test"), probe="by_type", progress=False, device="cpu")
    keys = [*KEYS, *(f"bind_t2i_{t}" for t in TYPES)]
    return {**{k: round(float(metrics[k]), 2) for k in keys if k in metrics}, "train_seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/mmca_modern")
    parser.add_argument("--images", type=int, default=2000, help="training scenes (dev and test: a quarter)")
    parser.add_argument(
        "--held-out",
        type=int,
        default=200,
        help="dev scenes and test scenes (each test scene with its twin): MMCA fuses every test pair, so its test "
        "evaluation costs (2 x held-out)^2 x 5 pairs",
    )
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--patch", type=int, default=16, help="patch side in pixels")
    parser.add_argument("--dim", type=int, default=64, help="the tower's width (and the embedding size)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--models", nargs="+", choices=["mmca", "dual"], default=["mmca", "dual"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--family", choices=["siglip", "clip"], default="siglip")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="take a seed's result from OUT/runs/<recipe>-seed<N>/result.json when there is one (seeds trained in "
        "parallel processes, then one run with every seed assembles the table)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    tower, feats = prepare_data(out, args.images, args.size, args.family, args.dim, args.patch, args.held_out)
    hidden = {"visual.head_hidden": 2 * args.dim, "text.head_hidden": 2 * args.dim}
    base = {**sources(tower, args.dim), "text.cache_captions": 1_000_000, **HEADS, **hidden}
    fusion = {"fusion.heads": 4, "fusion.ffn_dim": 2 * args.dim, "fusion.channels": args.dim}
    models = {
        f"{args.family}-mmca": (f"{args.family}-mmca", {**base, **fusion}),
        f"dual encoder + heads ({args.family})": (args.family, base),
    }
    models = {k: v for k, v in models.items() if ("mmca" if "mmca" in k else "dual") in args.models}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in models}
    for seed in args.seeds:
        for name, (recipe, sets) in models.items():
            run_dir = out / "runs" / f"{recipe}-seed{seed}"
            done = run_dir / "result.json"
            if args.reuse and done.is_file():  # trained by an earlier (or a parallel) run with these settings
                results[name].append(json.loads(done.read_text()))
            else:
                shutil.rmtree(run_dir, ignore_errors=True)
                results[name].append(run_one(recipe, sets, feats, run_dir, args.epochs, seed, args.batch_size))
                done.write_text(json.dumps(results[name][-1]) + "\n")
            print(name, f"seed {seed}:", results[name][-1])
    summary = {
        name: {
            k: round(statistics.mean(r[k] for r in runs), 2)
            for k in (*KEYS, *(f"bind_t2i_{t}" for t in TYPES), "train_seconds")
            if all(k in r for r in runs)
        }
        for name, runs in results.items()
    }
    report = {
        "settings": vars(args),
        "test_images": open_split(feats, "test").num_images,
        "per_seed": results,
        "mean": summary,
        "machine": {"torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    (out / "mmca_modern.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"\n{'model':40s} " + " ".join(f"{k:>9s}" for k in KEYS))
    for name, mean in summary.items():
        print(f"{name:40s} " + " ".join(f"{mean.get(k, float('nan')):9.2f}" for k in KEYS))
    print(f"\nwrote {out / 'mmca_modern.json'}")


if __name__ == "__main__":
    main()
