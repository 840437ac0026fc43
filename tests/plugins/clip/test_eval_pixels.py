"""Evaluation from pixels: ``mmzoo eval ALIAS --images ROOT --karpathy FILE --split test`` (and ``--csv``), the
same protocol (and numbers) as scoring the encoded images by hand, 5-fold, a shortlist from another model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import mmzoo
from mmzoo import registry
from mmzoo.cli import main
from mmzoo.data import open_image_split
from mmzoo.evaluation import METRIC_KEYS, recall_metrics
from tests.hub_server import fake_hub  # noqa: F401  (a fixture)
from tests.plugins.clip.checkpoints import hub_files, write_clip, write_siglip

WORDS = ["red", "blue", "green", "small", "large", "circle", "square", "dog", "park", "street"]


@pytest.fixture
def karpathy(tmp_path):
    """Six images (two in a COCO-style sub-folder) with five captions each: four test images, two train."""
    rng = np.random.default_rng(3)
    root = tmp_path / "images"
    (root / "val2014").mkdir(parents=True)
    entries = []
    for i in range(6):
        sub = "val2014" if i % 3 == 0 else ""
        Image.fromarray(rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)).save(root / sub / f"im{i}.jpg")
        sentences = [{"raw": " ".join(rng.choice(WORDS, 4))} for _ in range(5)]
        entries.append(
            {"filename": f"im{i}.jpg", "filepath": sub, "split": "test" if i < 5 else "train", "sentences": sentences}
        )
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": entries}))
    return root, tmp_path / "dataset_coco.json"


@pytest.fixture
def hub_aliases(tmp_path, fake_hub, monkeypatch):  # noqa: F811
    for alias, write in (("siglip-base-patch16-224", write_siglip), ("clip-vit-base-patch32", write_clip)):
        entry = registry.pretrained.get(alias)
        monkeypatch.setitem(entry.weights.options, "embed_dim", 32)
        fake_hub.create_repo(entry.weights.repo)
        fake_hub.commit(entry.weights.repo, hub_files(write(tmp_path / alias)))


def test_eval_from_pixels_gives_the_recalls_of_the_encoded_images(tmp_path, karpathy, hub_aliases, capsys):
    root, split_file = karpathy
    out = tmp_path / "metrics.json"
    args = ["eval", "siglip-base-patch16-224", "--images", str(root), "--karpathy", str(split_file)]
    assert main([*args, "--split", "test", "--json", str(out), "--device", "cpu", "--batch-size", "2"]) == 0
    metrics = json.loads(out.read_text())
    assert set(METRIC_KEYS) <= set(metrics)
    split = open_image_split(root, karpathy=split_file, split="test")
    assert split.num_images == 5 and len(split.captions) == 25
    model = mmzoo.from_pretrained("siglip-base-patch16-224")
    with torch.no_grad():
        sims = model.similarity(model.encode_images(split.load_images(range(5))), model.encode_texts(split.captions))
    expected = recall_metrics(sims, 5)
    assert metrics["rsum"] == pytest.approx(expected["rsum"], abs=1e-4)
    assert "test split: 5 images, 25 captions" in capsys.readouterr().out

    assert main([*args, "--split", "test", "--fold5", "--device", "cpu", "--no-progress"]) == 0
    assert "5-fold" in capsys.readouterr().out
    rerank = ["--shortlist", "clip-vit-base-patch32", "--rerank", "2", "--json", str(out), "--no-progress"]
    assert main([*args, "--split", "test", "--device", "cpu", *rerank]) == 0
    reranked = json.loads(out.read_text())
    assert reranked["rerank"] == 2 and "i2t_shortlist" in reranked and "t2i_shortlist" in reranked


def test_eval_from_a_csv_and_bad_image_data_are_named_errors(tmp_path, karpathy, hub_aliases, capsys):
    root, split_file = karpathy
    rows = ["image,caption"] + [f"val2014/im0.jpg,a red circle {k}" for k in range(5)]
    rows += [f"im1.jpg,a blue square {k}" for k in range(5)]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    base = ["eval", "clip-vit-base-patch32", "--images", str(root), "--device", "cpu", "--no-progress"]
    assert main([*base, "--csv", str(tmp_path / "pairs.csv")]) == 0
    assert "2 images, 10 captions" in capsys.readouterr().out
    assert main([*base, "--karpathy", str(split_file), "--csv", str(tmp_path / "pairs.csv")]) == 2
    assert "not both" in capsys.readouterr().err
    assert main([*base[:2], "--device", "cpu"]) == 2
    assert "--data DIR" in capsys.readouterr().err
    (root / "val2014" / "im3.jpg").unlink()
    assert main([*base, "--karpathy", str(split_file)]) == 2
    assert "missing" in capsys.readouterr().err
    (tmp_path / "short.csv").write_text("image,caption\nim1.jpg,a dog\n")
    assert main([*base, "--csv", str(tmp_path / "short.csv")]) == 2
    assert "fewer than 5 captions" in capsys.readouterr().err


def test_a_region_model_on_images_is_a_named_error(karpathy):
    from mmzoo.evaluation import evaluate
    from tests.conftest import tiny_model

    root, split_file = karpathy
    with pytest.raises(mmzoo.errors.InputError, match="takes region features"):
        evaluate(tiny_model("vsepp"), open_image_split(root, karpathy=split_file, split="test"), progress=False)
