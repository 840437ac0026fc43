"""Folder scans open only regular files: a FIFO named like an image or a feature file never blocks a command, a
link loop and a decompression bomb are named errors (docs/guarantees.md, "Never stuck")."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch

import mmzoo
from mmzoo.cli import main
from mmzoo.data.render import render_scene
from mmzoo.errors import MMZooWarning
from tests._import_sources import make_images, write_karpathy
from tests.conftest import CAPTIONS

SPLITS = {"train": [9, 25, 30], "val": [49], "test": [73, 77]}


@pytest.fixture
def deadline():
    """A command that blocks (the FIFO hang) fails the test after 60 s instead of hanging the suite."""

    def hung(*_):
        raise TimeoutError("the command blocked")

    before = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, before)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("scans")
    folder = root / "scenes"
    folder.mkdir()
    for i, colour in enumerate(["red", "blue"]):
        scene = {"objects": [{"colour": colour, "shape": "circle", "size": "big", "x": 0.5, "y": 0.5}]}
        render_scene(scene, size=48).save(folder / f"scene{i}.png")
    torch.manual_seed(0)
    settings = {"embed_dim": 16, "visual.heads": 2, "visual.ffn_dim": 16, "visual.weights": "none"}
    model = mmzoo.create_model("pixels-lite0", **settings, **{"visual.preprocess.image_size": 32})
    model.text.fit(CAPTIONS)
    model.save_pretrained(root / "model")
    return root / "model", folder


def test_a_fifo_named_like_an_image_never_blocks_search(saved, tmp_path, capsys, deadline):
    model, scenes = saved
    folder = tmp_path / "images"
    folder.mkdir()
    for path in scenes.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    os.mkfifo(folder / "pipe.jpg")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    assert main(["search", str(model), "--images", str(folder), CAPTIONS[0]]) == 0
    out = capsys.readouterr().out
    assert "scene0.png" in out and "pipe.jpg" not in out and "loop.png" not in out
    captions = tmp_path / "captions.txt"
    captions.write_text("\n".join(CAPTIONS) + "\n")
    assert main(["search", str(model), "--image", str(folder / "pipe.jpg"), "--captions", str(captions)]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_a_decompression_bomb_is_a_data_error(saved, tmp_path, capsys, monkeypatch):
    from PIL import Image

    model, scenes = saved
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 48 x 48 = 2304 pixels > 2 x 500: a "bomb"
    # every picture is a "bomb": each is skipped with the warning that names it, then the search has nothing to read
    with pytest.warns(MMZooWarning, match=r"decompression bomb") as caught:
        assert main(["search", str(model), "--images", str(scenes), CAPTIONS[0]]) == 2
    assert any("scene0.png" in str(w.message) for w in caught)
    err = capsys.readouterr().err
    assert "can be read as an image" in err and "Traceback" not in err


def test_an_npy_folder_with_a_fifo_and_a_link_loop(tmp_path, capsys, deadline):
    images = make_images([i for ids in SPLITS.values() for i in ids], regions=36, dim=16, seed=2)
    folder = tmp_path / "feats"
    folder.mkdir()
    for image_id, (features, _boxes) in images.items():
        np.save(folder / f"{image_id:012d}.npy", features)
    os.mkfifo(folder / "000000000999.npy")  # not a feature file: skipped, never opened
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", SPLITS)
    args = ["import-features", "npy-folder", str(folder), "--karpathy", str(karpathy), "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    (folder / "000000000998.npy").symlink_to(folder / "000000000998.npy")
    assert main([*args, "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert "000000000998.npy" in err and "link loop" in err and "Traceback" not in err
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert (
        main(
            [
                "import-features",
                "npy-folder",
                str(loop),
                "--karpathy",
                str(karpathy),
                "--out",
                str(tmp_path / "out3"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "Traceback" not in capsys.readouterr().err
