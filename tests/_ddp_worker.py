"""Worker of the 2-process gloo test: one DDP training step on this rank's half of a fixed batch.

Run as ``python -m tests._ddp_worker RANK WORLD PORT OUT MODE[,MODE...]`` (the test starts the processes).
"""

from __future__ import annotations

import os
import sys

import torch


def main() -> None:
    rank, world, port, out, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
        }
    )
    torch.set_num_threads(1)
    from mmzoo.training.distributed import init_distributed, shutdown_distributed
    from tests._ddp_reference import one_step

    ctx = init_distributed("cpu")
    weights = {m: one_step(ctx, m) for m in mode.split(",")}
    if rank == 0:
        torch.save(weights, out)
    shutdown_distributed(ctx)


if __name__ == "__main__":
    main()
