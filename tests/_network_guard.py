"""A network guard for tests of "no request": every socket connect and DNS lookup is recorded and refused.

Counting the loopback Hub's requests is not enough (huggingface_hub's side requests, such as its agent registry, go
wherever ``ENDPOINT`` points, and a DNS lookup of an unreachable Hub never reaches any server); this catches every
attempt at the socket layer. The attempts are refused with ``ConnectionRefusedError`` (callers that swallow errors
see an unreachable network) and recorded, so a test asserts that the record is empty.
"""

from __future__ import annotations

import socket

import pytest


class NetworkGuard:
    def __init__(self) -> None:
        self.attempts: list[str] = []

    def _refuse(self, what: str) -> None:
        self.attempts.append(what)
        raise ConnectionRefusedError(f"network guard: {what}")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> NetworkGuard:
        guard = self

        def connect(sock, address, *a, **k):
            guard._refuse(f"connect {address!r}")

        def connect_ex(sock, address, *a, **k):
            guard._refuse(f"connect_ex {address!r}")

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
        monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: guard._refuse(f"getaddrinfo {host!r}"))
        monkeypatch.setattr(socket, "gethostbyname", lambda host, *a, **k: guard._refuse(f"gethostbyname {host!r}"))
        monkeypatch.setattr(
            socket, "create_connection", lambda address, *a, **k: guard._refuse(f"create_connection {address!r}")
        )
        return self


@pytest.fixture
def network_guard(monkeypatch: pytest.MonkeyPatch):
    """Install with ``network_guard.install(monkeypatch)`` once the test's setup (which may use the loopback Hub)
    is done; assert ``network_guard.attempts == []``."""
    return NetworkGuard()
