"""A relation-heavy shapes test split: `make-data shapes --twin-swaps position` makes every twin a position twin."""

from __future__ import annotations

import json

import numpy as np

from mmzoo.cli import main
from mmzoo.data.shapes import make_scenes, make_shapes


def test_default_swaps_draw_the_same_scenes_as_before():
    assert make_scenes("test", 20, seed=3) == make_scenes(
        "test", 20, seed=3, twin_swaps=("colour", "shape", "size", "position")
    )


def test_position_only_twins_through_the_function(tmp_path):
    manifest = make_shapes(tmp_path, images=10, dev_images=10, test_images=12, seed=1, twin_swaps=("position",))
    assert manifest["twin_swaps"] == ["position"]
    types = (tmp_path / "test_twin_types.txt").read_text().split()
    twins = np.load(tmp_path / "test_twins.npy")
    assert len(types) == 24 and set(types) == {"position"} and (twins >= 0).all()
    scenes = json.loads((tmp_path / "test_scenes.json").read_text())
    for scene in scenes[::2]:  # the pair holds the same objects, two of them at each other's place
        twin = scenes[scene["twin"]]
        assert sorted(o["colour"] for o in scene["objects"]) == sorted(o["colour"] for o in twin["objects"])
        assert scene["captions"] != twin["captions"]


def test_the_command_takes_the_choice_and_refuses_an_unknown_swap(tmp_path, capsys):
    out = tmp_path / "rel"
    assert main(["make-data", "shapes", "--out", str(out), "--images", "10", "--twin-swaps", "position"]) == 0
    assert set((out / "test_twin_types.txt").read_text().split()) == {"position"}
    bad = tmp_path / "bad"
    assert main(["make-data", "shapes", "--out", str(bad), "--images", "10", "--twin-swaps", "colour,angle"]) == 2
    assert "angle" in capsys.readouterr().err and not bad.exists()
