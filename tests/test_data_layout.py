"""Data formats own their layout: the ``precomp`` names have one home, and a run fingerprints any format's files.

``DataFormat.files(root, split)`` lists a split's files; the run's data fingerprint digests exactly those, so a
run on a third-party format records a fingerprint and a resume on changed data warns, as on ``precomp``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mmzoo
from mmzoo.data.layout import PRECOMP
from mmzoo.training import prepare_run, train
from mmzoo.training.rundir import changed_files, data_fingerprint
from tests._jsonl_format import JsonLines, JsonLinesSplit
from tests.conftest import isolate_registries


class ShardedJsonLines(JsonLines):
    """``shards/{split}.jsonl``: a layout the old ``{split}_*`` glob never saw, listed by its own ``files``."""

    def open_split(self, root, split, manifest, **options):
        return JsonLinesSplit(Path(root) / "shards" / f"{split}.jsonl", split, manifest)

    def files(self, root, split):
        return [Path(root) / "shards" / f"{split}.jsonl"]


@pytest.fixture
def formats(monkeypatch):
    isolate_registries(monkeypatch, "data_format")
    mmzoo.registry.data_format.register("jsonl-regions", JsonLines)
    mmzoo.registry.data_format.register("jsonl-shards", ShardedJsonLines)


def write_jsonl(root: Path, fmt: str, where: str = "", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    words = ["red", "blue", "green", "circle", "square", "small", "big"]
    (root / where).mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 16), ("dev", 6)):
        rows = [
            {
                "regions": rng.normal(size=(2 + i % 3, 6)).round(4).tolist(),
                "captions": [" ".join(rng.choice(words, 3)) for _ in range(2)],
            }
            for i in range(n)
        ]
        (root / where / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (root / "mmzoo_data.json").write_text(json.dumps({"format": fmt, "captions_per_image": 2}))
    return root


def test_precomp_names_have_one_home(tmp_path):
    mmzoo.data.make_shapes(tmp_path, images=10, dev_images=10, test_images=10, regions=8, region_dim=8)
    files = mmzoo.registry.data_format.get("precomp")().files(tmp_path, "test")
    assert [p.name for p in files] == [
        PRECOMP.name("test", k) for k in ("ims", "twins", "twin_types", "caps", "scenes")
    ]
    assert PRECOMP.kind_of("test_twins.npy") == ("test", "twins") and PRECOMP.kind_of("notes.txt") is None
    assert set(data_fingerprint(tmp_path)) == {"train_ims.npy", "train_caps.txt", "train_scenes.json"} | {
        "dev_ims.npy",
        "dev_caps.txt",
        "dev_scenes.json",
    }


@pytest.mark.parametrize(
    ("fmt", "where", "key"), [("jsonl-regions", "", "train.jsonl"), ("jsonl-shards", "shards", "shards/train.jsonl")]
)
def test_a_third_party_format_is_fingerprinted_by_its_files(formats, tmp_path, fmt, where, key):
    data = write_jsonl(tmp_path / "data", fmt, where)
    recorded = data_fingerprint(data)
    assert key in recorded and len(recorded) == 2  # train and dev: the old glob found nothing
    path = data / key
    path.write_text(path.read_text().replace("red", "tan"))  # other captions
    assert changed_files(recorded, data_fingerprint(data)) == [key]


def test_a_resume_on_changed_third_party_data_warns(formats, tmp_path):
    data = write_jsonl(tmp_path / "data", "jsonl-regions")
    sets = ["embed_dim=8", "text.word_dim=8", "text.min_count=1", "training.batch_size=8", "training.epochs=1"]
    spec = prepare_run(data, "vsepp", sets=sets)
    train(spec, tmp_path / "run", progress=False)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert set(run["data_fingerprint"]) == {"train.jsonl", "dev.jsonl"}
    train_file = data / "train.jsonl"
    train_file.write_text(train_file.read_text().replace("blue", "navy"))
    spec = mmzoo.training.read_run(tmp_path / "run")
    spec.training = spec.training.model_copy(update={"epochs": 2})
    with pytest.warns(mmzoo.errors.MMZooWarning, match=r"changed since this run started \(train\.jsonl\)"):
        train(spec, tmp_path / "run", resume=True, progress=False)
