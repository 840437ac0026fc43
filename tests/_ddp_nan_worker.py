"""Run by tests/test_training_ddp.py under torchrun: process 1's loss turns NaN at its second step.

Each process prints the type of the error it stopped with, so the test can check that all of them stopped with
a TrainingError (and none hung or died in a collective).
"""

from __future__ import annotations

import os
import sys

from mmzoo.errors import TrainingError
from mmzoo.training import Trainer, prepare_run
from mmzoo.training.step import TrainingStep


def main(data: str, run: str) -> None:
    sets = ["embed_dim=16", "text.word_dim=8", "training.batch_size=8", "training.epochs=1"]
    spec = prepare_run(data, "vsepp", sets=[*sets, "training.global_negatives=false"])
    forward, calls = TrainingStep.forward, {"n": 0}

    def poisoned(self, *args, **kwargs):
        loss = forward(self, *args, **kwargs)
        calls["n"] += 1
        return loss * float("nan") if self.dist_ctx.rank == 1 and calls["n"] == 2 else loss

    TrainingStep.forward = poisoned

    def say(line: str) -> None:
        """One write per line: print() writes the text and the newline apart, so two processes sharing the
        pipe could interleave them into one line."""
        os.write(sys.stdout.fileno(), (line + "\n").encode())

    try:
        Trainer(spec, run, progress=False).fit()
        say(f"rank {os.environ['RANK']}: finished")
    except TrainingError as exc:
        say(f"rank {os.environ['RANK']}: TrainingError: {exc}")
    except Exception as exc:  # what the test must not see
        say(f"rank ?: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
