"""mmzoo.checkpoint.rundir: the run folder's names and readers, and telling a run from a saved model.

Training, the model cards, ``mmzoo push`` and the CLI loader all take them from this one module.
"""

from __future__ import annotations

import os

import pytest
import torch

import mmzoo
from mmzoo.checkpoint import rundir
from mmzoo.cli import main
from mmzoo.errors import CheckpointError, DataError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = mmzoo.create_model("vsepp", **{"embed_dim": 8, "visual.in_dim": 6, "text.word_dim": 8})
    model.text.fit(["a red circle", "a blue square"])
    return model.save_pretrained(tmp_path_factory.mktemp("m") / "model")


def test_every_floor_uses_the_one_home():
    from mmzoo.hub import cards
    from mmzoo.training import rundir as training_rundir

    assert training_rundir.METRICS_NAME is rundir.METRICS_NAME and training_rundir.read_metrics is rundir.read_metrics
    assert cards.read_run_info("nowhere") == {} == rundir.read_run_document("nowhere")


def test_a_run_a_cut_swap_a_saved_folder_and_neither(saved, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(saved, run / rundir.BEST_NAME)
    assert rundir.is_run(run) and rundir.model_folder(run) == run / "best"
    os.replace(run / "best", run / ".best.old")  # a trainer killed between the two renames of best/
    assert rundir.is_run(run) and rundir.model_folder(run) == run / "best"
    assert isinstance(mmzoo.from_pretrained(f"local-dir:{rundir.model_folder(run)}"), mmzoo.MatchingModel)
    assert not rundir.is_run(saved) and rundir.model_folder(saved) == saved
    with pytest.raises(CheckpointError, match=r"neither a training run \(no best/config.json\) nor a saved model"):
        rundir.model_folder(tmp_path / "empty")


def test_the_cli_loader_names_a_folder_that_is_neither(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["search", str(tmp_path / "empty"), "a red circle", "--images", str(tmp_path)]) == 2
    assert "neither a training run" in capsys.readouterr().err


def test_metrics_round_trip_and_a_broken_line_is_named(tmp_path):
    records = [{"epoch": 1, "dev": {"rsum": 10.0}}, {"epoch": 2, "dev": {"rsum": 12.5}}]
    rundir.write_metrics(tmp_path, records)
    assert rundir.read_metrics(tmp_path) == records
    (tmp_path / rundir.METRICS_NAME).write_text('{"epoch": 1}\n{broken\n')
    with pytest.raises(DataError, match="line 2"):
        rundir.read_metrics(tmp_path)
    (tmp_path / rundir.RUN_NAME).write_text("[1, 2]")
    with pytest.raises(CheckpointError):
        rundir.read_run_document(tmp_path, CheckpointError)


def test_clean_start_removes_an_unfinished_runs_files_only(tmp_path):
    (tmp_path / rundir.METRICS_NAME).write_text("{}\n")
    (tmp_path / ".best.tmp").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    rundir.clean_start(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
