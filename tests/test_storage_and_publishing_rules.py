"""Storage and hub defects found by the core review: each is a named mmzoo error and loses nothing.

* an import whose feature file exceeds the file-size limit is a StorageError, and the rerun starts cleanly;
* a converter option YAML cannot parse (``*x.json``, ``[a``, ``@vocab.json``) is kept as the path it is;
* a failing write while saving a model (assets, config.json, README.md) is a StorageError and the old folder stays
  as it was; a save never mixes new weights with an old config;
* ``push_folder`` uploads no dot-file or temporary file, at any depth;
* ``make_shapes(overwrite=True)`` leaves exactly a fresh dataset's files;
* the converted-weights cache is keyed by converter, options and file, not by the file alone;
* a run card names the dev protocol its numbers came from (or uses the full dev evaluation).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import mmzoo
from mmzoo import _atomic
from mmzoo.cli.convert_cmd import parse_options
from mmzoo.data import PrecomputedDataset, make_shapes
from mmzoo.data.importing.writer import MARKER_NAME, ImportWriter, Layout
from mmzoo.errors import DataError, StorageError
from mmzoo.hub import cards, push_folder
from tests.conftest import TINY_MMCA_RUN, isolate_registries, tiny_model
from tests.hub_server import fake_hub  # noqa: F401  (fake_hub is a fixture)
from tests.test_convert import ToyConverter, research_checkpoint


# -- 1a: the import writer ----------------------------------------------------------------------------------
def test_an_import_over_the_file_size_limit_is_a_storage_error_and_reruns_cleanly(tmp_path):
    resource = pytest.importorskip("resource")
    layout = Layout({"train": 2000, "dev": 10}, 36, 2048, False)  # train_ims.npy: about 590 MB
    writer = ImportWriter(tmp_path / "out", layout, {"x": 1})
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, hard))  # Python ignores SIGXFSZ: writes fail with EFBIG
    try:
        with pytest.raises(StorageError, match=r"train_ims\.npy\.partial.*file-size limit.*choose a writable place"):
            writer.start()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        writer.close()
    assert not list((tmp_path / "out").glob("*.partial")), "no half-created feature file is left"
    small = ImportWriter(tmp_path / "out", Layout({"train": 2, "dev": 1}, 3, 4, False), {"x": 1})
    try:
        assert small.start() == "new"
    finally:
        small.close()


# -- 1b: converter options -------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["*x.json", "[a", "@vocab.json", "{a: [", "%x"])
def test_a_converter_option_yaml_cannot_parse_is_kept_as_the_string(raw):
    assert parse_options(["--vocab", raw, "--word-dim", "8", "--flag"]) == {"vocab": raw, "word_dim": 8, "flag": True}
    assert parse_options([f"--vocab={raw}"]) == {"vocab": raw}


def test_the_cli_converts_with_a_vocabulary_path_yaml_cannot_parse(tmp_path, monkeypatch, capsys, toys):
    from mmzoo.cli import main

    monkeypatch.chdir(tmp_path)
    path = research_checkpoint(tmp_path / "model_best.pth")
    # the toy converter has no vocab option: the error is the converter's (a ConfigError, exit 2), not YAML's
    assert main(["convert", "toy-review", str(path), "--out", "out", "--vocab", "*x.json"]) == 2
    err = capsys.readouterr().err
    assert "Invalid options for the 'toy-review' converter" in err and "vocab" in err


# -- 1c: saving a model ------------------------------------------------------------------------------------------
def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("failing", ["config.json", "README.md", "assets"])
def test_a_failing_write_while_saving_is_a_storage_error_and_keeps_the_old_folder(tmp_path, monkeypatch, failing):
    folder = tiny_model("vsepp").save_pretrained(tmp_path / "model")
    (folder / "notes.txt").write_text("mine")  # a file of the user's in the folder
    before = _snapshot(folder)
    new = tiny_model("vsepp")
    with torch.no_grad():
        new.visual.fc.weight.add_(1.0)
    disk_full = OSError(errno.ENOSPC, "No space left on device")

    if failing == "assets":

        def broken_assets(directory: Path) -> None:
            raise disk_full

        monkeypatch.setattr(new.text, "save_assets", broken_assets)
    else:
        writers = {"config.json": "atomic_write_json", "README.md": "atomic_write_text"}
        real = getattr(_atomic, writers[failing])

        def broken(path, *args, **kwargs):
            if Path(path).name == failing:
                raise disk_full
            return real(path, *args, **kwargs)

        monkeypatch.setattr(_atomic, writers[failing], broken)
    with pytest.raises(StorageError, match=r"disk is full.*Free space or choose a writable place"):
        new.save_pretrained(folder)
    assert _snapshot(folder) == before, "the old model is intact and nothing new was mixed in"
    assert [p.name for p in tmp_path.iterdir()] == ["model"], "no temporary folder is left beside it"
    loaded = mmzoo.from_pretrained(f"local-dir:{folder}")
    assert not torch.equal(loaded.visual.fc.weight, new.visual.fc.weight)


def test_saving_over_a_model_replaces_its_files_and_keeps_the_users(tmp_path):
    folder = mmzoo.Ensemble([tiny_model("mmca"), tiny_model("vsepp")]).save_pretrained(tmp_path / "model")
    assert (folder / "member-1" / "model.safetensors").is_file()
    (folder / "notes.txt").write_text("mine")
    model = tiny_model("vsepp")
    model.save_pretrained(folder)
    assert (folder / "notes.txt").read_text() == "mine"
    assert not (folder / "member-0").exists(), "the ensemble's members do not stay beside the new model"
    fresh = model.save_pretrained(tmp_path / "fresh")
    assert sorted(p.name for p in folder.iterdir()) == sorted([p.name for p in fresh.iterdir()] + ["notes.txt"])
    loaded = mmzoo.from_pretrained(f"local-dir:{folder}")
    assert torch.equal(loaded.visual.fc.weight, model.visual.fc.weight)


def test_saving_into_a_read_only_folder_is_a_storage_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(StorageError, match="permission is denied"):
            tiny_model("vsepp").save_pretrained(folder)
    finally:
        folder.chmod(0o755)


# -- 2: push_folder ----------------------------------------------------------------------------------------
def test_push_uploads_no_dot_file_or_temporary_file_at_any_depth(fake_hub, tmp_path):  # noqa: F811
    folder = tiny_model("vsepp").save_pretrained(tmp_path / "model")
    leftovers = [
        "text/.vocab.json.tmp1234",
        "text/.hidden",
        "visual/.cache/x.json",
        ".model.safetensors.tmp",
        "text/vocab.json.tmp99",
        "text/part.incomplete",
        "text/vocab.json.partial",
        ".mmzoo-save.tmp/config.json",
    ]
    for name in leftovers:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}")
    info = push_folder(folder, "org/clean")
    files = set(fake_hub.repos["org/clean"].commits[info.oid])
    assert not files & set(leftovers)
    assert {"config.json", "model.safetensors", "README.md", "text/vocab.json"} <= files


# -- 3: make_shapes(overwrite=True) ----------------------------------------------------------------------------
def test_make_shapes_overwrite_leaves_exactly_a_fresh_datasets_files(tmp_path):
    options = {"images": 20, "dev_images": 10, "test_images": 10, "regions": 8, "region_dim": 16}
    fresh = tmp_path / "fresh"
    make_shapes(fresh, **options)
    old = tmp_path / "old"
    make_shapes(old, **options, seed=3)
    # what an earlier imported dataset left: counts, boxes and ids of its splits, and a split shapes does not write
    np.save(old / "dev_counts.npy", np.full(10, 2, dtype=np.int64))
    np.save(old / "dev_boxes.npy", np.zeros((10, 8, 4), dtype=np.float32))
    (old / "dev_ids.txt").write_text("\n".join(str(i) for i in range(10)) + "\n")
    np.save(old / "restval_ims.npy", np.zeros((1, 8, 16), dtype=np.float32))
    (old / "restval_caps.txt").write_text("a\n" * 5)
    (old / "notes.txt").write_text("mine")
    (old / MARKER_NAME).write_text("{}")  # an import that was started here and never finished
    with pytest.raises(DataError, match="already holds a dataset"):
        make_shapes(old, **options)
    make_shapes(old, **options, overwrite=True)
    assert sorted(p.name for p in old.iterdir()) == sorted([p.name for p in fresh.iterdir()] + ["notes.txt"])
    assert _snapshot(old) == {**_snapshot(fresh), "notes.txt": b"mine"}
    dev = PrecomputedDataset(old, "dev")
    assert dev.counts is None and dev.boxes([0]) is None


def test_make_shapes_knows_the_import_marker_by_its_name():
    from mmzoo.data.layout import IMPORT_MARKER

    assert IMPORT_MARKER == MARKER_NAME


def test_make_shapes_still_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        make_shapes(tmp_path / "f", images=20, overwrite=True)


# -- 4: the converted-weights cache ----------------------------------------------------------------------------
class ScaledToy(ToyConverter):
    """The toy converter with one more option that changes the weights."""

    class Config(ToyConverter.Config):
        scale: float = 1.0

    def convert(self, checkpoint: Path) -> mmzoo.MatchingModel:
        model = super().convert(checkpoint)
        with torch.no_grad():
            model.visual.fc.weight.mul_(self.config.scale)
        return model


@pytest.fixture
def toys(monkeypatch, tmp_path):
    isolate_registries(monkeypatch, "converter", "pretrained")
    mmzoo.registry.converter.register("toy-review", ToyConverter)
    mmzoo.registry.converter.register("scaled-toy", ScaledToy)
    monkeypatch.setenv("MMZOO_CACHE", str(tmp_path / "mmzoo-cache"))
    ToyConverter.conversions = ScaledToy.conversions = 0


def _entry(alias: str, status: str, **options: object) -> mmzoo.plugin.PretrainedEntry:
    hub = {"repo": "toy-authors/toy", "filename": "model_best.pth"} if status == mmzoo.plugin.CONVERTED else {}
    return mmzoo.plugin.PretrainedEntry(
        alias=alias,
        recipe="vsepp",
        dataset="toy",
        weights=mmzoo.plugin.Weights(format="scaled-toy", options={"word_dim": 8, **options}, **hub),
        status=status,
        license="mit",
        paper="Toy",
    )


def test_two_converted_entries_sharing_a_file_with_other_options_get_their_own_folders(fake_hub, tmp_path, toys):  # noqa: F811
    path = research_checkpoint(tmp_path / "model_best.pth")
    fake_hub.create_repo("toy-authors/toy")
    fake_hub.commit("toy-authors/toy", {"model_best.pth": path.read_bytes()})
    mmzoo.registry.pretrained.register("toy-one", _entry("toy-one", mmzoo.plugin.CONVERTED, scale=1.0))
    mmzoo.registry.pretrained.register("toy-two", _entry("toy-two", mmzoo.plugin.CONVERTED, scale=2.0))
    one = mmzoo.from_pretrained("toy-one")
    two = mmzoo.from_pretrained("toy-two")
    assert ScaledToy.conversions == 2, "the second entry is converted, not served the first one's folder"
    torch.testing.assert_close(two.visual.fc.weight, 2 * one.visual.fc.weight)
    folders = {mmzoo.download("toy-one"), mmzoo.download("toy-two")}
    assert len(folders) == 2 and ScaledToy.conversions == 2  # each cached under its own key
    assert mmzoo.from_pretrained("toy-one").visual.fc.weight.equal(one.visual.fc.weight)


def test_manual_entries_sharing_a_file_with_other_options_keep_their_own_conversions(tmp_path, toys):
    path = research_checkpoint(tmp_path / "downloaded.pth")
    mmzoo.registry.pretrained.register("toy-a", _entry("toy-a", mmzoo.plugin.MANUAL, scale=1.0))
    mmzoo.registry.pretrained.register("toy-b", _entry("toy-b", mmzoo.plugin.MANUAL, scale=3.0))
    a = mmzoo.convert_checkpoint("toy-a", path)
    b = mmzoo.convert_checkpoint("toy-b", path)
    c = mmzoo.convert_checkpoint("toy-review", path, word_dim=8)  # another converter, the same file
    assert len({a, b, c}) == 3
    for folder, scale in ((a, 1.0), (b, 3.0)):
        recorded = json.loads((folder / "config.json").read_text())["converted_from"]
        assert recorded["options"]["scale"] == scale
    torch.testing.assert_close(
        mmzoo.from_pretrained("toy-b").visual.fc.weight, 3 * mmzoo.from_pretrained("toy-a").visual.fc.weight
    )
    # the key is canonical: the same options given explicitly (defaults spelled out) name the same folder
    assert mmzoo.convert_checkpoint("scaled-toy", path, word_dim=8) == mmzoo.convert_checkpoint(
        "scaled-toy", path, word_dim=8, scale=1.0
    )


# -- 5: the run card's dev protocol ----------------------------------------------------------------------------
SETS = [*TINY_MMCA_RUN, "training.dev_eval=subset", "training.dev_subset=5"]


@pytest.fixture(scope="module")
def subset_run(tmp_path_factory):
    from mmzoo.training import prepare_run, train

    root = tmp_path_factory.mktemp("cards")
    make_shapes(root / "shapes", images=40, dev_images=12, test_images=10, seed=0, regions=8, region_dim=16)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(prepare_run(root / "shapes", "mmca", sets=SETS, epochs=2), root / "run", progress=False)
    finally:
        torch.set_num_threads(before)
    return root / "run"


def _with_rsums(run: Path, tmp_path: Path, rsums: tuple[float, float]) -> Path:
    """A copy of the run whose per-epoch dev rsums are ``rsums`` (which epoch is best is then the test's choice)."""
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "run.json").write_bytes((run / "run.json").read_bytes())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    for record, rsum in zip(records, rsums, strict=True):
        record["dev"]["rsum"] = rsum
    (copy / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return copy


def test_a_subset_run_whose_last_epoch_is_best_reports_the_full_dev_evaluation(subset_run, tmp_path):
    run = _with_rsums(subset_run, tmp_path, (1.0, 2.0))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    measured = cards.read_run_metrics(run)
    full = records[1]["dev_full"]
    assert measured["epoch"] == 2
    assert measured["metrics"] == {k: float(full[k]) for k in cards.METRIC_NAMES}
    assert "full dev split" in measured["source"] and "first" not in measured["source"]
    assert measured["data"] == json.loads((run / "run.json").read_text())["data"]


def test_a_subset_run_whose_best_epoch_is_earlier_names_the_subset_in_the_card(subset_run, tmp_path):
    run = _with_rsums(subset_run, tmp_path, (2.0, 1.0))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    measured = cards.read_run_metrics(run)
    assert measured["epoch"] == 1
    assert measured["metrics"]["rsum"] == 2.0
    assert measured["metrics"]["i2t_r1"] == float(records[0]["dev"]["i2t_r1"])
    assert "first 5 dev images" in measured["source"]
    card = cards.model_card(mmzoo.checkpoint.read_document(subset_run / "best"), measured=measured)
    assert "first 5 dev images" in card.text and "on the dev split:" not in card.text
    assert all(r.dataset_split == "dev (first 5 images)" for r in card.data.eval_results)


def test_run_json_keys_the_trainer_never_writes_are_not_read(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "rsum": 12.0}\n{"epoch": 2, "rsum": 10.0}\n')
    (tmp_path / "run.json").write_text(
        json.dumps({"best_epoch": 2, "command": "x", "dataset": "y", "data_dir": "z", "data": "data/shapes"})
    )
    measured = cards.read_run_metrics(tmp_path)
    assert measured["epoch"] == 1 and measured["data"] == "data/shapes"
    assert "command" not in measured and "dataset" not in measured


def test_a_rerank_run_without_a_full_evaluation_names_the_shortlist(tmp_path):
    record = {"epoch": 1, "dev": {"rsum": 300.0, "i2t_r1": 50.0}, "dev_eval": "rerank"}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    (tmp_path / "run.json").write_text(json.dumps({"data": "d", "dev_eval": {"mode": "rerank", "rerank": 20}}))
    measured = cards.read_run_metrics(tmp_path)
    assert measured["split"] == "dev (top 20 reranked)" and "top 20 of each query reranked" in measured["source"]
    card = cards.model_card({"model": tiny_model("vsepp").config.to_dict()}, measured=measured)
    assert "Measured by mmzoo: metrics.jsonl of the training run (epoch 1, dev split, top 20" in card.text
