"""Saved indexes: build from every kind of source, info, add, resume after a kill, corruption, and the engines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmzoo.cli import main
from mmzoo.data import read_captions
from mmzoo.errors import DataError, InputError
from mmzoo.model import load_folder
from mmzoo.scoring import EmbeddingIndex
from mmzoo.serving import IndexCorruptError, IndexMismatchError, SavedIndex, add_items, build_index, detect_source
from mmzoo.serving import build as build_module
from mmzoo.serving.retrieve import check_reranker
from tests._launch import free_port, transport_flake
from tests._serving import make_world

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    return make_world(tmp_path_factory.mktemp("serving"))


def build_argv(world, out: Path) -> list[str]:
    """``mmzoo index build`` of the tiny VSE++ over the test split's regions, in four shards of 8."""
    source = [str(world["vse"]), str(world["shapes"]), "--split", "test"]
    return ["index", "build", *source, "--out", str(out), "--shard-size", "8", "--batch-size", "4", "--no-progress"]


def region_index(world, out: Path, *extra: str) -> Path:
    assert main([*build_argv(world, out), *extra]) == 0
    return out


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_region_index_holds_the_model_vectors_and_finds_what_the_model_finds(world, tmp_path, capsys):
    out = region_index(world, tmp_path / "idx")
    printed = capsys.readouterr().out
    assert "30 regions, 32-d float16 vectors in 4 shard(s)" in printed and "ann:      flat" in printed
    index = SavedIndex.open(out)
    model = load_folder(world["vse"]).eval()
    from mmzoo.data import PrecomputedDataset

    data = PrecomputedDataset(world["shapes"], "test")
    features, mask = data.image_features(range(data.num_images))
    with torch.no_grad():
        images = model.encode_images(torch.from_numpy(features), torch.from_numpy(mask))
    stored = index.vectors(range(index.count))
    np.testing.assert_array_equal(stored, images.pooled.numpy().astype(np.float16).astype(np.float32))
    rows = index.items([0, 29])
    assert rows[0]["key"] == "test/0" and rows[1]["caption"] == data.captions[29 * data.captions_per_image]
    assert len(rows[0]["sha256"]) == 64 and rows[0]["size"] == 8 * 24 * 4
    queries = read_captions(world["shapes"] / "test_caps.txt")[:6]
    saved = model.search(queries, index, top_k=5)
    memory = model.search(queries, EmbeddingIndex.from_images(model, images), top_k=5)
    assert torch.equal(saved.indices, memory.indices)
    torch.testing.assert_close(saved.scores, memory.scores, atol=2e-3, rtol=0)
    assert main(["index", "info", str(out), "--verify"]) == 0
    assert "all sha256 match" in capsys.readouterr().out


def test_cross_model_rerank_over_a_saved_index_equals_the_in_memory_search(world, tmp_path):
    out = region_index(world, tmp_path / "idx")
    index = SavedIndex.open(out)
    vse, mmca = load_folder(world["vse"]).eval(), load_folder(world["mmca"]).eval()
    queries = read_captions(world["shapes"] / "test_caps.txt")[:3]
    saved = mmca.search(queries, index, top_k=5, rerank=30, shortlist=vse)  # every item: no shortlist ties
    from mmzoo.data import PrecomputedDataset

    data = PrecomputedDataset(world["shapes"], "test")
    f, m = (torch.from_numpy(a) for a in data.image_features(range(30)))
    with torch.no_grad():
        memory_index = EmbeddingIndex.from_images(
            mmca, mmca.encode_images(f, m), shortlist=(vse, vse.encode_images(f, m))
        )
        memory = mmca.search(queries, memory_index, top_k=5, rerank=30, shortlist=vse)
    assert torch.equal(saved.indices, memory.indices)
    torch.testing.assert_close(saved.scores, memory.scores, atol=1e-4, rtol=1e-4)
    with pytest.raises(IndexMismatchError, match=r"built by .*vse"):
        mmca.search(queries, index, top_k=5)  # the query model must be the index's model
    pixels = load_folder(world["pixels"])
    with pytest.raises(IndexMismatchError, match=r"vse.*over region features.*reranker pixels-x reads images"):
        check_reranker(index, pixels, "pixels-x")


def test_image_folder_and_caption_indexes(world, tmp_path, capsys):
    out = tmp_path / "pics"
    args = ["index", "build", str(world["pixels"]), str(world["pictures"]), "--out", str(out), "--dtype", "float32"]
    assert main([*args, "--no-progress"]) == 0
    index = SavedIndex.open(out)
    keys = [r["key"] for r in index.items(range(index.count))]
    assert keys == ["scene0.png", "scene2.png", "scene4.png", "sub/scene1.png", "sub/scene3.png"]
    assert index.vectors([0]).dtype == np.float32 and index.image_file(3) == world["pictures"] / "sub/scene1.png"
    assert (
        index.items([0])[0]["sha256"]
        == __import__("hashlib").sha256((world["pictures"] / "scene0.png").read_bytes()).hexdigest()
    )
    caps = tmp_path / "caps"
    assert (
        main(["index", "build", str(world["pixels"]), str(world["captions"]), "--out", str(caps), "--no-progress"]) == 0
    )
    text_index = SavedIndex.open(caps)
    assert text_index.kind == "texts" and text_index.count == 12
    model = load_folder(world["pixels"]).eval()
    hits = model.search([world["pictures"] / "scene0.png"], text_index, top_k=3)
    with torch.no_grad():
        exact = model.similarity(
            model.encode_images([world["pictures"] / "scene0.png"]),
            model.encode_texts([c for c in world["captions"].read_text().splitlines() if c]),
        )
    assert hits.indices[0].tolist() == exact[0].topk(3).indices.tolist()


def test_karpathy_split_source_and_a_missing_extra(world, tmp_path, capsys, monkeypatch):
    split_file = world["shapes"] / "dataset_shapes.json"
    args = ["index", "build", str(world["pixels"]), str(split_file), "--split", "dev", "--out", str(tmp_path / "k")]
    assert main([*args, "--no-progress"]) == 2
    assert "give --image-root" in capsys.readouterr().err
    assert main([*args, "--image-root", str(world["shapes"] / "images"), "--no-progress"]) == 0
    index = SavedIndex.open(tmp_path / "k")
    first = index.items([0])[0]
    assert index.count == 10 and first["key"] == "dev/000000.png" and first["caption"]
    assert index.image_file(0) == world["shapes"] / "images" / "dev" / "000000.png"
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if mmzoo[serving] were not installed
    assert (
        main([*args[:-1], str(tmp_path / "k2"), "--image-root", str(world["shapes"] / "images"), "--no-progress"]) == 2
    )
    assert 'pip install "mmzoo[serving]"' in capsys.readouterr().err
    assert not (tmp_path / "k2").exists()  # refused before any work


def test_bad_sources_and_outputs_are_named_errors(world, tmp_path, capsys):
    model = str(world["vse"])
    cases = [
        (["index", "build", model, str(tmp_path / "nothing"), "--out", str(tmp_path / "a")], "does not exist"),
        (
            ["index", "build", model, str(world["shapes"]), "--split", "nope", "--out", str(tmp_path / "a")],
            "no nope_ims.npy",
        ),
        (
            ["index", "build", model, str(world["pictures"]), "--out", str(tmp_path / "a")],
            "reads region features but the source holds images",
        ),
        (
            [
                "index",
                "build",
                str(world["pixels"]),
                str(world["shapes"]),
                "--split",
                "test",
                "--out",
                str(tmp_path / "a"),
            ],
            "reads images but the source holds region features",
        ),
        (
            ["index", "build", model, str(world["shapes"]), "--split", "test", "--out", str(world["pictures"])],
            "not an empty folder",
        ),
        (["index", "info", str(tmp_path)], "is not a saved index"),
    ]
    for argv, message in cases:
        assert main([*argv, "--no-progress"] if argv[1] == "build" else argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    with pytest.raises(DataError, match="holds no images"):
        (tmp_path / "empty").mkdir()
        detect_source(tmp_path / "empty").items()


def test_a_killed_build_resumes_to_the_same_bytes(world, tmp_path, monkeypatch):
    whole = region_index(world, tmp_path / "whole")
    real, calls = build_module.embed_shard, []

    def dies_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # killed while writing shard 2: half a file is left behind
            (args[5] / "shards" / ".00002.npy.tmp123").write_bytes(b"\x93NUMPY half")
            (args[5] / "shards" / "00002.npy").write_bytes(b"garbage from an older attempt")
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(build_module, "embed_shard", dies_on_third)
    argv = build_argv(world, tmp_path / "cut")
    assert main(argv) == 130
    assert not (tmp_path / "cut" / "manifest.json").exists()
    with pytest.raises(IndexCorruptError, match=r"no manifest\.json"):
        SavedIndex.open(tmp_path / "cut")
    monkeypatch.setattr(build_module, "embed_shard", real)
    done_before = (tmp_path / "cut" / "shards" / "00000.npy").stat().st_mtime_ns
    assert main(argv) == 0
    assert (tmp_path / "cut" / "shards" / "00000.npy").stat().st_mtime_ns == done_before  # kept, not redone
    assert not (tmp_path / "cut" / "shards" / ".00002.npy.tmp123").exists()  # the resume removed it
    assert folder_bytes(tmp_path / "cut") == folder_bytes(whole)
    other = [*argv[:-5], "--shard-size", "4", "--no-progress"]
    assert main(other) == 2  # a finished index is not rebuilt in place


def test_corrupted_shard_is_named_at_start_up(world, tmp_path, capsys):
    out = region_index(world, tmp_path / "idx")
    shard = out / "shards" / "00001.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match=r"shards/00001.npy is damaged"):
        SavedIndex.open(out)
    assert main(["index", "info", str(out), "--verify"]) == 2
    assert "00001.npy is damaged" in capsys.readouterr().err
    assert main(["serve", str(out), "--port", "1"]) == 2
    assert "00001.npy is damaged" in capsys.readouterr().err


def test_add_appends_a_version_without_re_embedding(world, tmp_path):
    out = region_index(world, tmp_path / "idx")
    before = folder_bytes(out)
    model = load_folder(world["vse"]).eval()
    add_items(model, out, detect_source(world["shapes"], "dev"), progress=False)
    index = SavedIndex.open(out)
    assert index.version == 2 and index.count == 30 + 10
    after = folder_bytes(out)
    for name, data in before.items():
        if name.startswith("shards/"):
            assert after[name] == data  # the old shards were not touched
    assert index.items([30])[0]["key"] == "dev/0" and "ann-v1.faiss" in after and "ann-v2.faiss" in after
    _, ids = index.search(index.vectors([35, 3]), 1)  # a new item and an old one find themselves
    assert ids[:, 0].tolist() == [35, 3]
    other = load_folder(world["mmca"]).eval()
    with pytest.raises(IndexMismatchError, match="other weights"):
        add_items(other, out, detect_source(world["shapes"], "dev"), progress=False)
    with pytest.raises(InputError, match="holds regions"):
        add_items(model, out, detect_source(world["captions"]), progress=False)


def test_ivf_and_hnsw_indexes_find_the_exact_neighbours_of_a_small_set(world, tmp_path):
    model = load_folder(world["vse"]).eval()
    source = detect_source(world["shapes"], "test")
    exact = SavedIndex.open(build_index(model, str(world["vse"]), source, tmp_path / "flat", progress=False))
    vectors = exact.vectors(range(exact.count))
    for kind, knobs in (("ivf", {"nprobe": 1000}), ("hnsw", {"ef": 64})):
        built = build_index(model, str(world["vse"]), source, tmp_path / kind, kind=kind, progress=False, **knobs)
        index = SavedIndex.open(built)
        assert index.manifest["ann"]["kind"] == kind
        _, ids = index.search(vectors[:5], 3)
        _, truth = exact.search(vectors[:5], 3)
        assert (ids[:, 0] == truth[:, 0]).all()


def _torchrun(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "mmzoo",
        *args,
    ]


SLOW_RANK_1 = """
import os

if os.environ.get("RANK") == "1":
    import time

    import mmzoo.serving.build as build

    embed = build.embed_shard

    def late(*args, **kwargs):
        time.sleep(1.0)
        return embed(*args, **kwargs)

    build.embed_shard = late
"""


@pytest.mark.slow
def test_two_gloo_processes_write_the_same_index_as_one(world, tmp_path):
    one = region_index(world, tmp_path / "one")
    argv = build_argv(world, tmp_path / "two")
    # rank 1 embeds each of its shards a second late (a sitecustomize on its path), so rank 0 finishes first: the
    # index is only right if rank 0 waits for every rank's shards before it publishes
    slow = tmp_path / "slow_rank1"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_RANK_1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MMZOO_NUM_THREADS": "1", "PYTHONPATH": f"{slow}{os.pathsep}{ROOT}"}
    for attempt in range(2):  # a gloo transport flake (see tests/test_training_ddp.py): the same command resumes
        done = subprocess.run(
            _torchrun(*argv),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode == 0 or attempt == 1 or not transport_flake(done.stderr):
            break  # relaunched (resuming the folder) only after a transport flake, never after a rank's own error
    errors = [line for line in done.stderr.splitlines() if "mmzoo index: error:" in line]
    assert done.returncode == 0, "\n".join(errors) + "\n" + done.stderr[-3000:]
    assert folder_bytes(tmp_path / "two") == folder_bytes(one)


@pytest.mark.slow
def test_ray_data_writes_the_same_index_as_one_process(world, tmp_path):
    ray = pytest.importorskip("ray")
    one = region_index(world, tmp_path / "one")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main([*build_argv(world, tmp_path / "ray"), "--engine", "ray"]) == 0
    finally:
        ray.shutdown()
    assert folder_bytes(tmp_path / "ray") == folder_bytes(one)


@pytest.mark.slow
def test_a_build_killed_with_sigkill_resumes_to_the_same_bytes(world, tmp_path):
    import signal
    import time

    lines = [
        f"a {c} {s} left of a {d} {t}"
        for c in ("red", "blue", "green", "yellow", "purple")
        for s in ("circle", "square", "triangle", "star")
        for d in ("red", "blue", "green")
        for t in ("circle", "square")
    ]
    (tmp_path / "many.txt").write_text("\n".join(lines * 25) + "\n")  # 3,000 captions
    argv = ["index", "build", str(world["vse"]), str(tmp_path / "many.txt"), "--shard-size", "10", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MMZOO_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmzoo", *argv, "--out", str(tmp_path / "cut")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    shards = tmp_path / "cut" / "shards"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(list(shards.glob("*.done.json"))) < 5:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(shards.glob("*.done.json")))
    assert 5 <= done < 300 and not (tmp_path / "cut" / "manifest.json").exists()
    assert main([*argv, "--out", str(tmp_path / "cut")]) == 0
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    assert folder_bytes(tmp_path / "cut") == folder_bytes(tmp_path / "whole")


def test_an_ensemble_builds_and_reranks_a_saved_index(world, tmp_path):
    from mmzoo.model import Ensemble
    from mmzoo.scoring import cheap_vectors
    from mmzoo.serving import retrieve

    vse, mmca = load_folder(world["vse"]).eval(), load_folder(world["mmca"]).eval()
    ensemble = Ensemble([vse, mmca], weights=[0.5, 0.5]).eval()
    source = detect_source(world["shapes"], "test")
    index = SavedIndex.open(build_index(ensemble, "ens", source, tmp_path / "ens", shard_size=8, progress=False))
    from mmzoo.data import PrecomputedDataset

    f, m = (torch.from_numpy(a) for a in PrecomputedDataset(world["shapes"], "test").image_features(range(30)))
    with torch.no_grad():
        expected = cheap_vectors(ensemble, ensemble.encode_images(f, m)).numpy()
    np.testing.assert_allclose(index.vectors(range(30)), expected, atol=2e-3)
    queries = read_captions(world["shapes"] / "test_caps.txt")[:2]
    ranked = retrieve(index, ensemble, queries, k=5, rerank=30)  # every item: the ensemble's full score ranks all
    with torch.no_grad():
        full = ensemble.similarity(ensemble.encode_images(f, m), ensemble.encode_texts(queries))
    assert ranked.ids.tolist() == full.t().topk(5, dim=1).indices.tolist()
