"""Shapes as pictures, and the whole pixel-to-score path: render -> extract -> train heads -> score images."""

from __future__ import annotations

import json
import random
from math import comb

import numpy as np
import pytest
import torch

import mmzoo
from mmzoo.cli import main
from mmzoo.data import KarpathyImages, PrecomputedDataset
from mmzoo.data.extract import extract_split
from mmzoo.data.render import KARPATHY_NAME, render_scene, render_shapes
from mmzoo.data.shapes import COLOURS
from mmzoo.errors import DataError
from mmzoo.evaluation import recall_metrics
from mmzoo.model import load_folder


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The test machine is small and shared: one intra-op thread avoids oversubscription (several times faster)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_render_draws_each_object_in_its_colour_and_place():
    scene = {
        "objects": [
            {"colour": "red", "shape": "circle", "size": "big", "x": 0.25, "y": 0.5},
            {"colour": "blue", "shape": "square", "size": "small", "x": 0.75, "y": 0.25},
            {"colour": "green", "shape": "star", "size": "big", "x": 0.75, "y": 0.75},
        ]
    }
    image = np.asarray(render_scene(scene, size=100))
    assert image.shape == (100, 100, 3)
    assert tuple(image[50, 25]) == COLOURS["red"]
    assert tuple(image[25, 75]) == COLOURS["blue"]
    assert tuple(image[75, 75]) == COLOURS["green"]
    assert tuple(image[2, 2]) == (245, 245, 240)  # background
    with pytest.raises(DataError, match="Cannot draw"):
        render_scene({"objects": [{**scene["objects"][0], "shape": "hexagon"}]})


def test_make_data_render_gives_the_same_scenes_as_the_region_features(tmp_path):
    out = tmp_path / "shapes"
    assert main(["make-data", "shapes", "--out", str(out), "--images", "12", "--render", "--image-size", "32"]) == 0
    for split in ("train", "dev", "test"):
        ds = KarpathyImages(out / KARPATHY_NAME, out / "images", split)
        assert ds.captions == (out / f"{split}_caps.txt").read_text().splitlines()
        assert ds.load_image(0).size == (32, 32)
    assert len(list((out / "images" / "test").glob("*.png"))) == 20  # 10 scenes and their twins


def expected_chance_rsum(images: int, cpi: int = 5) -> float:
    """rsum of random scores: t2i R@k = k/N; i2t R@k = P(one of cpi positives among the top k of N*cpi)."""
    n = images * cpi
    i2t = sum(100 * (1 - comb(n - cpi, k) / comb(n, k)) for k in (1, 5, 10))
    t2i = sum(100 * min(k / images, 1.0) for k in (1, 5, 10))
    return i2t + t2i


def train_heads(model, data: PrecomputedDataset, epochs: int, batch: int = 32) -> None:
    """One random caption per image per step, so no batch holds an image twice."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    features = torch.from_numpy(data.image_features(np.arange(data.num_images))[0])
    rng = random.Random(0)
    model.train()
    for epoch in range(epochs):
        model.loss_fn.hardest_negative = epoch >= 2
        order = rng.sample(range(data.num_images), data.num_images)
        for start in range(0, len(order), batch):
            ids = order[start : start + batch]
            captions = [data.captions[i * 5 + rng.randrange(5)] for i in ids]
            loss = model(features[ids], captions).loss
            opt.zero_grad()
            loss.backward()
            opt.step()


@pytest.mark.slow
def test_pretrained_backbone_learns_rendered_shapes_from_pixels(tmp_path):
    render_shapes(tmp_path / "png", images=80, seed=0, size=64)
    torch.manual_seed(0)
    model = mmzoo.create_model(
        "pixels-lite0",
        embed_dim=64,
        **{
            "visual.heads": 4,
            "visual.ffn_dim": 128,
            "visual.preprocess.image_size": 64,
            "visual.preprocess.crop_pct": 1.0,
            "text.word_dim": 64,
        },
    )
    for split in ("train", "test"):
        ds = KarpathyImages(tmp_path / "png" / KARPATHY_NAME, tmp_path / "png" / "images", split)
        extract_split(model.visual, ds, tmp_path / "feats", split, batch_size=40, progress=False)
    train, test = PrecomputedDataset(tmp_path / "feats", "train"), PrecomputedDataset(tmp_path / "feats", "test")
    model.text.fit(train.captions)
    train_heads(model, train, epochs=12)

    model.save_pretrained(tmp_path / "model")
    loaded = load_folder(tmp_path / "model")
    paths = [
        r.path for r in KarpathyImages(tmp_path / "png" / KARPATHY_NAME, tmp_path / "png" / "images", "test").records
    ]
    with torch.no_grad():
        images = loaded.encode_images(paths)  # straight from the PNG files
        from_regions = loaded.encode_images(torch.from_numpy(test.image_features(np.arange(len(paths)))[0]))
        sims = loaded.similarity(images, loaded.encode_texts(test.captions))
    torch.testing.assert_close(images.pooled, from_regions.pooled, atol=1e-5, rtol=1e-4)
    metrics = recall_metrics(sims)
    chance = expected_chance_rsum(test.num_images)  # 40 images: about 83
    assert metrics["rsum"] > 1.8 * chance, (metrics, chance)
    summary = json.dumps({k: round(v, 1) for k, v in metrics.items()})
    print(f"rendered shapes, {test.num_images} test images: {summary}; chance rsum {chance:.1f}")
