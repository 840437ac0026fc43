"""A killed import, rerun, gives the same files as one uninterrupted import; a half-done split never looks done."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmzoo.data import PrecomputedDataset
from mmzoo.data.importing import FolderSource, TsvSource, import_features, read_karpathy_captions
from mmzoo.data.importing.writer import MARKER_NAME
from mmzoo.errors import DataError
from tests._import_sources import make_images, write_cocobu, write_generate_tsv, write_karpathy

REPO = Path(__file__).resolve().parents[1]
SPLITS = {"train": list(range(1, 31)), "restval": [31, 32, 33], "val": list(range(40, 46)), "test": list(range(50, 56))}
IDS = [i for ids in SPLITS.values() for i in ids]

CHILD = """
import sys, time
from pathlib import Path
from mmzoo.data.importing import FolderSource, TsvSource, import_features, read_karpathy_captions
from mmzoo.data.importing.records import FeatureSource

kind, out, karpathy, *sources = sys.argv[1:]
source = TsvSource(sources) if kind == "tsv" else FolderSource(sources, boxes=Path(sources[0]).parent / "box")
read = type(source).read

def slow_read(self, entries):  # the test's own slowness, so that the kill lands mid-import
    for item in read(self, entries):
        time.sleep(0.03)
        yield item

type(source).read = slow_read
import_features(source, read_karpathy_captions(karpathy), out, progress=False, checkpoint_bytes=1)
"""


def make_sources(tmp_path, kind):
    images = make_images(IDS, regions=(10, 36), dim=24, seed=11)
    if kind == "tsv":
        order = np.random.default_rng(0).permutation(IDS).tolist()
        sources = [tmp_path / "f.tsv.0", tmp_path / "f.tsv.1"]
        write_generate_tsv(sources[0], {i: images[i] for i in order[:20]})
        write_generate_tsv(sources[1], {i: images[i] for i in order[20:]})
    else:
        att, _ = write_cocobu(tmp_path, images, "att", "box")
        sources = [att]
    return sources, write_karpathy(tmp_path / "dataset_coco.json", SPLITS)


def source_of(kind, sources):
    return TsvSource(sources) if kind == "tsv" else FolderSource(sources, boxes=sources[0].parent / "box")


def files_of(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def kill_mid_import(kind, sources, karpathy, out):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", CHILD, kind, str(out), str(karpathy), *map(str, sources)]
    child = subprocess.Popen(args, env=env, cwd=REPO, stderr=subprocess.PIPE)
    marker, deadline, done = out / MARKER_NAME, time.monotonic() + 120, 0
    while time.monotonic() < deadline and child.poll() is None:
        try:
            done = json.loads(marker.read_text())["done"]
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= 12:
            break
        time.sleep(0.01)
    assert child.poll() is None, f"the import ended before the kill: {child.stderr.read().decode()[-2000:]}"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stderr.close()
    return done


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tsv", "npz-folder"])
def test_kill_and_rerun_gives_the_same_files(tmp_path, kind):
    sources, karpathy = make_sources(tmp_path, kind)
    reference = tmp_path / "reference"
    import_features(source_of(kind, sources), read_karpathy_captions(karpathy), reference, progress=False)

    out = tmp_path / "killed"
    done = kill_mid_import(kind, sources, karpathy, out)
    assert 12 <= done < len(IDS)
    assert (out / MARKER_NAME).is_file()
    for split in ("train", "dev", "test"):  # nothing looks complete
        assert not (out / f"{split}_ims.npy").exists()
        with pytest.raises(DataError):
            PrecomputedDataset(out, split)

    resume_at = json.loads((out / MARKER_NAME).read_text())["done"]
    source, read = source_of(kind, sources), []
    original = source.read
    source.read = lambda entries: (read.append(e) or (e, *rest) for e, *rest in original(entries))
    manifest = import_features(source, read_karpathy_captions(karpathy), out, progress=False)
    assert len(read) == len(IDS) - resume_at  # it continued; it did not start again
    assert not (out / MARKER_NAME).exists()
    assert files_of(out) == files_of(reference)  # every file, the manifest included, byte for byte
    assert manifest["splits"]["train"]["images"] == 33


def test_crash_while_renaming_then_rerun(tmp_path, monkeypatch):
    sources, karpathy = make_sources(tmp_path, "tsv")
    reference = tmp_path / "reference"
    import_features(TsvSource(sources), read_karpathy_captions(karpathy), reference, progress=False)
    out = tmp_path / "out"
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(src).endswith("dev_ims.npy.partial"):
            raise OSError("the disk went away")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk went away"):
        import_features(TsvSource(sources), read_karpathy_captions(karpathy), out, progress=False)
    monkeypatch.setattr(os, "replace", real_replace)
    (out / f".{MARKER_NAME}.tmp4242").write_text("{")  # what a kill during a marker write leaves
    assert (out / "train_ims.npy").is_file() and (out / "dev_caps.txt").is_file()  # train was done; dev was not
    assert len(PrecomputedDataset(out, "train")) == 33 * 5
    with pytest.raises(DataError, match=r"dev_ims\.npy not found"):
        PrecomputedDataset(out, "dev")
    assert not (out / "mmzoo_data.json").exists()
    import_features(TsvSource(sources), read_karpathy_captions(karpathy), out, progress=False)
    assert files_of(out) == files_of(reference)


def test_other_settings_and_overwrite(tmp_path, monkeypatch):
    sources, karpathy = make_sources(tmp_path, "tsv")
    out = tmp_path / "out"
    from mmzoo.data.importing import pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_write_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_features(TsvSource(sources), read_karpathy_captions(karpathy), out, progress=False)
    monkeypatch.undo()
    skip = read_karpathy_captions(karpathy, restval="skip")
    with pytest.raises(DataError, match=r"holds an unfinished import of other sources or settings"):
        import_features(TsvSource(sources), skip, out, progress=False)
    manifest = import_features(TsvSource(sources), skip, out, progress=False, overwrite=True)
    assert manifest["splits"]["train"]["images"] == 30
    with pytest.raises(DataError, match=r"already holds a dataset"):
        import_features(TsvSource(sources), read_karpathy_captions(karpathy), out, progress=False)
    import_features(TsvSource(sources[:1] + sources[1:]), skip, out, progress=False)  # the same import: complete

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    np.save(foreign / "train_ims.npy", np.zeros((1, 1, 1), np.float32))
    with pytest.raises(DataError, match=r"already holds a dataset \(train_ims.npy"):
        import_features(TsvSource(sources), skip, foreign, progress=False)
