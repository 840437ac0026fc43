"""What the multi-process tests share: a free loopback port, and how to tell a gloo transport flake from a failure.

A gloo launch on loopback now and then loses a worker in the transport, not in mmzoo (about once in ten full-suite
runs on a busy 2-core machine, never alone); the tests launch such a run once more. A rank's own mmzoo error is
never a flake.
"""

from __future__ import annotations

import socket

TRANSPORT_FLAKES = ("terminate called without an active exception", "Connection closed by peer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def transport_flake(log: str) -> bool:
    """True when a failed launch's output shows a transport flake and no mmzoo error of a rank."""
    return any(flake in log for flake in TRANSPORT_FLAKES) and ": error:" not in log
