"""from_pretrained / push_to_hub / mmzoo push / mmzoo download against a real HTTP server on loopback.

The server (tests/hub_server.py) answers like the Hugging Face Hub, so huggingface_hub 2.4.0's own download,
cache, offline and upload code runs unchanged; nothing is mocked inside huggingface_hub or mmzoo.

How the client is pointed at the server: huggingface_hub reads ``HF_ENDPOINT``, ``HF_HOME`` and
``HF_HUB_OFFLINE`` once, at import, into ``huggingface_hub.constants``, and tests/conftest.py has already
imported it with ``HF_HUB_OFFLINE=1``. Setting the environment variables in a test would therefore do nothing.
The ``fake_hub`` fixture patches the constants the client reads at call time (``ENDPOINT``, the resolve-URL
template derived from it, ``HF_HUB_OFFLINE``, ``HF_HOME``, ``HF_HUB_CACHE`` and the token paths) with
monkeypatch, which restores them after each test; mmzoo builds a fresh ``HfApi`` per call, so none holds a stale
endpoint. This keeps the tests in one process (fast: no torch re-import per case). Because patching could miss a
constant copied at import, ``test_environment_variables_in_a_fresh_process`` also runs the user's route (the
environment variables, read at import by a new interpreter) end to end, online and then with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file

import mmzoo
from mmzoo import download
from mmzoo.cli import main
from mmzoo.errors import CheckpointError, HubError, UnknownComponentError
from mmzoo.hub import push_folder, push_run
from tests.conftest import CAPTIONS, tiny_model
from tests.hub_server import fake_hub, go_offline  # noqa: F401  (fake_hub is a fixture)

REPO = "org/tiny"


def outputs(model: mmzoo.MatchingModel) -> torch.Tensor:
    torch.manual_seed(1)
    x = torch.randn(3, 5, 24)
    with torch.no_grad():
        return model.similarity(model.encode_images(x), model.encode_texts(CAPTIONS))


@pytest.fixture(scope="module")
def model() -> mmzoo.MatchingModel:
    return tiny_model("mmca").eval()


@pytest.fixture
def pushed(fake_hub, model):  # noqa: F811
    info = model.push_to_hub(REPO, commit_message="first upload")
    fake_hub.requests.clear()
    fake_hub.headers.clear()
    return info


def blob_of(folder: Path, name: str) -> Path:
    return Path(os.path.realpath(folder / name))


# -- the round trip -----------------------------------------------------------------------------------------
def test_push_then_download_gives_identical_outputs(fake_hub, model, pushed):  # noqa: F811
    files = fake_hub.repos[REPO].commits[pushed.oid]
    assert {"config.json", "model.safetensors", "README.md", "text/vocab.json"} <= set(files)
    assert fake_hub.last_commit_message == "first upload"
    card = ModelCard(files["README.md"].decode())
    assert card.data.library_name == "mmzoo"
    config = json.loads(files["config.json"])
    assert config["model"] == model.config.to_dict()
    assert any(r["distribution"] == "mmzoo" for r in config["requires"])

    loaded = mmzoo.from_pretrained(f"hf-hub:{REPO}")
    assert torch.equal(outputs(loaded), outputs(model))
    assert not loaded.training
    agents = [h.get("user-agent", "") for h in fake_hub.headers]
    assert agents and all(f"mmzoo/{mmzoo.__version__}" in a for a in agents)


def test_push_is_one_commit_and_creates_the_repo(fake_hub, model):  # noqa: F811
    model.push_to_hub("org/new", private=True)
    posts = [p for m, p in fake_hub.requests if m == "POST"]
    assert posts.count("/api/repos/create") == 1
    assert sum(p.endswith("/commit/main") for p in posts) == 1
    assert fake_hub.repos["org/new"].private
    model.push_to_hub("org/new")  # the repository exists: exist_ok, a second commit
    assert len(fake_hub.repos["org/new"].commits) == 3  # the initial .gitattributes commit and two uploads


def test_push_to_a_branch_and_load_that_revision(fake_hub, model):  # noqa: F811
    model.push_to_hub("org/branchy", revision="v1")
    repo = fake_hub.repos["org/branchy"]
    assert "config.json" in repo.commits[repo.branches["v1"]]
    assert "config.json" not in repo.commits[repo.branches["main"]]
    assert torch.equal(outputs(mmzoo.from_pretrained("hf-hub:org/branchy@v1")), outputs(model))
    with pytest.raises(HubError, match=r"has no file 'config\.json'"):
        mmzoo.from_pretrained("hf-hub:org/branchy")


def test_warm_cache_then_offline_makes_no_request(fake_hub, model, pushed, monkeypatch):  # noqa: F811
    mmzoo.from_pretrained(f"hf-hub:{REPO}")
    fake_hub.requests.clear()
    go_offline(monkeypatch)
    loaded = mmzoo.from_pretrained(f"hf-hub:{REPO}")
    assert fake_hub.requests == []
    assert torch.equal(outputs(loaded), outputs(model))


def test_offline_with_a_cold_cache_is_a_clear_error(fake_hub, pushed, monkeypatch):  # noqa: F811
    go_offline(monkeypatch)
    with pytest.raises(HubError, match=r"not \(completely\) in the local cache .*HF_HUB_OFFLINE=1.*mmzoo download"):
        mmzoo.from_pretrained(f"hf-hub:{REPO}")
    assert fake_hub.requests == []


def test_a_partial_cache_offline_is_a_clear_error(fake_hub, pushed, monkeypatch):  # noqa: F811
    from huggingface_hub import hf_hub_download

    hf_hub_download(REPO, "config.json")  # what a load stopped by a missing plugin leaves behind
    go_offline(monkeypatch)
    with pytest.raises(HubError, match=r"has no model\.safetensors: the cache holds only part of the model"):
        mmzoo.from_pretrained(f"hf-hub:{REPO}")


def test_local_files_only_uses_the_cache(fake_hub, model, pushed):  # noqa: F811
    with pytest.raises(HubError, match="local_files_only=True"):
        mmzoo.from_pretrained(f"hf-hub:{REPO}", local_files_only=True)
    mmzoo.from_pretrained(f"hf-hub:{REPO}")
    fake_hub.requests.clear()
    assert torch.equal(outputs(mmzoo.from_pretrained(f"hf-hub:{REPO}", local_files_only=True)), outputs(model))
    assert fake_hub.requests == []


def test_cache_dir_and_token_are_passed_through(fake_hub, model, pushed, tmp_path):  # noqa: F811
    loaded = mmzoo.from_pretrained(f"hf-hub:{REPO}", cache_dir=tmp_path / "elsewhere", token="hf_test_token")
    assert torch.equal(outputs(loaded), outputs(model))
    assert list((tmp_path / "elsewhere").glob("models--org--tiny/snapshots/*/model.safetensors"))
    assert fake_hub.headers and all(h.get("authorization") == "Bearer hf_test_token" for h in fake_hub.headers)


@pytest.mark.slow
def test_bert_tokenizer_files_travel_through_the_hub(fake_hub, monkeypatch):  # noqa: F811
    bert = tiny_model("mmca", text="bert-cnn").eval()
    info = bert.push_to_hub("org/bert")
    files = set(fake_hub.repos["org/bert"].commits[info.oid])
    assert {"text/config.json", "text/tokenizer_config.json"} <= files
    assert {"text/vocab.txt", "text/tokenizer.json"} & files
    mmzoo.from_pretrained("hf-hub:org/bert")
    go_offline(monkeypatch)  # everything BERT needs came with the model: no second download
    assert torch.equal(outputs(mmzoo.from_pretrained("hf-hub:org/bert")), outputs(bert))


def test_a_published_alias_loads_its_pinned_revision(fake_hub, model, pushed, monkeypatch):  # noqa: F811
    from dataclasses import replace

    from mmzoo.hub import zoo

    entry = replace(
        zoo.get_pretrained("mmca-coco"),
        weights=mmzoo.plugin.Weights(repo=REPO, revision=pushed.oid),
        status=mmzoo.plugin.PUBLISHED,
    )
    registry = mmzoo.registry.pretrained
    monkeypatch.setattr(registry, "_entries", {**registry.snapshot()})
    registry.register("mmca-coco", entry, override=True)
    model.push_to_hub(REPO)  # main moves on; the alias stays on its pinned commit
    assert torch.equal(outputs(mmzoo.from_pretrained("mmca-coco")), outputs(model))
    assert f"/{REPO}/resolve/{pushed.oid}/config.json" in [p for _, p in fake_hub.requests]
    fake_hub.requests.clear()
    mmzoo.from_pretrained("mmca-coco")  # a pinned commit that is cached needs no request, even online
    assert fake_hub.requests == []


# -- not-found kinds ----------------------------------------------------------------------------------------
def test_each_not_found_kind_is_a_clear_hub_error(fake_hub, pushed):  # noqa: F811
    with pytest.raises(HubError, match="no repository 'org/missing'"):
        mmzoo.from_pretrained("hf-hub:org/missing")
    with pytest.raises(HubError, match="has no revision 'nope'"):
        mmzoo.from_pretrained(f"hf-hub:{REPO}@nope")
    with pytest.raises(HubError, match="has no revision 'nope'"):
        mmzoo.from_pretrained(f"hf-hub:{REPO}", revision="nope")
    fake_hub.create_repo("org/not-mmzoo")
    fake_hub.commit("org/not-mmzoo", {"pytorch_model.bin": b"\0" * 16})
    with pytest.raises(HubError, match=r"no file 'config\.json'\. It is not an mmzoo model"):
        mmzoo.from_pretrained("hf-hub:org/not-mmzoo")


def test_http_errors_are_hub_errors(fake_hub, pushed):  # noqa: F811
    fake_hub.forbidden.add(REPO)
    with pytest.raises(HubError, match=r"the Hub answered HTTP 403.*token"):
        mmzoo.from_pretrained(f"hf-hub:{REPO}")


# -- integrity ----------------------------------------------------------------------------------------------
def test_same_size_corruption_in_the_cache_is_caught_and_force_repairs_it(fake_hub, model, pushed, monkeypatch):  # noqa: F811
    folder = download(f"hf-hub:{REPO}")
    blob = blob_of(folder, "model.safetensors")
    data = bytearray(blob.read_bytes())
    data[len(data) - 5] ^= 0xFF  # inside the last tensor: still a valid safetensors file of the same size
    blob.write_bytes(bytes(data))
    with pytest.raises(HubError, match=r"model.safetensors is corrupted: its sha256 is [0-9a-f]{64}, but the Hub"):
        mmzoo.from_pretrained(f"hf-hub:{REPO}")
    go_offline(monkeypatch)
    with pytest.raises(HubError, match="is corrupted"):
        mmzoo.from_pretrained(f"hf-hub:{REPO}")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # back online
    assert download(f"hf-hub:{REPO}", force_download=True) == folder
    assert torch.equal(outputs(mmzoo.from_pretrained(f"hf-hub:{REPO}")), outputs(model))


def test_weights_altered_in_transit_are_caught_on_first_download(fake_hub, pushed):  # noqa: F811
    fake_hub.tamper.add(f"{REPO}/model.safetensors")  # same size, other bytes: huggingface_hub accepts it
    with pytest.raises(HubError, match=r"model\.safetensors is corrupted"):
        mmzoo.from_pretrained(f"hf-hub:{REPO}")


def test_a_corrupted_small_file_is_caught_by_its_git_blob_id(fake_hub, pushed):  # noqa: F811
    folder = download(f"hf-hub:{REPO}")
    vocab = blob_of(folder, "text/vocab.json")
    text = vocab.read_text()
    vocab.write_text(text.replace('"', "'", 1))
    with pytest.raises(HubError, match=r"text/vocab.json is corrupted: its git-sha1"):
        mmzoo.from_pretrained(f"hf-hub:{REPO}")


def test_a_download_cut_off_once_resumes(fake_hub, model, pushed, monkeypatch):  # noqa: F811
    from huggingface_hub import constants

    # huggingface_hub writes 10 MiB chunks; smaller ones let the cut-off land after some bytes were kept
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    fake_hub.cut_once.add(f"{REPO}/model.safetensors")
    loaded = mmzoo.from_pretrained(f"hf-hub:{REPO}")
    assert torch.equal(outputs(loaded), outputs(model))
    gets = [h for (m, p), h in zip(fake_hub.requests, fake_hub.headers, strict=True) if m == "GET"]
    weights = [
        h
        for (m, p), h in zip(fake_hub.requests, fake_hub.headers, strict=True)
        if m == "GET" and p.endswith(".safetensors")
    ]
    assert len(gets) >= 2 and len(weights) == 2 and "range" not in weights[0]
    size = len(fake_hub.repos[REPO].commits[pushed.oid]["model.safetensors"])
    resumed_at = int(weights[1]["range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= size // 2  # only the missing part was fetched again (206)


# -- local folders, strict loading, plugins ----------------------------------------------------------------
def test_local_dir_and_plain_folder_load_without_network(tmp_path, model, monkeypatch):
    model.save_pretrained(tmp_path / "saved")

    def no_network(*args, **kwargs):
        raise AssertionError("a local load opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for name in (f"local-dir:{tmp_path / 'saved'}", str(tmp_path / "saved"), tmp_path / "saved"):
        assert torch.equal(outputs(mmzoo.from_pretrained(name)), outputs(model))
    assert (tmp_path / "saved" / "README.md").is_file()
    assert download(f"local-dir:{tmp_path / 'saved'}") == tmp_path / "saved"


def test_strict_loading_lists_missing_unexpected_and_mis_shaped_keys(tmp_path, model):
    folder = model.save_pretrained(tmp_path / "m")
    weights = folder / "model.safetensors"
    good = load_file(str(weights))
    first, second = sorted(good)[:2]

    broken = dict(good)
    del broken[first]
    broken["visual.extra.weight"] = torch.zeros(2)
    broken[second] = torch.zeros(1, 2, 3)
    save_file(broken, str(weights))
    with pytest.raises(CheckpointError) as info:
        mmzoo.from_pretrained(f"local-dir:{folder}")
    message = str(info.value)
    assert f"1 missing: {first}" in message
    assert "1 unexpected: visual.extra.weight" in message
    assert f"{second}: checkpoint (1, 2, 3)" in message
    assert "Nothing was loaded" in message


def _with_component(folder: Path, distribution: str, version: str) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["model"]["fusion"]["name"] = "ghost-fusion"
    config["requires"].append({"distribution": distribution, "version": version, "components": ["fusion:ghost-fusion"]})
    (folder / "config.json").write_text(json.dumps(config))


def test_a_missing_plugin_names_the_distribution_before_weights_download(fake_hub, model, tmp_path):  # noqa: F811
    folder = model.save_pretrained(tmp_path / "m")
    _with_component(folder, "mmzoo-ghost", "1.2")
    with pytest.raises(UnknownComponentError, match=r"fusion 'ghost-fusion'.*pip install 'mmzoo-ghost>=1.2'"):
        mmzoo.from_pretrained(str(folder))
    push_folder(folder, "org/ghost")
    fake_hub.requests.clear()
    with pytest.raises(UnknownComponentError, match=r"mmzoo-ghost>=1\.2"):
        mmzoo.from_pretrained("hf-hub:org/ghost")
    assert not any(p.endswith("model.safetensors") for _, p in fake_hub.requests)
    # download (the air-gapped prefetch) does not need the plugin
    assert (download("hf-hub:org/ghost") / "model.safetensors").is_file()


def test_an_installed_distribution_that_does_not_register_the_component_points_to_mmzoo_plugins(tmp_path, model):
    folder = model.save_pretrained(tmp_path / "m")
    _with_component(folder, "mmzoo", "9.0")
    with pytest.raises(UnknownComponentError, match=r"mmzoo .* is installed but did not register it.*mmzoo plugins"):
        mmzoo.from_pretrained(str(folder))


# -- names --------------------------------------------------------------------------------------------------
def test_names_resolve_or_fail_clearly(tmp_path):
    with pytest.raises(
        HubError, match=r"has no weights to download \(status: not trained\).*mmzoo train --model mmca.*local-dir:"
    ):
        mmzoo.from_pretrained("mmca-coco")
    with pytest.raises(HubError, match=r"looks like a path.*'hf-hub:org/repo'.*'local-dir:org/repo'"):
        mmzoo.from_pretrained("org/repo")
    with pytest.raises(HubError, match=r"looks like a path.*'hf-hub:ORG/REPO'.*'local-dir:./missing'"):
        mmzoo.from_pretrained("./missing")
    with pytest.raises(UnknownComponentError, match=r"'mmca' is a recipe.*create_model"):
        mmzoo.from_pretrained("mmca")
    with pytest.raises(UnknownComponentError, match="mmca-coco, mmca-f30k"):
        mmzoo.from_pretrained("nothing-like-this")
    with pytest.raises(HubError, match="not a valid Hub name"):
        mmzoo.from_pretrained("hf-hub:a/b/c")
    with pytest.raises(HubError, match="pins revision 'v1' but revision='v2'"):
        mmzoo.from_pretrained("hf-hub:a/b@v1", revision="v2")
    with pytest.raises(CheckpointError, match="does not exist"):
        mmzoo.from_pretrained(f"local-dir:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        mmzoo.from_pretrained(f"local-dir:{tmp_path / 'empty'}")


# -- training runs and the CLI ------------------------------------------------------------------------------
def _run_folder(tmp_path: Path, model: mmzoo.MatchingModel) -> Path:
    run = tmp_path / "run"
    model.save_pretrained(run / "best")
    (run / "run.json").write_text(
        json.dumps({"data": "data/shapes", "dev_eval": {"mode": "full", "requested": "auto"}})
    )
    lines = [
        {
            "epoch": 1,
            "dev": {
                "i2t_r1": 10.0,
                "i2t_r5": 20.0,
                "i2t_r10": 30.0,
                "t2i_r1": 5.0,
                "t2i_r5": 15.0,
                "t2i_r10": 25.0,
                "rsum": 105.0,
            },
        },
        {
            "epoch": 2,
            "dev": {
                "i2t_r1": 12.5,
                "i2t_r5": 22.0,
                "i2t_r10": 31.0,
                "t2i_r1": 6.0,
                "t2i_r5": 16.0,
                "t2i_r10": 26.0,
                "rsum": 113.5,
            },
        },
        {
            "epoch": 3,
            "dev": {
                "i2t_r1": 11.0,
                "i2t_r5": 20.5,
                "i2t_r10": 30.5,
                "t2i_r1": 5.5,
                "t2i_r5": 15.5,
                "t2i_r10": 25.0,
                "rsum": 108.0,
            },
        },
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run


def test_mmzoo_push_run_then_download(fake_hub, model, tmp_path, capsys):  # noqa: F811
    run = _run_folder(tmp_path, model)
    assert main(["push", str(run), "--repo", "org/run"]) == 0
    out = capsys.readouterr().out
    repo = fake_hub.repos["org/run"]
    head = repo.branches["main"]
    assert f"commit {head}" in out and f"/org/run/commit/{head}" in out
    files = repo.commits[head]
    assert {"training/run.json", "training/metrics.jsonl", "model.safetensors", "README.md"} <= set(files)
    assert sum(p.endswith("/commit/main") for m, p in fake_hub.requests if m == "POST") == 1
    card = ModelCard(files["README.md"].decode())
    values = {(r.metric_name, r.metric_value) for r in card.data.eval_results}
    assert ("Image-to-text R@1", 12.5) in values and ("rsum (sum of the six recalls)", 113.5) in values  # best: 2
    assert "(epoch 2, full dev split). Data: `data/shapes`." in card.text
    assert all(r.dataset_split == "dev" for r in card.data.eval_results)

    assert main(["download", "hf-hub:org/run"]) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert (folder / "training" / "metrics.jsonl").is_file()
    assert torch.equal(outputs(mmzoo.from_pretrained(str(folder))), outputs(model))


def test_push_run_reads_best_from_a_cut_swap(fake_hub, model, tmp_path):  # noqa: F811
    run = _run_folder(tmp_path, model)
    os.replace(run / "best", run / ".best.old")  # a trainer killed between the two renames of best/
    info = push_run(run, "org/cut")
    assert "model.safetensors" in fake_hub.repos["org/cut"].commits[info.oid]
    assert not (run / "best").exists(), "publishing reads, it does not repair"


def test_push_run_accepts_a_plain_folder_and_rejects_others(fake_hub, model, tmp_path):  # noqa: F811
    folder = model.save_pretrained(tmp_path / "plain")
    info = push_run(folder, "org/plain")
    card = ModelCard(fake_hub.repos["org/plain"].commits[info.oid]["README.md"].decode())
    assert card.data.eval_results is None and "No numbers have been measured" in card.text
    with pytest.raises(CheckpointError, match="neither a training run"):
        push_run(tmp_path, "org/plain")
    with pytest.raises(HubError, match="not a valid Hub repository id"):
        push_run(folder, "not a repo")


def test_cli_errors_exit_2_with_the_message(capsys):
    assert main(["download", "mmca-f30k"]) == 2
    assert "has no weights to download (status: not trained)" in capsys.readouterr().err


# -- the user's route: environment variables read at import, in a fresh interpreter ------------------------
SCRIPT = """
import sys
import torch
from safetensors.torch import load_file, save_file
import mmzoo
assert "huggingface_hub" not in sys.modules, "import mmzoo must not import huggingface_hub"
model = mmzoo.from_pretrained("hf-hub:org/tiny")
x = load_file(sys.argv[1])["x"]
with torch.no_grad():
    s = model.similarity(model.encode_images(x), model.encode_texts(sys.argv[3:]))
save_file({"s": s.contiguous()}, sys.argv[2])
"""


@pytest.mark.slow
def test_environment_variables_in_a_fresh_process(fake_hub, model, pushed, tmp_path):  # noqa: F811
    torch.manual_seed(1)
    x = torch.randn(3, 5, 24)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    with torch.no_grad():
        expected = model.similarity(model.encode_images(x), model.encode_texts(CAPTIONS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=fake_hub.url, HF_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="0", PYTHONPATH=os.getcwd())
    for offline in ("0", "1"):
        fake_hub.requests.clear()
        env["HF_HUB_OFFLINE"] = offline
        out = tmp_path / f"s{offline}.safetensors"
        command = [sys.executable, "-c", SCRIPT, str(tmp_path / "x.safetensors"), str(out), *CAPTIONS]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert torch.equal(load_file(str(out))["s"], expected)
        assert (fake_hub.requests == []) == (offline == "1")
