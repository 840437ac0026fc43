"""Plots and logs: ``mmzoo plot`` of a run's curves, TensorBoard logging, ``mmzoo eval --plot`` and ``--sheet``."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from mmzoo.cli import main
from mmzoo.errors import MissingDependencyError
from tests.conftest import tiny_model

pytest.importorskip("matplotlib")


def epoch(n, rsum, lr=2e-4, collapse=()):
    dev = {f"{d}_{k}": rsum / 6 for d in ("i2t", "t2i") for k in ("r1", "r5", "r10")}
    return {"epoch": n, "loss": 10.0 / n, "lr": lr, "dev": {**dev, "rsum": rsum}, "collapse": list(collapse)}


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records = [epoch(1, 60), epoch(2, 120, collapse=["spread"]), epoch(3, 200, lr=2e-5), epoch(4, 180, lr=2e-5)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_plot_writes_the_curves_of_a_run(run_dir, tmp_path, capsys):
    assert main(["plot", str(run_dir)]) == 0
    with Image.open(run_dir / "curves.png") as png:
        assert png.format == "PNG" and png.width > 800 and png.height > 600
        assert len(png.convert("RGB").getcolors(1 << 20)) > 50  # drawn, not blank
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "c.svg")]) == 0
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")
    capsys.readouterr()
    assert main(["plot", str(tmp_path)]) == 2
    assert "holds no metrics.jsonl" in capsys.readouterr().err
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "c.gif")]) == 2
    assert "use a .png, .svg or .pdf" in capsys.readouterr().err


def test_plot_without_matplotlib_names_the_extra(run_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot", str(run_dir)]) == 2
    assert 'pip install "mmzoo[plot]"' in capsys.readouterr().err
    assert not (run_dir / "curves.png").exists()


def test_tensorboard_logger_writes_the_epoch_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mmzoo.training import TensorBoardLogger

    with TensorBoardLogger(tmp_path / "tb") as logger:
        logger(epoch(1, 60))
        logger(epoch(2, 120, collapse=["spread"]))
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert {"train/loss", "train/lr", "train/collapsed", "dev/rsum", "dev/i2t_r1"} <= set(events.Tags()["scalars"])
    assert [(e.step, e.value) for e in events.Scalars("dev/rsum")] == [(1, 60.0), (2, 120.0)]
    assert [e.value for e in events.Scalars("train/collapsed")] == [0.0, 1.0]


def test_tensorboard_missing_names_the_extra(tmp_path, monkeypatch):
    from mmzoo.training import TensorBoardLogger

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "mmzoo\[tensorboard\]"'):
        TensorBoardLogger(tmp_path / "tb")


@pytest.fixture
def evaluated(tmp_path):
    """A tiny saved model and a features folder whose test split records its image files."""
    from mmzoo.data.shapes import make_shapes

    data = tmp_path / "data"
    make_shapes(data, images=8, dev_images=4, test_images=4, seed=0, regions=8, region_dim=24)
    n = int(np.load(data / "test_ims.npy", mmap_mode="r").shape[0])
    paths = []
    for i in range(n):
        path = tmp_path / "photos" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (24, 24), (30 * i % 255, 90, 160)).save(path)
        paths.append(str(path))
    (data / "test_images.txt").write_text("\n".join(paths) + "\n")
    model = tiny_model("vsepp")
    model.text.fit((data / "test_caps.txt").read_text().splitlines())
    model.save_pretrained(tmp_path / "model")
    return tmp_path


def test_eval_writes_a_recall_chart_and_a_contact_sheet(evaluated, capsys):
    argv = ["eval", str(evaluated / "model"), "--data", str(evaluated / "data"), "--no-progress", "--device", "cpu"]
    plot, sheet = evaluated / "recall.png", evaluated / "sheet.png"
    assert main([*argv, "--plot", str(plot), "--sheet", str(sheet), "--sheet-queries", "3"]) == 0
    for path in (plot, sheet):
        with Image.open(path) as png:
            assert png.format == "PNG" and len(png.convert("RGB").getcolors(1 << 20)) > 20
    with Image.open(sheet) as png:
        assert png.height > 3 * 128  # three query rows of thumbnails
    (evaluated / "data" / "test_images.txt").unlink()
    capsys.readouterr()
    assert main([*argv, "--sheet", str(evaluated / "again.png")]) == 2
    assert "--sheet needs the image files" in capsys.readouterr().err
