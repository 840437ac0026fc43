"""SGRAF scoring: mmzoo's engine against a faithful per-caption loop like their evaluation, same weights.

Their ``shard_attn_scores`` cuts the (images x captions) matrix into 100 x 100 shards and calls
``EncoderSimilarity.forward`` on each, which loops over the shard's captions in Python (all the shard's images
at once per caption). The loop here is tests/reference/sgraf_reference.py, which mirrors their code (and was
checked against it). mmzoo's engine (``mmzoo.scoring.fused_matrix``) scores blocks of images x captions with
batched products, the Gram-matrix normalisation of the attended vectors and, for SGR, the folded query-key
map and a last step on the global node alone (plugins/sgraf/fusion.py).

Sizes are the paper's: d 1024, s 256, 36 regions, captions of 10-20 tokens (Flickr30K captions average ~12
words, plus <start>/<end>). Both run in float32 on one thread; every ratio is measured within one repeat
(loop and engine back to back) and the median over repeats is reported, with the load average before and
after: the machine is shared, so absolute times are only indicative.

    python benchmarks/sgraf_scoring.py                     # writes benchmarks/results/sgraf_scoring.json
    python benchmarks/sgraf_scoring.py --images 100 --captions 500 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from _common import machine, median, timed  # noqa: E402

import mmzoo  # noqa: E402
from mmzoo.scoring import fused_matrix  # noqa: E402
from mmzoo_plugins.sgraf.fusion import SAFFusion, SGRFusion  # noqa: E402
from mmzoo_plugins.sgraf.ops import l2norm  # noqa: E402
from tests.reference import sgraf_reference as ref  # noqa: E402

D, SIM, REGIONS = 1024, 256, 36


def their_loop(
    sim_enc: torch.nn.Module, images: torch.Tensor, captions: torch.Tensor, lengths: list[int]
) -> torch.Tensor:
    """shard_attn_scores: 100 x 100 shards, each through the per-caption loop of EncoderSimilarity.forward."""
    out = torch.zeros(len(images), len(captions))
    with torch.no_grad():
        for i in range(0, len(images), 100):
            for j in range(0, len(captions), 100):
                out[i : i + 100, j : j + 100] = sim_enc(
                    images[i : i + 100], captions[j : j + 100], lengths[j : j + 100]
                )
    return out


def inputs(n_images: int, n_captions: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    regions = l2norm(torch.randn(n_images, REGIONS, D, generator=g))
    lengths = torch.randint(10, 21, (n_captions,), generator=g)
    words = l2norm(torch.randn(n_captions, int(lengths.max()), D, generator=g))
    mask = torch.arange(words.shape[1])[None] < lengths[:, None]
    words = words.masked_fill(~mask[..., None], 0.0)
    images = mmzoo.plugin.Fragments(regions, torch.ones(n_images, REGIONS, dtype=torch.bool), l2norm(regions.mean(1)))
    texts = mmzoo.plugin.Fragments(words, mask, l2norm(words.sum(1)))
    return images, texts, lengths.tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--captions", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sgraf_scoring.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, texts, lengths = inputs(args.images, args.captions)
    load_before = os.getloadavg()
    results = {}
    for module, cls in (("SGR", SGRFusion), ("SAF", SAFFusion)):
        torch.manual_seed(0)
        fusion = cls(cls.Config(), mmzoo.plugin.BuildContext(embed_dim=D)).eval()
        theirs = ref.EncoderSimilarity(D, SIM, module, 3).eval()
        theirs.load_state_dict(fusion.state_dict())
        runs, box = [], {}

        def loop(theirs=theirs, box=box):
            box["loop"] = their_loop(theirs, images.features, texts.features, lengths)

        def engine(fusion=fusion, box=box):
            box["engine"] = fused_matrix(fusion, images, texts)

        for _ in range(args.repeats):
            t_loop, t_engine = timed(loop), timed(engine)
            runs.append({"loop_s": t_loop, "engine_s": t_engine, "ratio": t_loop / t_engine})
        diff = float((box["loop"] - box["engine"]).abs().max())
        results[module.lower()] = {
            "loop_s": median([r["loop_s"] for r in runs]),
            "engine_s": median([r["engine_s"] for r in runs]),
            "speedup": median([r["ratio"] for r in runs]),
            "max_abs_diff": diff,
            "score_std": float(box["loop"].std()),
            "runs": runs,
        }
        print(
            f"{module}: loop {results[module.lower()]['loop_s']:.2f} s, engine {results[module.lower()]['engine_s']:.2f} s, "
            f"x{results[module.lower()]['speedup']:.2f} (max |diff| {diff:.1e})"
        )
    report = {
        "benchmark": "sgraf_scoring",
        "command": f"python benchmarks/sgraf_scoring.py --images {args.images} --captions {args.captions} "
        f"--repeats {args.repeats} --threads {args.threads}",
        "sizes": {
            "images": args.images,
            "captions": args.captions,
            "d": D,
            "sim_dim": SIM,
            "regions": REGIONS,
            "caption_tokens": "10-20",
            "block_pairs": SGRFusion.Config().pairs_per_block,
        },
        "threads": args.threads,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "machine": machine(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
