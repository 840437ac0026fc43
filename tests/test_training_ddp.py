"""Two gloo processes on the CPU take the same training step as one process with the doubled batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmzoo.training.distributed import DistContext
from tests._ddp_reference import one_step

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small, shared CPU it is several times faster than oversubscribed threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MODES = ["mmca-all", "mmca-h2", "mmca-all-local", "vsepp"]


@pytest.fixture(scope="module")
def distributed_weights(tmp_path_factory) -> dict[str, dict[str, torch.Tensor]]:
    """Every mode's weights after one 2-process step (one launch for all, to keep the test short)."""
    return run_two(",".join(MODES), tmp_path_factory.mktemp("ddp"))


def run_two(mode: str, tmp_path: Path) -> dict[str, dict[str, torch.Tensor]]:
    out = tmp_path / "weights.pt"
    port = str(free_port())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
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
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    return torch.load(out, weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_ddp_step_equals_single_process_with_doubled_batch(mode, distributed_weights):
    """Global mining equals one process with batch 2B; per-process mining equals the sum of the halves' losses
    (the loss sums over anchors, DDP averages over processes: the trainer scales by the world size)."""
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
