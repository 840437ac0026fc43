"""The shapes generator: determinism, twins that share their bag of words, captions true of their scene only."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from mmzoo.data import PrecomputedDataset, load_scenes, make_scenes, make_shapes
from mmzoo.data.shapes import COLOURS, INVERSE, SHAPES, SIZES, relation
from mmzoo.errors import DataError
from mmzoo.evaluation import binding_probe

TRIPLE = re.compile(rf"\b({'|'.join(SIZES)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})\b")
RELATION = re.compile(rf"\b({'|'.join(INVERSE)})\b")


def holds(caption: str, scene: dict) -> bool:
    """Whether the caption is true of the scene: both named objects exist and stand in the named relation."""
    triples = TRIPLE.findall(caption)
    assert len(triples) == 2 and len(RELATION.findall(caption)) == 1, caption
    found = []
    for size, colour, shape in triples:
        match = [o for o in scene["objects"] if (o["size"], o["colour"], o["shape"]) == (size, colour, shape)]
        if not match:
            return False
        found.append(match[0])
    return relation(found[0], found[1]) == RELATION.findall(caption)[0]


def bag(caption: str) -> Counter:
    return Counter(caption.split())


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 3), (b, 3), (c, 4)):
        make_shapes(out, images=40, seed=seed)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert {"mmzoo_data.json", "test_twins.npy", "train_scenes.json", "dev_ims.npy", "test_caps.txt"} <= set(names)
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "train_ims.npy").read_bytes() != (c / "train_ims.npy").read_bytes()
    assert (a / "test_caps.txt").read_bytes() != (c / "test_caps.txt").read_bytes()


def test_layout_and_manifest(tmp_path):
    manifest = make_shapes(tmp_path, images=40, dev_images=12, test_images=10, seed=1, regions=10, region_dim=32)
    assert {k: (v["images"], v["captions"]) for k, v in manifest["splits"].items()} == {
        "train": (40, 200),
        "dev": (12, 60),
        "test": (20, 100),
    }
    assert manifest["model_overrides"]["text.name"] == "gru" and manifest["twins"] == {"test": "test_twins.npy"}
    assert (manifest["name"], manifest["format"], manifest["seed"]) == ("shapes", "precomp", 1)
    assert (manifest["regions"], manifest["region_dim"], manifest["captions_per_image"]) == (10, 32, 5)
    for split in ("train", "dev", "test"):
        ds = PrecomputedDataset(tmp_path, split)
        ds.validate()
        assert (ds.regions, ds.region_dim) == (10, 32)
        scenes = load_scenes(tmp_path, split)
        assert [c for s in scenes for c in s["captions"]] == ds.captions
        assert (ds.twins is not None) == (split == "test")
        features = ds.image_features(range(ds.num_images))[0]
        assert features.min() >= 0 and (features > 0).mean() > 0.2  # ReLU features, not all dead
    twins = PrecomputedDataset(tmp_path, "test").twins
    assert twins.tolist() == [i + 1 if i % 2 == 0 else i - 1 for i in range(20)]


def test_scenes_are_valid_and_captions_true():
    for split in ("train", "test"):
        for scene in make_scenes(split, 60, seed=2):
            objects = scene["objects"]
            assert 2 <= len(objects) <= 4
            assert len({o["colour"] for o in objects}) == len(objects) == len({o["shape"] for o in objects})
            for i, a in enumerate(objects):
                r = SIZES[a["size"]]
                assert r <= a["x"] <= 1 - r and r <= a["y"] <= 1 - r
                for b in objects[i + 1 :]:
                    assert np.hypot(a["x"] - b["x"], a["y"] - b["y"]) > r + SIZES[b["size"]]
            assert len(scene["captions"]) == 5
            assert all(holds(c, scene) for c in scene["captions"])


def test_twins_share_the_bag_of_words_and_are_told_apart_by_binding_only():
    scenes = make_scenes("test", 80, seed=5)
    assert len(scenes) == 160
    swaps = Counter()
    for scene in scenes:
        twin = scenes[scene["twin"]]
        assert twin["twin"] == scene["id"]
        for own, other in zip(scene["captions"], twin["captions"], strict=True):
            assert own != other and bag(own) == bag(other)
            assert holds(own, scene) and not holds(own, twin)
        # the twin holds the same objects' attributes as a multiset (a bag of objects cannot tell them apart)
        key = lambda s: sorted((o["colour"], o["shape"], o["size"]) for o in s["objects"])  # noqa: E731
        if scene["swap"] != "position":
            assert Counter(o["colour"] for o in scene["objects"]) == Counter(o["colour"] for o in twin["objects"])
        else:
            assert key(scene) == key(twin)
        swaps[scene["swap"]] += 1
    assert set(swaps) == {"colour", "shape", "size", "position"}


def test_a_bag_of_words_scorer_is_at_chance_on_the_twins():
    scenes = make_scenes("test", 50, seed=0)
    vocab = sorted({w for s in scenes for c in s["captions"] for w in c.split()})
    index = {w: i for i, w in enumerate(vocab)}

    def bow(text: str) -> np.ndarray:
        v = np.zeros(len(vocab))
        for w in text.split():
            v[index[w]] += 1
        return v

    texts = np.stack([bow(c) for s in scenes for c in s["captions"]])
    # the best a bag of words can do on the image side: the words of the scene's objects and relations
    images = np.stack([bow(" ".join(s["captions"])) for s in scenes])
    sims = images @ texts.T
    twins = np.array([s["twin"] for s in scenes])
    assert binding_probe(sims, twins) == {"bind_i2t": 50.0, "bind_t2i": 50.0}


def test_twin_features_differ_only_in_object_regions(tmp_path):
    make_shapes(tmp_path, images=20, test_images=10, seed=0)
    ds = PrecomputedDataset(tmp_path, "test")
    scenes = load_scenes(tmp_path, "test")
    for i in range(0, 20, 2):
        a, b = ds.image_features([i, i + 1])[0]
        same = np.all(a == b, axis=1).sum()
        n_objects = len(scenes[i]["objects"])
        assert same >= ds.regions - 2 * n_objects  # background regions are shared
        assert same < ds.regions  # the swapped objects' regions are not


def test_test_split_does_not_depend_on_train_size():
    assert make_scenes("test", 5, seed=7) == make_scenes("test", 5, seed=7)
    assert make_scenes("train", 5, seed=7) == make_scenes("train", 9, seed=7)[:5]


def test_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="at least 8 regions"):
        make_shapes(tmp_path, images=10, regions=4)
    with pytest.raises(DataError, match="at least one image"):
        make_scenes("train", 0)
    with pytest.raises(DataError, match="scene file"):
        load_scenes(tmp_path, "train")


def test_a_scorer_that_binds_is_perfect_on_the_twins():
    scenes = make_scenes("test", 20, seed=0)
    caps = [c for s in scenes for c in s["captions"]]
    sims = np.array([[float(holds(c, s)) for c in caps] for s in scenes])
    twins = np.array([s["twin"] for s in scenes])
    assert binding_probe(sims, twins) == {"bind_i2t": 100.0, "bind_t2i": 100.0}
