"""Twin tables: ``{split}_twins.npy`` or ``{split}_twins.txt``, and the typed record ``{split}_twin_types.txt``."""

from __future__ import annotations

import numpy as np
import pytest

from mmzoo.data import PrecomputedDataset, load_scenes, make_shapes, open_split
from mmzoo.errors import DataError
from tests.test_data import CAPS, numbered, write_split


def test_twins_txt_is_read_like_the_npy(tmp_path):
    """Issue 24, problem 1: a folder with test_twins.txt got no binding probe and no word why."""
    write_split(tmp_path, "test", numbered(4), CAPS)
    (tmp_path / "test_twins.txt").write_text("1\n0\n-1\n-1\n")
    assert PrecomputedDataset(tmp_path, "test").twins.tolist() == [1, 0, -1, -1]
    np.save(tmp_path / "test_twins.npy", np.array([1, 0, -1, -1]))  # both, agreeing: fine
    assert PrecomputedDataset(tmp_path, "test").twins.tolist() == [1, 0, -1, -1]
    np.save(tmp_path / "test_twins.npy", np.array([1, 0, 3, 2]))
    with pytest.raises(DataError, match=r"different twins"):
        PrecomputedDataset(tmp_path, "test")
    (tmp_path / "test_twins.npy").unlink()
    for text, match in (("1\n0\nx\n-1\n", r"line 3: 'x'"), ("1\n0\n", r"2 lines"), ("1\n2\n3\n0\n", "symmetric")):
        (tmp_path / "test_twins.txt").write_text(text)
        with pytest.raises(DataError, match=match):
            PrecomputedDataset(tmp_path, "test")


def test_twin_types_are_checked_against_the_table(tmp_path):
    write_split(tmp_path, "test", numbered(4), CAPS)
    (tmp_path / "test_twins.txt").write_text("1\n0\n-1\n-1\n")
    (tmp_path / "test_twin_types.txt").write_text("colour\ncolour\n-\n-\n")
    ds = PrecomputedDataset(tmp_path, "test", max_images=3)
    assert ds.twin_types == ["colour", "colour", "-"]
    for text, match in (
        ("colour\nsize\n-\n-\n", "different types"),
        ("colour\ncolour\nsize\n-\n", "line 3"),
        ("colour\ncolour\n-\n", "3 lines"),
    ):
        (tmp_path / "test_twin_types.txt").write_text(text)
        with pytest.raises(DataError, match=match):
            PrecomputedDataset(tmp_path, "test")
    (tmp_path / "test_twins.txt").unlink()
    with pytest.raises(DataError, match="no twin table"):
        PrecomputedDataset(tmp_path, "test")


def test_shapes_writes_what_each_twin_pair_differs_in(tmp_path):
    manifest = make_shapes(tmp_path, images=20, dev_images=10, test_images=30, seed=0, regions=8, region_dim=16)
    assert manifest["twin_types"] == {"test": "test_twin_types.txt"}
    test = open_split(tmp_path, "test")
    scenes = [s["swap"] for s in load_scenes(tmp_path, "test")]
    assert test.twin_types == scenes and set(scenes) <= {"colour", "shape", "size", "position"}
    assert len(set(scenes)) >= 3  # 30 pairs: the types are mixed
    assert open_split(tmp_path, "dev").twin_types is None
    make_shapes(tmp_path, images=20, seed=1, regions=8, region_dim=16, overwrite=True)  # the replaced file goes too
    assert len(open_split(tmp_path, "test").twin_types) == open_split(tmp_path, "test").num_images
