"""Importing bottom-up-attention TSV shards (generate_tsv.py's format) with Karpathy captions."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mmzoo.cli import main
from mmzoo.data import DataManifest, open_split
from mmzoo.data.importing import TsvSource, feature_facts, import_features, read_karpathy_captions
from mmzoo.data.importing.writer import sha256_file
from tests._import_sources import (
    captions_of,
    expected_split,
    make_images,
    write_generate_tsv,
    write_karpathy,
    write_lxmert_tsv,
)

SPLIT_FILES = ["boxes.npy", "caps.txt", "counts.npy", "ids.txt", "ims.npy"]
SPLITS = {"train": [9, 25, 30, 34], "restval": [36, 42], "val": [49, 61], "test": [73, 74, 77]}


def coco_files(tmp_path, *, regions=36, dim=32, python3_bytes=False, seed=0):
    """Two shards of one extraction (ids shuffled across them, as generate_tsv.py's GPUs split them)."""
    ids = [i for split in SPLITS.values() for i in split]
    images = make_images(ids, dim=dim, regions=regions, seed=seed)
    order = np.random.default_rng(seed).permutation(ids).tolist()
    half = len(order) // 2
    shards = [tmp_path / "feats.tsv.0", tmp_path / "feats.tsv.1"]
    write_generate_tsv(shards[0], {i: images[i] for i in order[:half]}, python3_bytes=python3_bytes)
    write_generate_tsv(shards[1], {i: images[i] for i in order[half:]}, python3_bytes=python3_bytes)
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", SPLITS)
    return images, shards, karpathy


def check_split(out, split, images, ids, regions):
    feats, boxes, counts = expected_split(images, ids, regions)
    ims = np.load(out / f"{split}_ims.npy", mmap_mode="r")
    assert ims.dtype == np.float32 and ims.shape == feats.shape
    assert ims.tobytes() == feats.tobytes()  # bit for bit, padding rows zero
    assert np.load(out / f"{split}_boxes.npy").tobytes() == boxes.tobytes()
    assert np.load(out / f"{split}_counts.npy").tolist() == counts.tolist()
    assert (out / f"{split}_ids.txt").read_text().split() == [str(i) for i in ids]
    assert (out / f"{split}_caps.txt").read_text().splitlines() == [c for i in ids for c in captions_of(i)]


def test_fixed_36_two_shards_bit_for_bit(tmp_path):
    images, shards, karpathy = coco_files(tmp_path)
    out = tmp_path / "coco"
    manifest = import_features(
        TsvSource(shards), read_karpathy_captions(karpathy), out, extractor="BUTD R101 VG 36", progress=False
    )
    check_split(out, "train", images, SPLITS["train"] + SPLITS["restval"], 36)  # restval folded into train
    check_split(out, "dev", images, SPLITS["val"], 36)
    check_split(out, "test", images, SPLITS["test"], 36)
    assert manifest == json.loads((out / "mmzoo_data.json").read_text())
    assert manifest["format"] == "precomp" and manifest["source_format"] == "butd-tsv"
    assert (manifest["regions"], manifest["region_dim"], manifest["region_policy"]) == (36, 32, "fixed-36")
    assert manifest["extractor"] == "BUTD R101 VG 36" and manifest["normalisation"] == "none"
    assert manifest["captions_per_image"] == 5 and manifest["boxes"] is True
    assert manifest["splits"]["train"]["images"] == 6 and manifest["splits"]["dev"]["captions"] == 10
    assert manifest["source"]["files"] == ["feats.tsv.0", "feats.tsv.1"] and manifest["source"]["match"] == "cocoid"
    written = sorted(p.name for p in out.iterdir() if p.name != "mmzoo_data.json")
    digests = {name: sha for split in manifest["splits"].values() for name, sha in split["files"].items()}
    assert sorted(digests) == written  # every file written is hashed, nothing else is left
    assert all(digests[name] == sha256_file(out / name) for name in written)
    assert sorted(manifest["splits"]["dev"]["files"]) == [f"dev_{k}" for k in SPLIT_FILES]
    assert feature_facts(DataManifest.model_validate(manifest))["region_policy"] == "fixed-36"  # the core's schema
    test = open_split(out, "test")
    assert test.num_images == 3 and test.regions == 36 and test.region_dim == 32
    features, mask = test.image_features([2])
    assert np.array_equal(features[0], images[77][0]) and mask.all()


def test_adaptive_boxes_counts_and_padding(tmp_path):
    images, shards, karpathy = coco_files(tmp_path, regions=(10, 100), seed=3)
    out = tmp_path / "coco"
    manifest = import_features(TsvSource(shards), read_karpathy_captions(karpathy), out, progress=False)
    k_max = max(len(f) for f, _b in images.values())
    counts = sorted(len(f) for f, _b in images.values())
    assert manifest["regions"] == k_max
    assert manifest["region_policy"] == f"adaptive-{counts[0]}-{counts[-1]}"
    for split, ids in (
        ("train", SPLITS["train"] + SPLITS["restval"]),
        ("dev", SPLITS["val"]),
        ("test", SPLITS["test"]),
    ):
        check_split(out, split, images, ids, k_max)
    train = open_split(tmp_path / "coco", "train")  # the data door reads the counts as masks
    features, mask = train.image_features(range(train.num_images))
    ids = SPLITS["train"] + SPLITS["restval"]
    assert features[mask].tobytes() == np.concatenate([images[i][0] for i in ids]).tobytes()
    assert mask.sum(axis=1).tolist() == [len(images[i][0]) for i in ids]
    assert mask.shape == (6, k_max) and all(mask[r, : len(images[i][0])].all() for r, i in enumerate(ids))
    item = train[5 * 2]  # the first caption of the third image
    assert np.array_equal(item[0][item[1]], images[ids[2]][0])
    dev = manifest["splits"]["dev"]
    assert (dev["regions_min"], dev["regions_max"]) == tuple(
        sorted((len(images[49][0]), len(images[61][0])))[i] for i in (0, -1)
    )


def test_restval_skip_and_split_choice(tmp_path):
    images, shards, karpathy = coco_files(tmp_path)
    out = tmp_path / "coco"
    assert list(read_karpathy_captions(karpathy, splits=("val",)).splits) == ["dev"]  # Karpathy's name works
    table = read_karpathy_captions(karpathy, restval="skip", splits=("train", "test"))
    manifest = import_features(TsvSource(shards), table, out, progress=False)
    check_split(out, "train", images, SPLITS["train"], 36)
    assert sorted(manifest["splits"]) == ["test", "train"] and not (out / "dev_ims.npy").exists()
    assert manifest["source"]["skipped_rows"] == 4  # 2 restval + 2 val rows: known images, left out on request


def test_rows_longer_than_the_csv_field_limit(tmp_path):
    """One 36 x 1024 row holds 196,608 base64 characters per field: over csv's default 131,072."""
    images = make_images([1, 2], dim=1024, regions=36)
    shard = write_generate_tsv(tmp_path / "big.tsv", images)
    with open(shard, newline="") as handle, pytest.raises(csv.Error, match="field larger than field limit"):
        list(csv.DictReader(handle, delimiter="\t", fieldnames=["a", "b", "c", "d", "e", "f"]))
    karpathy = write_karpathy(tmp_path / "k.json", {"train": [1], "test": [2]})
    import_features(TsvSource([shard]), read_karpathy_captions(karpathy), tmp_path / "out", progress=False)
    check_split(tmp_path / "out", "train", images, [1], 36)


def test_python3_bytes_fields_are_read(tmp_path):
    images, shards, karpathy = coco_files(tmp_path, python3_bytes=True)
    assert shards[0].read_bytes().split(b"\t")[4].startswith(b"b'")
    import_features(TsvSource(shards), read_karpathy_captions(karpathy), tmp_path / "out", progress=False)
    check_split(tmp_path / "out", "test", images, SPLITS["test"], 36)


def test_lxmert_ten_column_rows_with_coco_names(tmp_path):
    ids = [i for split in SPLITS.values() for i in split]
    images = make_images(ids, regions=36, dim=16)
    named = {f"COCO_val2014_{i:012d}": images[i] for i in ids}
    shard = write_lxmert_tsv(tmp_path / "val2014_obj36.tsv", named)
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", SPLITS)
    manifest = import_features(TsvSource([shard]), read_karpathy_captions(karpathy), tmp_path / "out", progress=False)
    assert manifest["source_format"] == "lxmert-tsv"
    feats, _boxes, _counts = expected_split(images, SPLITS["test"], 36)
    assert np.load(tmp_path / "out" / "test_ims.npy").tobytes() == feats.tobytes()
    assert (tmp_path / "out" / "test_ids.txt").read_text().split()[0] == "COCO_val2014_000000000073"


def test_flickr_matches_the_file_stem(tmp_path):
    splits = {"train": [1000092795, 10002456], "val": [1000268201], "test": [1000344755]}
    ids = [i for s in splits.values() for i in s]
    images = make_images(ids, regions=36, dim=8)
    shard = write_generate_tsv(tmp_path / "f30k.tsv", images)
    karpathy = write_karpathy(tmp_path / "dataset_flickr30k.json", splits, dataset="flickr30k", extra_captions=2)
    table = read_karpathy_captions(karpathy)
    assert table.match == "filename" and table.dataset == "flickr30k"
    import_features(TsvSource([shard]), table, tmp_path / "out", progress=False)
    check_split(tmp_path / "out", "train", images, splits["train"], 36)  # the first 5 of 7 captions


def test_command_line(tmp_path, capsys):
    images, shards, karpathy = coco_files(tmp_path)
    out = tmp_path / "cli"
    argv = ["import-features", "tsv", *map(str, shards), "--karpathy", str(karpathy), "--out", str(out)]
    assert main([*argv, "--extractor", "BUTD R101 VG 36", "--normalisation", "none", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "train" in printed and "fixed-36" in printed and "BUTD R101 VG 36" in printed
    check_split(out, "dev", images, SPLITS["val"], 36)
    before = (out / "train_ims.npy").stat().st_mtime_ns
    assert main([*argv, "--extractor", "renamed", "--no-progress"]) == 0  # complete: only the label changes
    assert (out / "train_ims.npy").stat().st_mtime_ns == before
    assert json.loads((out / "mmzoo_data.json").read_text())["extractor"] == "renamed"
    assert main(["import-features", "tsv", str(shards[0]), "--karpathy", str(karpathy), "--out", str(out)]) == 2
    assert "no features" in capsys.readouterr().err  # one shard alone lacks images: a named error, exit 2
    assert main([*argv, "--key", "x"]) == 2  # an option of another format: a named error
