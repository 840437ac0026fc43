"""Two gloo processes on the CPU take the same training step as one process with the doubled batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmzoo.training.distributed import DistContext
from tests._ddp_reference import one_step
from tests._launch import free_port, transport_flake

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


MODES = ["mmca-all", "mmca-h2", "mmca-all-local", "vsepp", "mmca-all-mean", "mmca-all-local-mean", "vsepp-local-mean"]


@pytest.fixture(scope="module")
def distributed_weights(tmp_path_factory) -> dict[str, dict[str, torch.Tensor]]:
    """Every mode's weights after one 2-process step (one launch for all, to keep the test short)."""
    return run_two(",".join(MODES), tmp_path_factory.mktemp("ddp"))


def run_two(mode: str, tmp_path: Path) -> dict[str, dict[str, torch.Tensor]]:
    out = tmp_path / "weights.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for attempt in range(2):
        port = str(free_port())
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tests._ddp_worker", str(r), "2", port, str(out), mode],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for r in range(2)
        ]
        logs = [p.communicate(timeout=120)[0].decode() for p in procs]
        if all(p.returncode == 0 for p in procs) or attempt == 1 or not transport_flake("\n".join(logs)):
            break
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    return torch.load(out, weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_ddp_step_equals_single_process_with_doubled_batch(mode, distributed_weights):
    """Global mining equals one process with batch 2B; per-process mining equals the sum of the halves' losses
    for a loss that sums over anchors (DDP averages over processes: the step scales by the world size) and their
    mean for a plugin loss that declares it averages ("-mean": no scaling, else its gradient would double)."""
    distributed = distributed_weights[mode]
    single = one_step(DistContext(), mode)
    before = one_step_initial(mode)
    moved = 0
    for key, value in single.items():
        torch.testing.assert_close(distributed[key], value, rtol=1e-4, atol=1e-5, msg=key)
        moved += int(not torch.equal(value, before[key]))
    assert moved > 10  # the step really changed the weights


def one_step_initial(mode: str) -> dict[str, torch.Tensor]:
    from tests.conftest import tiny_model

    return {k: v.clone() for k, v in tiny_model("vsepp" if mode.startswith("vsepp") else "mmca").state_dict().items()}


SMALL = [
    "embed_dim=16",
    "text.word_dim=8",
    "visual.heads=2",
    "visual.ffn_dim=32",
    "fusion.heads=2",
    "fusion.ffn_dim=32",
    "fusion.channels=4",
    "training.batch_size=2",
    "training.hard_negatives=2",
    "training.eval_batch_size=64",
]


def torchrun(*args: str, command: str = "train") -> list[str]:
    """The command line of ``torchrun --nproc_per_node 2 -m mmzoo COMMAND ARGS --no-progress``."""
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
        command,
        *args,
        "--no-progress",
    ]


def descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, recursively, from /proc (Linux)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through /proc")
@pytest.mark.slow
def test_killed_distributed_run_resumes_from_its_checkpoint(tmp_path):
    from mmzoo.data import make_shapes
    from mmzoo.training import read_metrics

    data = tmp_path / "shapes"
    make_shapes(data, images=24, dev_images=10, test_images=10, regions=8, region_dim=16, seed=3)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    sets = [f"--set={s}" for s in SMALL]
    proc = subprocess.Popen(
        torchrun("--model", "mmca", "--data", str(data), "--out", str(run), "--epochs", "3", *sets),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    state = run / "last" / "training_state.pt"
    deadline = time.time() + 180
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert state.exists(), proc.stderr.read().decode()[-3000:] if proc.poll() is not None else "no checkpoint"
    time.sleep(0.3)
    workers = descendants(proc.pid)  # torchrun starts each worker in its own session: kill them by id
    assert len(workers) >= 2, workers
    for pid in [*workers, proc.pid]:
        os.kill(pid, signal.SIGKILL)  # mid-epoch 2
    proc.wait()
    first = read_metrics(run)
    assert [m["epoch"] for m in first] == [1]
    done = subprocess.run(
        torchrun("--resume", str(run)), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed" in done.stderr and "after epoch 1" in done.stderr, done.stderr[-3000:]
    records = read_metrics(run)
    assert [m["epoch"] for m in records] == [1, 2, 3]
    assert records[0] == first[0]
    assert [m["step"] for m in records] == [first[0]["step"] * e for e in (1, 2, 3)]  # no step lost or repeated
    # the sharded dev evaluation (rows split over 2 processes) equals the single-process one
    from mmzoo.data import PrecomputedDataset
    from mmzoo.evaluation import evaluate
    from mmzoo.model import load_folder

    single = evaluate(load_folder(run / "last"), PrecomputedDataset(data, "dev"), progress=False)
    for key, value in records[-1]["dev"].items():
        assert value == pytest.approx(single[key], abs=1e-6), key


def test_a_non_finite_loss_on_one_process_stops_every_process_with_a_training_error(tmp_path):
    from mmzoo.data import make_shapes

    data = tmp_path / "shapes"
    make_shapes(data, images=64, dev_images=10, test_images=10, regions=8, region_dim=16, seed=3)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port"]
    command += [str(free_port()), str(ROOT / "tests" / "_ddp_nan_worker.py"), str(data), str(tmp_path / "run")]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    lines = sorted(line for line in done.stdout.splitlines() if line.startswith("rank "))
    assert len(lines) == 2 and all(": TrainingError: " in line for line in lines), done.stdout + done.stderr[-3000:]
    assert "not finite" in lines[0] and "another process" in lines[0]  # rank 0: its peer's loss
    assert "loss became nan" in lines[1] and "captions" in lines[1]  # rank 1: its own, with the batch
