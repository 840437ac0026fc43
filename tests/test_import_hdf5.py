"""Importing HDF5 features: one array with an id index (bottom-up-attention-vqa, BAN) or one dataset per image."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from mmzoo.cli import main
from mmzoo.data.importing import Hdf5Source, import_features, read_id_index, read_karpathy_captions
from mmzoo.errors import DataError
from tests._import_sources import expected_split, make_images, write_karpathy

h5py = pytest.importorskip("h5py")

SPLITS = {"train": [9, 25, 30], "restval": [36], "val": [49, 61], "test": [73, 77]}
IDS = [i for ids in SPLITS.values() for i in ids]


def vqa_converter_files(tmp_path, images):
    """As detection_features_converter.py: train36.hdf5 (image_features, image_bb, spatial_features) + imgid2idx.pkl."""
    order = np.random.default_rng(5).permutation(list(images)).tolist()
    dim = next(iter(images.values()))[0].shape[1]
    path = tmp_path / "train36.hdf5"
    with h5py.File(path, "w") as h:
        feats = h.create_dataset("image_features", (len(order), 36, dim), "f")
        bb = h.create_dataset("image_bb", (len(order), 36, 4), "f")
        h.create_dataset("spatial_features", (len(order), 36, 6), "f")
        indices = {}
        for counter, image_id in enumerate(order):
            indices[image_id] = counter
            feats[counter], bb[counter] = images[image_id]
    index = tmp_path / "train36_imgid2idx.pkl"
    index.write_bytes(pickle.dumps(indices, protocol=0))  # cPickle.dump's default protocol, as Python 2 wrote it
    return path, index


def check(out, images, regions, splits=(("train", [9, 25, 30, 36]), ("dev", [49, 61]), ("test", [73, 77]))):
    for split, ids in splits:
        feats, boxes, counts = expected_split(images, ids, regions)
        assert np.load(out / f"{split}_ims.npy").tobytes() == feats.tobytes()
        assert np.load(out / f"{split}_counts.npy").tolist() == counts.tolist()
        if (out / f"{split}_boxes.npy").exists():
            assert np.load(out / f"{split}_boxes.npy").tobytes() == boxes.tobytes()


def test_array_layout_with_pickled_index(tmp_path):
    images = make_images(IDS, regions=36, dim=20)
    path, index = vqa_converter_files(tmp_path, images)
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", SPLITS)
    manifest = import_features(
        Hdf5Source([path], index=[index]), read_karpathy_captions(karpathy), tmp_path / "out", progress=False
    )
    assert manifest["source_format"] == "hdf5" and manifest["boxes"] is True
    assert manifest["source"]["layouts"] == ["array"] and manifest["region_policy"] == "fixed-36"
    check(tmp_path / "out", images, 36)


def test_command_line_with_index(tmp_path):
    images = make_images(IDS, regions=36, dim=8)
    path, index = vqa_converter_files(tmp_path, images)
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", SPLITS)
    out = tmp_path / "cli"
    argv = ["import-features", "hdf5", str(path), "--index", str(index), "--karpathy", str(karpathy)]
    assert main([*argv, "--out", str(out), "--extractor", "BUTD 36", "--no-progress"]) == 0
    check(out, images, 36)
    assert main([*argv, "--out", str(tmp_path / "o2"), "--boxes", "x"]) == 2  # a folder option: named error


def test_array_layout_small_blocks(tmp_path, monkeypatch):
    """Rows are read in blocks; a block boundary inside the file changes nothing."""
    from mmzoo.data.importing import hdf5 as hdf5_module

    monkeypatch.setattr(hdf5_module, "BLOCK_BYTES", 1)  # one row per read
    images = make_images(IDS, regions=36, dim=8)
    path, index = vqa_converter_files(tmp_path, images)
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", SPLITS)
    import_features(Hdf5Source([path], index=[index]), read_karpathy_captions(karpathy), tmp_path / "o", progress=False)
    check(tmp_path / "o", images, 36)


def test_flat_adaptive_with_pos_boxes_and_id_dataset(tmp_path):
    """BAN-style adaptive features: flat (total, D) rows, pos_boxes [start, end), ids stored in the file."""
    images = make_images(IDS, regions=(10, 30), dim=16, seed=7)
    flat = np.concatenate([images[i][0] for i in IDS])
    flat_boxes = np.concatenate([images[i][1] for i in IDS])
    ends = np.cumsum([len(images[i][0]) for i in IDS])
    pos = np.stack([ends - [len(images[i][0]) for i in IDS], ends], axis=1)
    pos = np.concatenate([pos, np.zeros((2, 2), np.int64)]).astype(np.int32)  # as BAN: unmatched ids stay [0, 0]
    path = tmp_path / "trainval.hdf5"
    with h5py.File(path, "w") as h:
        h["image_features"], h["image_bb"], h["pos_boxes"] = flat, flat_boxes, pos
        h["image_ids"] = np.array([str(i).encode() for i in IDS])
    with pytest.raises(DataError, match=r"image_features\[3\] \(image 36\): pos_boxes gives rows \[5, 2\)"):
        broken = tmp_path / "broken.hdf5"
        with h5py.File(broken, "w") as h:
            h["image_features"], h["pos_boxes"] = flat, np.where(np.arange(len(pos))[:, None] == 3, [[5, 2]], pos)
            h["image_ids"] = np.array([str(i).encode() for i in IDS])
        Hdf5Source([broken]).scan()
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", SPLITS)
    manifest = import_features(Hdf5Source([path]), read_karpathy_captions(karpathy), tmp_path / "out", progress=False)
    k_max = max(len(f) for f, _b in images.values())
    assert manifest["regions"] == k_max and manifest["region_policy"].startswith("adaptive-")
    check(tmp_path / "out", images, k_max)


def test_padded_array_with_num_boxes(tmp_path):
    images = make_images(IDS, regions=(3, 9), dim=8, seed=8)
    feats, boxes, counts = expected_split(images, IDS, 9)
    path = tmp_path / "padded.h5"
    with h5py.File(path, "w") as h:
        h["features"], h["boxes"], h["num_boxes"] = feats, boxes, counts
    index = tmp_path / "ids.json"
    index.write_text(json.dumps([str(i) for i in IDS]))
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", SPLITS)
    import_features(Hdf5Source([path], index=[index]), read_karpathy_captions(karpathy), tmp_path / "o", progress=False)
    check(tmp_path / "o", images, 9)


def test_one_dataset_or_group_per_image(tmp_path):
    images = make_images(IDS, regions=(5, 12), dim=8, seed=9)
    plain, grouped = tmp_path / "plain.h5", tmp_path / "grouped.h5"
    with h5py.File(plain, "w") as h:
        for i in IDS:
            h[str(i)] = images[i][0]
    with h5py.File(grouped, "w") as h:
        for i in IDS:
            h[f"{i}/features"], h[f"{i}/boxes"] = images[i]
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", SPLITS)
    k_max = max(len(f) for f, _b in images.values())
    for path in (plain, grouped):
        out = tmp_path / path.stem
        manifest = import_features(Hdf5Source([path]), read_karpathy_captions(karpathy), out, progress=False)
        assert manifest["source"]["layouts"] == ["per-image"] and manifest["boxes"] is (path == grouped)
        check(out, images, k_max)


def test_unreadable_dataset_is_named_and_nothing_looks_complete(tmp_path):
    images = make_images(IDS, regions=6, dim=64, seed=10)
    path = tmp_path / "per_image.h5"
    with h5py.File(path, "w") as h:
        for i in IDS:
            h.create_dataset(str(i), data=images[i][0], compression="gzip", chunks=(6, 64))
        offset = h["61"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as handle:  # damage the compressed chunk of image 61
        handle.seek(offset)
        handle.write(b"\xff" * 64)
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", SPLITS)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"per_image.h5:61: the dataset cannot be read .*damaged"):
        import_features(Hdf5Source([path]), read_karpathy_captions(karpathy), out, progress=False)
    assert not list(out.glob("*_ims.npy")) and not (out / "mmzoo_data.json").exists()
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match=r"Cannot open .*junk.h5 as an HDF5 file"):
        Hdf5Source([tmp_path / "junk.h5"]).scan()


def test_array_layout_needs_an_index(tmp_path):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as h:
        h["image_features"] = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(DataError, match=r"no id index: give --index FILE"):
        Hdf5Source([path]).scan()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"1": 0, "2": 5}))
    with pytest.raises(DataError, match=r"sends image 2 to a row outside the 2 rows"):
        Hdf5Source([path], index=[bad]).scan()


def test_id_index_files(tmp_path):
    (tmp_path / "a.txt").write_text("9\n25\n\n30\n")
    assert read_id_index(tmp_path / "a.txt") == {"9": 0, "25": 1, "30": 2}
    np.save(tmp_path / "a.npy", np.array([9, 25]))
    assert read_id_index(tmp_path / "a.npy") == {"9": 0, "25": 1}
    (tmp_path / "p2.pkl").write_bytes(pickle.dumps({9: 1, 25: 0}, protocol=2))
    assert read_id_index(tmp_path / "p2.pkl") == {"9": 1, "25": 0}
    (tmp_path / "dup.json").write_text(json.dumps({"9": 0, "25": 0}))
    with pytest.raises(DataError, match=r"images 9 and 25 both claim row 0"):
        read_id_index(tmp_path / "dup.json")


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    evil = tmp_path / "imgid2idx.pkl"
    marker = tmp_path / "ran"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(DataError, match=r"refers to os.system; an id index may hold only"):
        read_id_index(evil)
    assert not marker.exists()
