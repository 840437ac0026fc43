"""PrecomputedDataset: both feature layouts, every DataError case, collation, and bounded memory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mmzoo.data import PairBatch, PrecomputedDataset, collate_pairs, read_manifest
from mmzoo.data import precomputed as precomputed_module
from mmzoo.errors import DataError


def write_split(root: Path, split: str, features: np.ndarray, captions: list[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / f"{split}_ims.npy", features)
    (root / f"{split}_caps.txt").write_text("\n".join(captions) + "\n", encoding="utf-8")


def numbered(n_images: int, k: int = 3, dim: int = 4, per_caption: bool = False) -> np.ndarray:
    rows = n_images * 5 if per_caption else n_images
    return np.arange(rows * k * dim, dtype=np.float32).reshape(rows, k, dim)


CAPS = [f"caption {i}" for i in range(20)]


def test_one_row_per_image(tmp_path):
    feats = numbered(4)
    write_split(tmp_path, "train", feats, CAPS)
    ds = PrecomputedDataset(tmp_path, "train")
    assert len(ds) == 20 and ds.num_images == 4 and ds.captions_per_image == 5
    assert (ds.regions, ds.region_dim, ds.split, ds.root, ds.manifest) == (3, 4, "train", tmp_path, None)
    assert isinstance(ds._features, np.memmap)
    x, mask, caption, cid, iid = ds[7]
    np.testing.assert_array_equal(x, feats[1])
    assert x.dtype == np.float32 and x.flags.writeable and caption == "caption 7" and (cid, iid) == (7, 1)
    assert mask.dtype == bool and mask.all() and mask.shape == (3,)
    assert ds.image_index(19) == 3
    features, masks = ds.image_features([3, 0])
    np.testing.assert_array_equal(features, feats[[3, 0]])
    assert masks.shape == (2, 3) and masks.all()
    assert ds.image_captions(1) == CAPS[5:10]
    with pytest.raises(IndexError):
        ds[20]


def test_one_row_per_caption_is_detected(tmp_path):
    feats = numbered(4, per_caption=True)  # 20 rows for 20 captions, as some releases store them
    write_split(tmp_path, "dev", feats, CAPS)
    ds = PrecomputedDataset(tmp_path, "dev")
    assert ds.num_images == 4 and ds.rows_per_caption == 1
    x, _, _, cid, iid = ds[7]
    np.testing.assert_array_equal(x, feats[7])  # caption 7's own row
    assert (cid, iid) == (7, 1)
    np.testing.assert_array_equal(ds.image_features([1, 2])[0], feats[[5, 10]])  # image j = row j * 5


def test_captions_per_image_from_manifest_and_argument(tmp_path):
    write_split(tmp_path, "test", numbered(10), CAPS)
    (tmp_path / "mmzoo_data.json").write_text(json.dumps({"name": "x", "captions_per_image": 2}))
    ds = PrecomputedDataset(tmp_path, "test")
    assert ds.captions_per_image == 2 and ds.num_images == 10 and ds.manifest.name == "x"
    assert read_manifest(tmp_path).captions_per_image == 2
    with pytest.raises(DataError, match=r"feature rows"):
        PrecomputedDataset(tmp_path, "test", captions_per_image=5)  # 10 rows fit neither 4 nor 20


def test_a_stale_manifest_is_an_error(tmp_path):
    write_split(tmp_path, "train", numbered(4), CAPS)
    (tmp_path / "mmzoo_data.json").write_text(json.dumps({"regions": 3, "region_dim": 64}))
    with pytest.raises(DataError, match=r"region_dim = 4 but .*mmzoo_data.json says 64"):
        PrecomputedDataset(tmp_path, "train")


def test_collate_and_dataloader(tmp_path):
    write_split(tmp_path, "train", numbered(4), CAPS)
    ds = PrecomputedDataset(tmp_path, "train")
    batch = next(iter(DataLoader(ds, batch_size=6, shuffle=False, collate_fn=collate_pairs)))
    assert isinstance(batch, PairBatch) and len(batch) == 6
    assert batch.features.shape == (6, 3, 4) and batch.features.dtype == torch.float32
    assert batch.caption_ids.tolist() == [0, 1, 2, 3, 4, 5] and batch.image_ids.tolist() == [0, 0, 0, 0, 0, 1]
    assert batch.captions[5] == "caption 5" and batch.caption_ids.dtype == torch.long
    with pytest.raises(DataError):
        collate_pairs([])


# -- errors -------------------------------------------------------------------------------------------
def test_missing_files(tmp_path):
    with pytest.raises(DataError, match=r"not found"):
        PrecomputedDataset(tmp_path / "nowhere", "train")
    write_split(tmp_path, "train", numbered(4), CAPS)
    (tmp_path / "train_ims.npy").unlink()
    with pytest.raises(DataError, match=r"train_ims.npy not found"):
        PrecomputedDataset(tmp_path, "train")
    with pytest.raises(DataError, match=r"dev_caps.txt not found"):
        PrecomputedDataset(tmp_path, "dev")


def test_count_mismatch_names_both_files(tmp_path):
    write_split(tmp_path, "train", numbered(3), CAPS)
    with pytest.raises(DataError, match=r"train_ims.npy holds 3 feature rows but .*train_caps.txt holds 20"):
        PrecomputedDataset(tmp_path, "train")
    write_split(tmp_path, "dev", numbered(4), CAPS[:18])
    with pytest.raises(DataError, match=r"dev_caps.txt holds 18 captions, not a multiple of 5"):
        PrecomputedDataset(tmp_path, "dev")


def test_wrong_dtype_and_shape(tmp_path):
    write_split(tmp_path, "train", numbered(4).astype(np.int32), CAPS)
    with pytest.raises(DataError, match=r"train_ims.npy has dtype int32"):
        PrecomputedDataset(tmp_path, "train")
    write_split(tmp_path, "train", numbered(4)[:, 0], CAPS)
    with pytest.raises(DataError, match=r"train_ims.npy has shape \(4, 4\)"):
        PrecomputedDataset(tmp_path, "train")
    (tmp_path / "train_ims.npy").write_bytes(b"not a numpy file")
    with pytest.raises(DataError, match=r"train_ims.npy is not a .npy array of numbers"):
        PrecomputedDataset(tmp_path, "train")
    np.save(tmp_path / "train_ims.npy", np.array([{"a": 1}] * 4, dtype=object))
    with pytest.raises(DataError, match=r"train_ims.npy"):
        PrecomputedDataset(tmp_path, "train")


def test_float16_features_are_read_as_float32(tmp_path):
    write_split(tmp_path, "train", numbered(4).astype(np.float16), CAPS)
    x = PrecomputedDataset(tmp_path, "train")[0][0]
    assert x.dtype == np.float32


def test_empty_caption_line_names_file_and_line(tmp_path):
    caps = list(CAPS)
    caps[12] = "   "
    write_split(tmp_path, "train", numbered(4), caps)
    with pytest.raises(DataError, match=r"train_caps.txt, line 13: empty caption"):
        PrecomputedDataset(tmp_path, "train")


def test_nan_features_fail_lazily_and_in_validate(tmp_path):
    feats = numbered(4)
    feats[2, 1, 3] = np.nan
    write_split(tmp_path, "train", feats, CAPS)
    ds = PrecomputedDataset(tmp_path, "train")  # opening reads nothing
    assert ds[0][2] == "caption 0"
    with pytest.raises(DataError, match=r"train_ims.npy: feature row 2 holds NaN .*lines 11-15"):
        ds[11]
    with pytest.raises(DataError, match=r"feature row 2"):
        ds.image_features([2])
    with pytest.raises(DataError, match=r"feature row 2"):
        ds.validate()
    feats[2, 1, 3] = np.inf
    write_split(tmp_path, "dev", feats, CAPS)
    with pytest.raises(DataError, match=r"feature row 2"):
        PrecomputedDataset(tmp_path, "dev").validate()


def test_validate_passes_clean_data(tmp_path, monkeypatch):
    monkeypatch.setattr(precomputed_module, "VALIDATE_CHUNK_BYTES", 100)  # many small chunks
    feats = numbered(4)
    feats[3, 2, 1] = np.nan
    write_split(tmp_path, "train", feats, CAPS)
    with pytest.raises(DataError, match=r"feature row 3"):
        PrecomputedDataset(tmp_path, "train").validate()
    write_split(tmp_path, "train", numbered(4), CAPS)
    PrecomputedDataset(tmp_path, "train").validate()


def test_broken_manifest_and_twins(tmp_path):
    write_split(tmp_path, "test", numbered(4), CAPS)
    (tmp_path / "mmzoo_data.json").write_text("{broken")
    with pytest.raises(DataError, match=r"mmzoo_data.json"):
        PrecomputedDataset(tmp_path, "test")
    (tmp_path / "mmzoo_data.json").unlink()
    np.save(tmp_path / "test_twins.npy", np.array([1, 0, 3, 2]))
    assert PrecomputedDataset(tmp_path, "test").twins.tolist() == [1, 0, 3, 2]
    np.save(tmp_path / "test_twins.npy", np.array([1, 2, 3, 0]))
    with pytest.raises(DataError, match=r"not symmetric"):
        PrecomputedDataset(tmp_path, "test")
    np.save(tmp_path / "test_twins.npy", np.array([1, 0]))
    with pytest.raises(DataError, match=r"test_twins.npy"):
        PrecomputedDataset(tmp_path, "test")


# -- memory -------------------------------------------------------------------------------------------
def rss_anon_mb() -> float:
    """Anonymous resident memory of this process (heap, not the page cache of mapped files), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    pytest.skip("/proc/self/status has no RssAnon on this system")


@pytest.mark.slow
def test_memory_is_bounded_by_the_batch_not_the_file(tmp_path, monkeypatch):
    n, k, dim = 8192, 16, 512  # 256 MiB of features; a batch of 64 images is 2 MiB
    path = tmp_path / "train_ims.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, k, dim))
    for a in range(0, n, 1024):
        out[a : a + 1024] = np.float32(a + 1)
    out.flush()
    del out
    (tmp_path / "train_caps.txt").write_text("a caption\n" * (5 * n))
    size_mb = path.stat().st_size / 2**20
    assert size_mb > 250

    before = rss_anon_mb()
    ds = PrecomputedDataset(tmp_path, "train")
    one_per_image = list(range(0, len(ds), 5))  # touch every feature row once
    loader = DataLoader(ds, batch_size=64, sampler=one_per_image, collate_fn=collate_pairs)
    peak = before
    total = 0.0
    for batch in loader:
        total += float(batch.features[:, 0, 0].sum())
        peak = max(peak, rss_anon_mb())
    assert total == pytest.approx(sum(float(a // 1024 * 1024 + 1) for a in range(n)))
    monkeypatch.setattr(precomputed_module, "VALIDATE_CHUNK_BYTES", 8 * 2**20)
    ds.validate()
    peak = max(peak, rss_anon_mb())
    # captions (40k short strings) and the batches cost a few MiB; reading the file whole would cost 256 MiB
    assert peak - before < 40, f"anonymous memory grew by {peak - before:.0f} MiB while reading {size_mb:.0f} MiB"


def test_pickling_sends_the_path_not_the_features(tmp_path):
    import pickle

    feats = np.zeros((400, 16, 64), dtype=np.float32) + 1  # 1.6 MB of features
    write_split(tmp_path, "train", feats, ["a caption"] * 2000)
    ds = PrecomputedDataset(tmp_path, "train")
    blob = pickle.dumps(ds)
    assert len(blob) < 100_000  # the captions, not the features
    again = pickle.loads(blob)
    assert isinstance(again._features, np.memmap)
    np.testing.assert_array_equal(again[5][0], feats[1])


def test_max_images_keeps_the_first_images_and_their_twins(tmp_path):
    write_split(tmp_path, "test", numbered(4), CAPS)
    np.save(tmp_path / "test_twins.npy", np.array([1, 0, 3, 2]))
    ds = PrecomputedDataset(tmp_path, "test", max_images=3)
    assert ds.num_images == 3 and len(ds) == 15 and ds.twins.tolist() == [1, 0, -1]
    with pytest.raises(IndexError):
        ds.image_features([3])
    assert PrecomputedDataset(tmp_path, "test", max_images=10).num_images == 4
    with pytest.raises(DataError, match="max_images"):
        PrecomputedDataset(tmp_path, "test", max_images=0)
