"""From pixels, end to end on rendered shapes: render -> extract features once (frozen offline backbone)
-> train the head and a GRU text encoder on the regions -> evaluate -> save a model that runs on images.

Run:  python benchmarks/pixels_shapes.py --out /tmp/pixels_shapes [--images 1000 --size 128 --epochs 20]
Then: mmzoo search /tmp/pixels_shapes/model --images /tmp/pixels_shapes/png/images/test "a big red circle left of ..."

Prints the test recall (and the binding probe over swapped twins) next to chance, and the mean absolute
difference between the pixel path and the extracted-region path. Results: docs/vision.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch

import mmzoo
from mmzoo.data import KarpathyImages, open_split
from mmzoo.data.extract import extract_split, visual_source
from mmzoo.data.render import KARPATHY_NAME, render_shapes
from mmzoo.evaluation import binding_probe, recall_metrics


def chance_metrics(images: int, cpi: int = 5, seed: int = 0) -> dict[str, float]:
    """Recall of random scores on the same number of images and captions."""
    gen = torch.Generator().manual_seed(seed)
    return recall_metrics(torch.rand(images, images * cpi, generator=gen), cpi)


def train_heads(
    model: mmzoo.MatchingModel, data: mmzoo.plugin.Split, epochs: int, batch: int, lr: float
) -> list[float]:
    """One random caption per image per step (no duplicate image in a batch); Adam; hardest negatives after epoch 1."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    rng = random.Random(0)
    cpi = data.captions_per_image
    features = torch.from_numpy(data.image_features(np.arange(data.num_images))[0])
    losses = []
    model.train()
    for epoch in range(epochs):
        model.loss_fn.hardest_negative = epoch >= 1
        order = list(range(data.num_images))
        rng.shuffle(order)
        total = 0.0
        for start in range(0, len(order), batch):
            ids = order[start : start + batch]
            captions = [data.captions[i * cpi + rng.randrange(cpi)] for i in ids]
            out = model(features[ids], captions)
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
            opt.step()
            total += float(out.loss.detach())
        losses.append(total / len(order))
        logging.info("epoch %d loss %.4f", epoch + 1, losses[-1])
    return losses


@torch.no_grad()
def scores(model: mmzoo.MatchingModel, data: mmzoo.plugin.Split) -> torch.Tensor:
    model.eval()
    images = model.encode_images(torch.from_numpy(data.image_features(np.arange(data.num_images))[0]))
    return model.similarity(images, model.encode_texts(data.captions))


@torch.no_grad()
def search_check(model: mmzoo.MatchingModel, out: Path, folder: int) -> dict[str, float]:
    """``mmzoo search`` on folders of ``folder`` rendered scenes: how often is the described scene first?

    Every scene's first caption is a query against its folder; on ``test`` a folder holds each scene's
    swapped twin too (same words, other picture), the hard case; ``dev`` has no twins.
    """
    result = {}
    for split in ("dev", "test"):
        ds = KarpathyImages(out / "png" / KARPATHY_NAME, out / "png" / "images", split)
        n = min(folder, len(ds.records))
        images = model.encode_images([r.path for r in ds.records[:n]])
        texts = model.encode_texts([ds.records[i].captions[0] for i in range(n)])
        best = model.similarity(images, texts).argmax(0)
        result[f"{split}_first_pct_folder{n}"] = 100.0 * float((best == torch.arange(n)).double().mean())
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--size", type=int, default=128, help="rendered and backbone image side")
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--weights", default="offline:efficientnet_lite0")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--embed-dim", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--layers", type=int, default=1, help="self-attention units in the visual head")
    p.add_argument("--position", action="store_true", help="learned row/column embedding of the grid regions")
    p.add_argument("--name", default="model", help="sub-folder for the saved model and result_NAME.json")
    p.add_argument("--folder", type=int, default=50, help="images per searched folder for the search check")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = Path(args.out)
    timings = {}

    t = time.perf_counter()
    if not (out / "png" / KARPATHY_NAME).is_file():
        render_shapes(out / "png", images=args.images, seed=0, size=args.size)
    timings["render_s"] = time.perf_counter() - t

    overrides = {
        "embed_dim": args.embed_dim,
        "visual.backbone": args.backbone,
        "visual.weights": args.weights,
        "visual.heads": 8,
        "visual.ffn_dim": 4 * args.embed_dim,
        "visual.preprocess.image_size": args.size,
        "visual.preprocess.crop_pct": 1.0,
        "text.word_dim": 128,
        "visual.position": args.position,
        "visual.layers": args.layers,
    }
    model = mmzoo.create_model("pixels-lite0", **overrides)
    t = time.perf_counter()
    for split in ("train", "dev", "test"):
        ds = KarpathyImages(out / "png" / KARPATHY_NAME, out / "png" / "images", split)
        source = visual_source(model.config.visual.model_dump(mode="json"))
        extract_split(model.visual, ds, out / "feats", split, batch_size=32, progress=False, source=source)
    timings["extract_s"] = time.perf_counter() - t

    train, test = open_split(out / "feats", "train"), open_split(out / "feats", "test")
    model.text.fit(train.captions)
    t = time.perf_counter()
    losses = train_heads(model, train, args.epochs, args.batch, args.lr)
    timings["train_s"] = time.perf_counter() - t

    sims = scores(model, test)
    twins = np.array(
        [-1 if s["twin"] is None else s["twin"] for s in json.loads((out / "png" / "test_scenes.json").read_text())]
    )
    result = {
        "test": recall_metrics(sims),
        "chance": chance_metrics(test.num_images),
        "binding": binding_probe(sims, twins),
        "loss_first_last": [losses[0], losses[-1]],
    }
    # the saved model runs on image files: check the pixel path against the extracted regions
    model.save_pretrained(out / args.name)
    from mmzoo.model import load_folder

    loaded = load_folder(out / args.name)
    test_images = KarpathyImages(out / "png" / KARPATHY_NAME, out / "png" / "images", "test")
    paths = [r.path for r in test_images.records[:16]]
    with torch.no_grad():
        from_pixels = loaded.encode_images(paths).pooled
        from_regions = loaded.encode_images(torch.from_numpy(test.image_features(np.arange(16))[0])).pooled
    result["pixel_vs_region_max_abs_diff"] = float((from_pixels - from_regions).abs().max())
    result["search"] = search_check(loaded, out, args.folder)
    result["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    result["args"] = vars(args)
    print(json.dumps(result, indent=1))
    (out / f"result_{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
