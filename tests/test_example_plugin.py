"""The separate distribution plugins/mmzoo-example-fusion, installed by the README's set-up command."""

from __future__ import annotations

import torch

import mmzoo
from mmzoo.cli import main
from tests.conftest import CAPTIONS


def test_example_plugin_is_discovered_from_its_own_distribution():
    record = next(r for r in mmzoo.plugin.plugin_records() if r.name == "example-fusion")
    assert record.status == "loaded"
    assert record.distribution == "mmzoo-example-fusion" and record.version == "0.1.0"
    assert record.components == [("fusion", "word-region-max")]


def test_example_plugin_is_listed_by_the_cli(capsys):
    assert main(["components", "fusion"]) == 0
    out = capsys.readouterr().out
    assert any("word-region-max" in line and "example-fusion" in line for line in out.splitlines())


def test_example_fusion_trains_one_step():
    torch.manual_seed(0)
    model = mmzoo.create_model(
        "mmca",
        **{
            "visual.in_dim": 24,
            "embed_dim": 32,
            "visual.heads": 4,
            "text.name": "gru",
            "fusion.name": "word-region-max",
            "fusion.proj_dim": 16,
        },
    ).train()
    model.text.fit(CAPTIONS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    features = torch.randn(4, 5, 24)
    before = {n: p.detach().clone() for n, p in model.fusion.named_parameters()}
    out = model(features, CAPTIONS)
    out.loss.backward()
    optimizer.step()
    assert torch.isfinite(out.loss)
    assert all(not torch.equal(before[n], p) for n, p in model.fusion.named_parameters())


def test_cli_list_and_components(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mmca" in out and "vsepp" in out and "mmca-no-cross" in out
    assert main(["list", "vse*"]) == 0
    out = capsys.readouterr().out
    assert "vsepp" in out and "mmca" not in out
    assert main(["components", "--fields"]) == 0
    out = capsys.readouterr().out
    assert "mmca-regions" in out and ".heads" in out and "triplet" in out
    assert "PydanticUndefined" not in out and "(required)" in out  # SCAN's converter needs its vocab
