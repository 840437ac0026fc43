"""Resume: 1 epoch + resume == 2 epochs bit for bit; a killed `mmzoo train` resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmzoo.data import make_shapes
from mmzoo.errors import ConfigError
from mmzoo.training import prepare_run, read_metrics, train

ROOT = Path(__file__).resolve().parents[1]
SMALL_MMCA = [
    "embed_dim=16",
    "text.word_dim=8",
    "visual.heads=2",
    "visual.ffn_dim=32",
    "fusion.heads=2",
    "fusion.ffn_dim=32",
    "fusion.channels=4",
    "training.batch_size=8",
    "training.lr=1e-3",
    "training.warmup_epochs=1",
    "training.lr_decay_every=1",
    "training.lr_decay=0.5",
    "training.eval_batch_size=64",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small, shared CPU it is several times faster than oversubscribed threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    make_shapes(out, images=24, dev_images=10, test_images=10, regions=8, region_dim=16, seed=3)
    return out


def weights(run: Path, folder: str = "last") -> dict[str, torch.Tensor]:
    return load_file(str(run / folder / "model.safetensors"))


@pytest.mark.parametrize(
    "extra",
    [["training.hard_negatives=3"], ["training.amp=bf16", "training.grad_accum=2", "training.batch_size=4"]],
    ids=["fp32", "bf16-accum2"],
)
def test_one_epoch_then_resume_equals_two_epochs(shapes, tmp_path, extra):
    sets = [*SMALL_MMCA, *extra]  # dropout on: the RNG states must be restored too
    train(prepare_run(shapes, "mmca", sets=sets, epochs=2), tmp_path / "straight", progress=False)
    train(prepare_run(shapes, "mmca", sets=sets, epochs=1), tmp_path / "split", progress=False)
    spec = prepare_run(shapes, "mmca", sets=sets, epochs=2)
    records = train(spec, tmp_path / "split", resume=True, progress=False)
    assert [r["epoch"] for r in records] == [2]
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    straight, split = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "split")
    assert [m["epoch"] for m in split] == [1, 2]
    assert [m["dev"] for m in split] == [m["dev"] for m in straight]
    assert split[0]["hardest_negative"] is False and split[1]["hardest_negative"] is True  # warm-up epoch
    assert split[0]["hard_negatives"] == "all"  # warm-up fuses every pair; h applies afterwards
    assert split[1]["hard_negatives"] == spec.training.hard_negatives
    assert split[1]["lr"] == pytest.approx(0.5e-3)  # step decay after epoch 1


def test_run_layout_and_resolved_config(shapes, tmp_path):
    run = tmp_path / "run"
    train(
        prepare_run(shapes, "vsepp", sets=["embed_dim=16", "text.word_dim=8", "training.batch_size=16"], epochs=1),
        run,
        progress=False,
    )
    doc = json.loads((run / "run.json").read_text())
    assert doc["model"]["visual"]["in_dim"] == 16  # from the data's region size
    settings = doc["data_settings"]  # what the data suggested and was applied
    assert settings["visual.in_dim"] == 16 and "text.name" not in settings  # vsepp's GRU builds offline: kept
    assert "embed_dim" not in settings and "training.batch_size" not in settings  # the user's settings win
    assert "fusion.heads" not in settings  # a suggestion that does not fit vsepp is skipped
    assert settings["training.lr"] == 1e-3  # the shapes manifest's schedule, not the vsepp recipe's 2e-4
    assert doc["training"]["batch_size"] == 16 and doc["training"]["lr"] == 1e-3
    for name in ("best/config.json", "best/model.safetensors", "last/training_state.pt", "metrics.jsonl"):
        assert (run / name).is_file(), name
    (record,) = read_metrics(run)
    assert {"epoch", "loss", "lr", "pairs_per_s", "seconds", "dev"} <= set(record)
    assert "rsum" in record["dev"]
    with pytest.raises(ConfigError, match="--resume"):  # never overwrite a run by accident
        train(prepare_run(shapes, "vsepp", epochs=1), run, progress=False)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmzoo", "train", *args, "--no-progress"]


@pytest.mark.slow
def test_killed_mmzoo_train_resumes_from_its_checkpoint(shapes, tmp_path):
    sets = [f"--set={s}" for s in SMALL_MMCA if "batch_size" not in s] + ["--set=training.batch_size=4"]
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        _cli("--model", "mmca", "--data", str(shapes), "--out", str(run), "--epochs", "3", *sets),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    state = run / "last" / "training_state.pt"
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert state.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint in time"
    proc.send_signal(signal.SIGKILL)  # at once: inside epoch 2 (an epoch here can take well under a second)
    proc.wait()
    finished = [m["epoch"] for m in read_metrics(run)]
    assert finished and finished == list(range(1, finished[-1] + 1)) and finished[-1] < 3, finished
    done = subprocess.run(_cli("--resume", str(run)), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [m["epoch"] for m in read_metrics(run)] == [1, 2, 3]
    # the uninterrupted run (same code, in this process) ends with the same weights
    reference = tmp_path / "reference"
    spec = prepare_run(shapes, "mmca", sets=[s.removeprefix("--set=") for s in sets], epochs=3)
    train(spec, reference, progress=False)
    a, b = weights(run), weights(reference)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
