"""Bad input gets a DataError naming the file and the row or image, and no split that looks complete."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmzoo.data import PrecomputedDataset
from mmzoo.data.importing import TsvSource, import_features, read_caption_files, read_karpathy_captions
from mmzoo.errors import DataError
from tests._import_sources import make_images, write_generate_tsv, write_karpathy

SPLITS = {"train": [9, 25, 30], "val": [49], "test": [73, 77]}
IDS = [i for ids in SPLITS.values() for i in ids]


@pytest.fixture
def files(tmp_path):
    images = make_images(IDS, regions=36, dim=16)
    shard = write_generate_tsv(tmp_path / "feats.tsv.0", images)
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", SPLITS)
    return images, shard, karpathy


def lines(path):
    return path.read_bytes().split(b"\r\n")[:-1]


def rewrite(path, rows):
    path.write_bytes(b"".join(row + b"\r\n" for row in rows))


def run(shard, karpathy, out, **kwargs):
    sources = shard if isinstance(shard, list) else [shard]
    return import_features(TsvSource(sources), read_karpathy_captions(karpathy), out, progress=False, **kwargs)


def nothing_complete(out):
    """No split of ``out`` can be opened: nothing half-written looks like data."""
    for split in ("train", "dev", "test"):
        assert not (out / f"{split}_ims.npy").exists()
        with pytest.raises(DataError):
            PrecomputedDataset(out, split)
    assert not (out / "mmzoo_data.json").exists()


def test_truncated_base64(files, tmp_path):
    _images, shard, karpathy = files
    rows = lines(shard)
    fields = rows[3].split(b"\t")
    fields[5] = fields[5][:-3]  # cut inside the base64
    rewrite(shard, [*rows[:3], b"\t".join(fields), *rows[4:]])
    with pytest.raises(DataError, match=r"feats.tsv.0, line 4 \(image 49\): the features field is not whole base64"):
        run(shard, karpathy, tmp_path / "out")
    nothing_complete(tmp_path / "out")


def test_last_line_cut_short_by_a_killed_writer(files, tmp_path):
    _images, shard, karpathy = files
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 1000])  # generate_tsv.py killed mid-row
    with pytest.raises(DataError, match=r"feats.tsv.0, line 6 \(image 77\).*The line ends without a newline"):
        run(shard, karpathy, tmp_path / "out")


def test_num_boxes_disagrees_with_the_arrays(files, tmp_path):
    _images, shard, karpathy = files
    rows = lines(shard)
    fields = rows[1].split(b"\t")
    fields[3] = b"35"
    rewrite(shard, [rows[0], b"\t".join(fields), *rows[2:]])
    with pytest.raises(DataError, match=r"line 2 \(image 25\): num_boxes is 35 but the boxes field holds 36 boxes"):
        run(shard, karpathy, tmp_path / "out")


def test_duplicate_image_ids_across_shards(files, tmp_path):
    images, shard, karpathy = files
    other = write_generate_tsv(tmp_path / "feats.tsv.1", {30: images[30]})
    with pytest.raises(DataError, match=r"Image 30 appears twice.*feats.tsv.0, line 3.*feats.tsv.1, line 1"):
        run([shard, other], karpathy, tmp_path / "out")


def test_images_missing_from_the_features(files, tmp_path):
    _images, shard, karpathy = files
    rewrite(shard, [row for row in lines(shard) if not row.startswith(b"73\t")])
    with pytest.raises(DataError, match=r"1 of the 2 images of split 'test' .* cocoid 73 \(COCO_val2014_000000000073"):
        run(shard, karpathy, tmp_path / "out")


def test_features_missing_from_the_caption_file(files, tmp_path):
    images, shard, karpathy = files
    write_generate_tsv(shard, {999: images[9]})
    with pytest.raises(
        DataError, match=r"1 feature rows are of images dataset_coco.json does not list: feats.tsv.0, line 7"
    ):
        run(shard, karpathy, tmp_path / "out")
    manifest = run(shard, karpathy, tmp_path / "out", skip_extra=True)
    assert manifest["splits"]["train"]["images"] == 3 and manifest["source"]["skipped_rows"] == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_features(files, tmp_path, bad):
    images, shard, karpathy = files
    features = images[25][0].copy()
    features[7, 3] = bad
    shard.unlink()
    write_generate_tsv(shard, {**images, 25: (features, images[25][1])})
    with pytest.raises(
        DataError, match=r"feats.tsv.0, line 2 \(image 25\): features hold NaN or infinite values \(region 7\)"
    ):
        run(shard, karpathy, tmp_path / "out")
    nothing_complete(tmp_path / "out")


def test_mixed_dimensions_across_shards(files, tmp_path):
    _images, shard, karpathy = files
    other = write_generate_tsv(tmp_path / "other.tsv", make_images([1], regions=36, dim=8))
    with pytest.raises(
        DataError, match=r"Mixed feature sizes: feats.tsv.0, line 1 .* D = 16 but other.tsv, line 1 .* D = 8"
    ):
        run([shard, other], karpathy, tmp_path / "out")


def test_wrong_number_of_fields_and_bad_num_boxes(files, tmp_path):
    _images, shard, karpathy = files
    rows = lines(shard)
    rewrite(shard, [rows[0], b"\t".join(rows[1].split(b"\t")[:4])])
    with pytest.raises(DataError, match=r"feats.tsv.0, line 2: 4 tab-separated fields"):
        run(shard, karpathy, tmp_path / "out")
    fields = rows[1].split(b"\t")
    fields[3] = b"many"
    rewrite(shard, [rows[0], b"\t".join(fields)])
    with pytest.raises(DataError, match=r"num_boxes is b'many', not a number"):
        run(shard, karpathy, tmp_path / "out")


def test_caption_problems(tmp_path):
    path = write_karpathy(tmp_path / "k.json", SPLITS)
    document = json.loads(path.read_text())
    document["images"][1]["sentences"] = document["images"][1]["sentences"][:4]
    path.write_text(json.dumps(document))
    with pytest.raises(DataError, match=r"cocoid 25 \(COCO_train2014_000000000025.jpg\) has 4 non-empty captions"):
        read_karpathy_captions(path)
    document["images"][1]["cocoid"] = 9
    path.write_text(json.dumps(document))
    with pytest.raises(DataError, match=r"images 0 and 1 have the same cocoid 9"):
        read_karpathy_captions(path)
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"not a readable Karpathy split file"):
        read_karpathy_captions(tmp_path / "junk.json")
    with pytest.raises(DataError, match=r"has no images for split 'testall'"):
        read_karpathy_captions(write_karpathy(tmp_path / "k2.json", SPLITS), splits=("testall",))


def test_per_split_caption_files(tmp_path, files):
    """SCAN's precomp text files: ids one per image, or one per caption (f30k_precomp)."""
    images, shard, _karpathy = files
    caps = tmp_path / "caps"
    caps.mkdir()
    (caps / "train_caps.txt").write_text("".join(f"cap {i} {c}\n" for i in (9, 25) for c in range(5)))
    (caps / "train_ids.txt").write_text("9\n25\n")
    (caps / "test_caps.txt").write_text("".join(f"cap {i} {c}\n" for i in (77,) for c in range(5)))
    (caps / "test_ids.txt").write_text("77\n" * 5)
    table = read_caption_files(caps)
    assert list(table.splits) == ["train", "test"]
    manifest = import_features(TsvSource([shard]), table, tmp_path / "out", progress=False, skip_extra=True)
    assert manifest["splits"]["test"]["images"] == 1
    assert np.load(tmp_path / "out" / "test_ims.npy")[0].tobytes() == images[77][0].tobytes()
    assert (tmp_path / "out" / "train_caps.txt").read_text().splitlines()[5] == "cap 25 0"
    (caps / "test_ids.txt").write_text("77\n77\n73\n77\n77\n")
    with pytest.raises(DataError, match=r"test_ids.txt, lines 1-5: one image's captions name ids"):
        read_caption_files(caps)
    (caps / "test_ids.txt").write_text("77\n73\n")
    with pytest.raises(DataError, match=r"test_ids.txt holds 2 ids but .*test_caps.txt holds 1 images"):
        read_caption_files(caps)
