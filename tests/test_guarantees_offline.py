# ruff: noqa: F811  (pytest fixtures imported from tests/hub_server.py and tests/_network_guard.py)
"""No request when none was promised: ``local_files_only=True``, ``HF_HUB_OFFLINE=1`` and local folders make no
socket connect and no DNS lookup at all (docs/hub.md "Offline and air-gapped use", docs/guarantees.md)."""

from __future__ import annotations

import os

import pytest
import torch

import mmzoo
from mmzoo.cli import main
from tests._network_guard import network_guard  # noqa: F401  (a fixture)
from tests.conftest import tiny_model
from tests.hub_server import fake_hub, go_offline  # noqa: F401  (a fixture)

REPO = "org/offline"


def fresh_agent_registry() -> None:
    """What a new process on a machine without huggingface_hub's agent registry cached looks like: the registry
    is fetched on the first request's headers unless the Hub is offline."""
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent

    _detect_agent._registry = None
    if os.path.exists(constants.AGENT_HARNESSES_PATH):
        os.remove(constants.AGENT_HARNESSES_PATH)


@pytest.fixture
def cached(fake_hub, monkeypatch):
    model = tiny_model("vsepp").eval()
    model.push_to_hub(REPO)
    mmzoo.download(f"hf-hub:{REPO}")  # fully cached
    monkeypatch.setattr("huggingface_hub.utils._detect_agent._registry", None)
    fresh_agent_registry()
    fake_hub.requests.clear()
    return model


def test_local_files_only_of_a_cached_model_makes_no_request(cached, fake_hub, network_guard, monkeypatch):
    network_guard.install(monkeypatch)
    loaded = mmzoo.from_pretrained(f"hf-hub:{REPO}", local_files_only=True)
    assert network_guard.attempts == [] and fake_hub.requests == []
    x = torch.randn(2, 5, 24)
    with torch.no_grad():
        assert torch.equal(loaded.encode_images(x).pooled, cached.encode_images(x).pooled)
    assert mmzoo.download(f"hf-hub:{REPO}", local_files_only=True).is_dir()
    assert network_guard.attempts == []
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE is False  # the switch is mmzoo's for the call only


def test_local_files_only_of_a_missing_model_is_a_hub_error_without_request(fake_hub, network_guard, monkeypatch):
    fresh_agent_registry()
    network_guard.install(monkeypatch)
    with pytest.raises(mmzoo.errors.HubError, match="local_files_only=True was passed"):
        mmzoo.from_pretrained("hf-hub:org/never-cached", local_files_only=True)
    assert network_guard.attempts == []


def test_hf_hub_offline_and_local_folders_make_no_request(
    cached, fake_hub, network_guard, monkeypatch, tmp_path, capsys
):
    go_offline(monkeypatch)
    network_guard.install(monkeypatch)
    assert main(["download", f"hf-hub:{REPO}"]) == 0
    folder = capsys.readouterr().out.strip().splitlines()[-1]
    mmzoo.from_pretrained(f"hf-hub:{REPO}")
    mmzoo.from_pretrained(f"local-dir:{folder}")
    assert network_guard.attempts == [] and fake_hub.requests == []


def test_the_guard_catches_what_it_guards(network_guard, monkeypatch):
    import socket

    network_guard.install(monkeypatch)
    with pytest.raises(ConnectionRefusedError):
        socket.getaddrinfo("huggingface.co", 443)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", 9))
    assert len(network_guard.attempts) == 2


def test_a_converted_alias_loads_offline_without_any_request(fake_hub, network_guard, monkeypatch, tmp_path):
    """docs/hub.md: a converted entry, once converted, needs "neither a download nor a conversion" offline."""
    from tests import test_convert as toy
    from tests.conftest import isolate_registries

    isolate_registries(monkeypatch, "converter", "pretrained")
    mmzoo.registry.converter.register("toy", toy.ToyConverter)
    monkeypatch.setenv("MMZOO_CACHE", str(tmp_path / "mmzoo-cache"))
    path = toy.research_checkpoint(tmp_path / "model_best.pth")
    fake_hub.create_repo("toy-authors/toy")
    fake_hub.commit("toy-authors/toy", {"coco/model_best.pth": path.read_bytes()})
    mmzoo.registry.pretrained.register("toy-coco", toy.converted_entry())
    first = mmzoo.from_pretrained("toy-coco")
    fresh_agent_registry()
    network_guard.install(monkeypatch)
    for offline in ({"local_files_only": True}, {}):
        if not offline:
            go_offline(monkeypatch)
        again = mmzoo.from_pretrained("toy-coco", **offline)
        assert torch.equal(again.visual.fc.weight, first.visual.fc.weight)
    assert network_guard.attempts == []
