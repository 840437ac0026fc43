"""MMCA over frozen towers, the user's path: render shapes, save a tower, cache its outputs with
``mmzoo extract-features``, ``mmzoo train --model siglip-mmca`` (only the fusion trains), then evaluate the run from
the images, reranking its own tower's shortlist."""

from __future__ import annotations

import json

import pytest
import torch

import mmzoo
from mmzoo.cli import main
from mmzoo.data import open_split
from mmzoo_plugins.clip.towers import save_random_tower


def small_siglip(size: int = 32) -> dict:
    layer = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4}
    return {
        "model_type": "siglip",
        "vision_config": {**layer, "image_size": size, "patch_size": 16},
        "text_config": {**layer, "vocab_size": 128, "max_position_embeddings": 64},
    }


@pytest.mark.slow
def test_mmca_siglip_trains_from_images_over_cached_tower_outputs(tmp_path, capsys):
    shapes = tmp_path / "shapes"
    assert main(["make-data", "shapes", "--out", str(shapes), "--images", "16", "--render", "--image-size", "32"]) == 0
    tower = save_random_tower(tmp_path / "tower", small_siglip(), corpus=open_split(shapes, "train").captions)
    sources = {"visual.source": str(tower), "text.source": str(tower), "embed_dim": 32}
    extractor = mmzoo.create_model("siglip", **sources).save_pretrained(tmp_path / "extractor")
    feats, karpathy = tmp_path / "feats", shapes / "dataset_shapes.json"
    code = main(["extract-features", "--model", str(extractor), "--karpathy", str(karpathy), "--images",
                 str(shapes / "images"), "--out", str(feats), "--splits", "train", "dev", "test"])  # fmt: skip
    assert code == 0
    rows = open_split(feats, "train")
    assert rows.region_dim == 32 and rows.regions == 1 + 4  # the pooled row, then 2 x 2 patches

    sets = [f"{k}={json.dumps(v)}" for k, v in sources.items()]
    sets += ["fusion.heads=4", "fusion.ffn_dim=64", "fusion.channels=32", "text.cache_captions=1000"]
    sets += ["training.epochs=1", "training.batch_size=16", "training.device=cpu"]
    run = tmp_path / "run"
    args = ["train", "--model", "siglip-mmca", "--data", str(feats), "--out", str(run), "--no-progress"]
    assert main([*args, *(x for s in sets for x in ("--set", s))]) == 0
    model = mmzoo.from_pretrained(f"local-dir:{run / 'best'}")
    assert not any(p.requires_grad for p in model.visual.vision_model.parameters())
    trained = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"fusion"}, "only the fusion block trains over frozen towers"
    capsys.readouterr()
    out = tmp_path / "metrics.json"
    assert main(["eval", str(run), "--images", str(shapes / "images"), "--karpathy", str(karpathy), "--split",
                 "test", "--rerank", "5", "--json", str(out), "--no-progress", "--device", "cpu"]) == 0  # fmt: skip
    metrics = json.loads(out.read_text())
    assert metrics["rerank"] == 5 and "t2i_shortlist" in metrics and torch.isfinite(torch.tensor(metrics["rsum"]))
