"""Every Hub failure is one HubError that says what to do: push, download and load, offline or unreachable."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

import mmzoo
from mmzoo.errors import HubError
from tests.conftest import tiny_model


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unreachable_hub(closed_port, monkeypatch, tmp_path):
    """huggingface_hub pointed at the closed port, online, with an empty cache (as HF_ENDPOINT at import does)."""
    from huggingface_hub import constants

    url = f"http://127.0.0.1:{closed_port}"
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    # huggingface_hub retries a refused download 5 times with backoff (23 s); the test keeps the retries, not the waits
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda seconds: None)
    return url


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "model"
    tiny_model("vsepp").save_pretrained(folder)
    return folder


def test_push_download_and_load_without_a_network(unreachable_hub, saved):
    model = mmzoo.from_pretrained(saved)
    with pytest.raises(HubError, match=r"the upload failed, the Hub .* could not be reached.*run the upload again"):
        model.push_to_hub("me/tiny")
    with pytest.raises(HubError, match="could not be reached"):
        mmzoo.download("hf-hub:me/tiny")
    with pytest.raises(HubError, match="could not be reached"):
        mmzoo.from_pretrained("hf-hub:me/tiny")


def test_push_in_offline_mode_says_uploads_are_forbidden(monkeypatch, saved):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError) as info:
        mmzoo.from_pretrained(saved).push_to_hub("me/tiny")
    assert "offline mode forbids uploads" in str(info.value) and "local cache" not in str(info.value)


def test_the_push_command_without_a_network_and_offline(unreachable_hub, saved, monkeypatch, capsys):
    from huggingface_hub import constants

    from mmzoo.cli import main

    assert main(["push", str(saved), "--repo", "me/tiny"]) == 2
    err = capsys.readouterr().err
    assert "the upload failed" in err and unreachable_hub in err and "Traceback" not in err
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["push", str(saved), "--repo", "me/tiny"]) == 2
    assert "offline mode forbids uploads" in capsys.readouterr().err


@pytest.mark.slow
def test_the_environment_variables_route(saved, closed_port, tmp_path):
    """As a user runs it: HF_ENDPOINT and HF_HUB_OFFLINE read by a fresh process at import."""
    base = {**os.environ, "HF_TOKEN": "hf_test_token", "HF_HOME": str(tmp_path / "hf-home")}
    argv = [sys.executable, "-m", "mmzoo", "push", str(saved), "--repo", "me/tiny"]
    for env, expected in [
        ({"HF_ENDPOINT": f"http://127.0.0.1:{closed_port}", "HF_HUB_OFFLINE": "0"}, "could not be reached"),
        ({"HF_HUB_OFFLINE": "1"}, "offline mode forbids uploads"),
    ]:
        done = subprocess.run(argv, capture_output=True, text=True, env={**base, **env}, timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert expected in done.stderr
