"""Every file mmzoo writes is created fresh inside its output: a link planted at any name it writes (the ``.partial``
names of an import, the temporary names of the atomic writer, a staging folder) is replaced, never written through,
and ``push`` uploads only the regular files inside the folder (docs/guarantees.md, "Never outside the output")."""

from __future__ import annotations

import os

import numpy as np
import pytest

import mmzoo
from mmzoo import _atomic
from mmzoo.cli import main
from mmzoo.errors import StorageError
from tests._import_sources import make_images, write_generate_tsv, write_karpathy

SPLITS = {"train": [9, 25, 30], "val": [49], "test": [73, 77]}


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text("precious\n")
    return path


def test_a_link_planted_at_a_partial_name_of_an_import_is_never_written_through(tmp_path, victim, capsys):
    images = make_images([i for ids in SPLITS.values() for i in ids], regions=36, dim=16)
    shard = write_generate_tsv(tmp_path / "feats.tsv.0", images)
    karpathy = write_karpathy(tmp_path / "dataset_coco.json", SPLITS)
    out = tmp_path / "out"
    out.mkdir()
    for name in (
        "train_ims.npy.partial",
        "train_counts.npy.partial",
        "train_caps.txt.partial",
        f".train_caps.txt.partial.tmp{os.getpid()}",
    ):
        (out / name).symlink_to(victim)
    code = main(["import-features", "tsv", str(shard), "--karpathy", str(karpathy), "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert victim.read_text() == "precious\n"
    for name in ("train_ims.npy", "train_counts.npy", "train_caps.txt"):
        assert (out / name).is_file() and not (out / name).is_symlink(), name
    assert np.load(out / "train_ims.npy").shape[0] == 3


def test_the_atomic_writer_replaces_links_and_never_follows_them(tmp_path, victim):
    target = tmp_path / "out.json"
    target.symlink_to(victim)
    (tmp_path / f".out.json.tmp{os.getpid()}").symlink_to(victim)
    _atomic.atomic_write_json(target, {"a": 1})
    assert victim.read_text() == "precious\n" and not target.is_symlink()
    fresh = tmp_path / "fresh.bin"
    fresh.symlink_to(victim)
    with _atomic.open_fresh(fresh) as handle:
        handle.write(b"new")
    assert victim.read_text() == "precious\n" and fresh.read_bytes() == b"new" and not fresh.is_symlink()
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(StorageError, match="a folder is there"):
        _atomic.open_fresh(tmp_path / "a-folder")
    npy = tmp_path / "x.npy"
    npy.symlink_to(victim)
    _atomic.create_npy(npy, np.float32, (3, 2))
    assert np.load(npy).shape == (3, 2) and victim.read_text() == "precious\n"
    link = tmp_path / "link.partial"
    link.symlink_to(victim)
    with pytest.raises(StorageError, match="not a regular file"):
        _atomic.replace(link, tmp_path / "placed")


def test_links_planted_in_a_model_folder_and_a_run_are_replaced(tmp_path, victim):
    from tests.conftest import tiny_model

    model = tiny_model("vsepp")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / ".mmzoo-save.tmp").symlink_to(tmp_path)  # a staging folder that is a link elsewhere
    model.save_pretrained(folder)
    assert (folder / "config.json").is_file() and victim.read_text() == "precious\n"
    from mmzoo.training.state import save_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    (run / ".last.tmp").symlink_to(tmp_path)
    save_checkpoint(run / "last", model)
    assert (run / "last" / "config.json").is_file() and not (tmp_path / "config.json").exists()
    assert mmzoo.from_pretrained(run / "last") is not None


def test_make_data_never_writes_through_a_planted_staging_link(tmp_path, victim, capsys):
    out = tmp_path / "shapes"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / ".mmzoo-shapes.tmp").symlink_to(elsewhere)
    code = main(["make-data", "shapes", "--out", str(out), "--images", "8", "--dev-images", "4", "--test-images", "4"])
    assert code == 0, capsys.readouterr().err
    assert list(elsewhere.iterdir()) == [] and (out / "train_ims.npy").is_file()


# -- push: only the folder's own regular files ----------------------------------------------------------------
from tests.hub_server import fake_hub  # noqa: E402, F401  (a fixture)


def test_push_refuses_a_link_to_a_secret_and_names_it(fake_hub, tmp_path, capsys):  # noqa: F811
    from tests.conftest import tiny_model

    token = tmp_path / "hf-token"
    token.write_text("hf_secretsecretsecret\n")
    folder = tmp_path / "M"
    tiny_model("vsepp").save_pretrained(folder)
    (folder / "notes.txt").symlink_to(token)
    assert main(["push", str(folder), "--repo", "org/x"]) == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "outside the folder" in err
    assert fake_hub.count() == 0 and "org/x" not in fake_hub.repos  # refused before any request
    (folder / "notes.txt").unlink()
    (folder / "same.json").symlink_to(folder / "config.json")  # a link inside the folder is its own content
    os.mkfifo(folder / "pipe")
    assert main(["push", str(folder), "--repo", "org/x"]) == 2
    assert "pipe (not a regular file)" in capsys.readouterr().err
    (folder / "pipe").unlink()
    assert main(["push", str(folder), "--repo", "org/x"]) == 0
    repo = fake_hub.repos["org/x"]
    files = repo.commits[repo.branches["main"]]
    assert files["same.json"] == (folder / "config.json").read_bytes()
    assert not any(b"hf_secret" in data for data in files.values())
