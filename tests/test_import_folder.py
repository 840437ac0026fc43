"""Importing folders of per-image .npy / .npz files (cocobu_att + cocobu_box, TERAN's bu_att, extract_feature_to_npz)."""

from __future__ import annotations

import numpy as np
import pytest

from mmzoo.cli import main
from mmzoo.data.importing import FolderSource, import_features, read_karpathy_captions
from mmzoo.errors import DataError
from tests._import_sources import expected_split, make_images, write_cocobu, write_karpathy

SPLITS = {"train": [9, 25, 30], "restval": [36], "val": [49, 61], "test": [73, 77]}
IDS = [i for ids in SPLITS.values() for i in ids]


def test_npz_folder_with_box_folder_bit_for_bit(tmp_path):
    images = make_images(IDS, regions=(10, 40), dim=24, seed=1)
    att, box = write_cocobu(tmp_path, images)
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", SPLITS)
    out = tmp_path / "out"
    manifest = import_features(
        FolderSource([att], key="feat", boxes=box), read_karpathy_captions(karpathy), out, progress=False
    )
    k_max = max(len(f) for f, _b in images.values())
    assert manifest["source_format"] == "npz-folder" and manifest["regions"] == k_max
    assert manifest["region_policy"].startswith("adaptive-")
    for split, ids in (("train", [9, 25, 30, 36]), ("dev", [49, 61]), ("test", [73, 77])):
        feats, boxes, counts = expected_split(images, ids, k_max)
        assert np.load(out / f"{split}_ims.npy").tobytes() == feats.tobytes()
        assert np.load(out / f"{split}_boxes.npy").tobytes() == boxes.tobytes()
        assert np.load(out / f"{split}_counts.npy").tolist() == counts.tolist()


def test_npy_folder_without_boxes_and_default_key(tmp_path):
    images = make_images(IDS, regions=36, dim=16, seed=2)
    folder = tmp_path / "feats"
    folder.mkdir()
    for image_id, (features, _boxes) in images.items():
        np.save(folder / f"{image_id:012d}.npy", features)  # zero-padded names match cocoid too
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", SPLITS)
    out = tmp_path / "out"
    manifest = import_features(FolderSource([folder]), read_karpathy_captions(karpathy), out, progress=False)
    assert manifest["boxes"] is False and not (out / "test_boxes.npy").exists()
    assert manifest["region_policy"] == "fixed-36"
    feats, _boxes, _counts = expected_split(images, [73, 77], 36)
    assert np.load(out / "test_ims.npy").tobytes() == feats.tobytes()
    assert (out / "test_ids.txt").read_text().split() == ["000000000073", "000000000077"]


def test_extract_feature_to_npz_layout_transposed_with_bbox(tmp_path):
    """bottom-up-attention's extract_feature_to_npz.py: x = features.T (D x k), bbox (k x 4), num_bbox, sizes."""
    images = make_images(IDS, regions=(10, 20), dim=12, seed=4)
    folder = tmp_path / "npz"
    folder.mkdir()
    for image_id, (features, boxes) in images.items():
        np.savez_compressed(
            folder / f"{image_id}.npz", x=features.T, bbox=boxes, num_bbox=len(boxes), image_h=480, image_w=640
        )
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", SPLITS)
    out = tmp_path / "out"
    argv = ["import-features", "npy-folder", str(folder), "--karpathy", str(karpathy), "--out", str(out)]
    assert main([*argv, "--key", "x", "--box-key", "bbox", "--transpose", "--no-progress"]) == 0
    k_max = max(len(f) for f, _b in images.values())
    feats, boxes, _counts = expected_split(images, [49, 61], k_max)
    assert np.load(out / "dev_ims.npy").tobytes() == feats.tobytes()
    assert np.load(out / "dev_boxes.npy").tobytes() == boxes.tobytes()


def test_npz_with_several_arrays_needs_a_key(tmp_path):
    folder = tmp_path / "npz"
    folder.mkdir()
    np.savez(folder / "9.npz", a=np.zeros((2, 3), np.float32), b=np.zeros((2, 3), np.float32))
    with pytest.raises(DataError, match=r"npz/9.npz holds arrays a, b: say which one with --key"):
        FolderSource([folder]).scan()
    with pytest.raises(DataError, match=r"has no array 'feat'; it holds a, b"):
        FolderSource([folder], key="feat").scan()


def test_folder_errors_name_the_file(tmp_path):
    images = make_images([9, 25], regions=5, dim=8)
    att, box = write_cocobu(tmp_path, images)
    (box / "25.npy").unlink()
    with pytest.raises(DataError, match=r"cocobu_att/25.npz has no box file .*25.npy"):
        FolderSource([att], boxes=box).scan()
    np.save(box / "25.npy", np.zeros((4, 4), np.float32))
    with pytest.raises(DataError, match=r"25.npy: boxes have shape \(4, 4\); the features have 5 regions"):
        FolderSource([att], boxes=box).scan()
    (att.parent / "ints").mkdir()
    np.save(att.parent / "ints" / "9.npy", np.zeros((3, 3), np.int32))
    with pytest.raises(DataError, match=r"ints/9.npy: features have dtype int32"):
        FolderSource([att.parent / "ints"]).scan()  # found by the scan, before anything is written
    (att / "30.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"Cannot read cocobu_att/30.npz as an .npz archive"):
        FolderSource([att]).scan()
