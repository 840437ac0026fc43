"""Foreign checkpoints: read without unpickling, converted strictly, zoo entries that convert when loaded.

A toy converter (registered for these tests only) reads a checkpoint in the research repos' format,
``{'epoch', 'model': [image state, text state], 'best_rsum', 'opt': Namespace, 'Eiters'}``, into mmzoo's ``vsepp``
architecture; the families' own converters are tested in their own files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

import mmzoo
from mmzoo.cli import main
from tests.conftest import CAPTIONS, isolate_registries
from tests.hub_server import fake_hub, go_offline  # noqa: F401  (fake_hub is a fixture)

VOCAB = ["<pad>", "<unk>", "a", "red", "circle", "blue", "square", "green", "triangle", "two", "squares"]


class ToyConverter(mmzoo.plugin.Converter):
    """vsepp from a research-format checkpoint: image FC and a GRU text encoder."""

    class Config(mmzoo.plugin.ComponentConfig):
        word_dim: int = 8

    description = "a toy research checkpoint"
    paper = "Toy et al., A Toy Model, 2099"
    citation = "@article{toy2099, title={A Toy Model}}"
    code = "https://example.org/toy"
    license = "mit"
    conversions = 0

    def convert(self, checkpoint: Path) -> mmzoo.MatchingModel:
        type(self).conversions += 1
        ckpt = mmzoo.plugin.read_foreign_checkpoint(checkpoint)
        opt = mmzoo.plugin.checkpoint_options(ckpt, checkpoint)
        if not isinstance(ckpt.get("model"), list) or len(ckpt["model"]) != 2:
            raise mmzoo.errors.CheckpointError(
                f"{checkpoint} holds no [image, text] state dicts: not a toy checkpoint."
            )
        image, text = ckpt["model"]
        model = mmzoo.create_model(
            "vsepp",
            **{
                "visual.in_dim": opt["img_dim"],
                "embed_dim": opt["embed_size"],
                "text.word_dim": self.config.word_dim,
                "text.bidirectional": False,
            },
        )
        model.text.set_vocabulary(list(opt["vocab"]))
        tensors = {f"visual.{k}": v for k, v in image.items()}
        tensors.update({f"text.{k.replace('rnn.', 'gru.')}": v for k, v in text.items()})
        mmzoo.plugin.load_state_strict(model, tensors, str(checkpoint))
        return model.eval()


@pytest.fixture(autouse=True)
def toy_registered(monkeypatch, tmp_path):
    """The toy converter and any entry a test adds exist for that test only; mmzoo's cache lives in tmp_path."""
    isolate_registries(monkeypatch, "converter", "pretrained")
    mmzoo.registry.converter.register("toy", ToyConverter)
    monkeypatch.setenv("MMZOO_CACHE", str(tmp_path / "mmzoo-cache"))
    ToyConverter.conversions = 0


def research_checkpoint(path: Path, *, extra: object = None, seed: int = 0) -> Path:
    """A checkpoint as the research repos' train.py writes it."""
    g = torch.Generator().manual_seed(seed)
    image = {"fc.weight": torch.randn(16, 24, generator=g), "fc.bias": torch.randn(16, generator=g)}
    gru = torch.nn.GRU(8, 16, 1, batch_first=True)
    text = {"embed.weight": torch.randn(len(VOCAB), 8, generator=g)}
    text.update({f"rnn.{k}": torch.randn(v.shape, generator=g) for k, v in gru.state_dict().items()})
    opt = argparse.Namespace(embed_size=16, img_dim=24, word_dim=8, vocab=VOCAB, lr=0.0002, data_name="toy_precomp")
    checkpoint = {"epoch": 7, "model": [image, text], "best_rsum": 401.5, "opt": opt, "Eiters": 1234}
    if extra is not None:
        checkpoint["extra"] = extra
    torch.save(checkpoint, path)
    return path


def reference_scores(checkpoint: Path, regions: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """What the toy's own code computes: mean FC of regions and the GRU's last state, both normalised."""
    ckpt = mmzoo.plugin.read_foreign_checkpoint(checkpoint)
    image, text = ckpt["model"]
    img = torch.nn.functional.normalize((regions @ image["fc.weight"].t() + image["fc.bias"]).mean(1), dim=-1)
    gru = torch.nn.GRU(8, 16, 1, batch_first=True)
    gru.load_state_dict({k.removeprefix("rnn."): v for k, v in text.items() if k.startswith("rnn.")})
    index = {w: i for i, w in enumerate(VOCAB)}
    states = []
    for caption in captions:
        ids = torch.tensor([[index.get(w, 1) for w in caption.split()]])
        _, last = gru(torch.nn.functional.embedding(ids, text["embed.weight"]))
        states.append(last[-1, 0])
    return img @ torch.nn.functional.normalize(torch.stack(states), dim=-1).t()


# -- reading ------------------------------------------------------------------------------------------------
class Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_a_checkpoint_carrying_another_class_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = research_checkpoint(tmp_path / "evil.pth", extra=Evil())
    with pytest.raises(mmzoo.errors.CheckpointError, match=r"carries a pickled 'exec'.*never unpickles"):
        mmzoo.plugin.read_foreign_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


def test_broken_files_are_checkpoint_errors(tmp_path):
    good = research_checkpoint(tmp_path / "good.pth")
    (tmp_path / "half.pth").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "garbage.pth").write_bytes(b"certainly not a checkpoint" * 10)
    for name, message in (
        ("half.pth", "truncated or not a file torch.save wrote"),
        ("garbage.pth", "not a readable torch checkpoint"),
        ("missing.pth", "not found"),
        (".", "a folder"),
    ):
        with pytest.raises(mmzoo.errors.CheckpointError, match=message):
            mmzoo.plugin.read_foreign_checkpoint(tmp_path / name)
    with pytest.raises(mmzoo.errors.CheckpointError, match="no 'opt' options"):
        mmzoo.plugin.checkpoint_options({"model": []}, "x.pth")


def test_old_pytorch_files_read_too(tmp_path):
    """PyTorch 0.3 wrote the legacy (non-zip) format with pickle protocol 2."""
    path = research_checkpoint(tmp_path / "new.pth")
    ckpt = mmzoo.plugin.read_foreign_checkpoint(path)
    torch.save(ckpt, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False, pickle_protocol=2)
    legacy = mmzoo.plugin.read_foreign_checkpoint(tmp_path / "legacy.pth")
    assert vars(legacy["opt"]) == vars(ckpt["opt"]) and torch.equal(
        legacy["model"][0]["fc.weight"], ckpt["model"][0]["fc.weight"]
    )


# -- converting ---------------------------------------------------------------------------------------------
def test_convert_gives_the_reference_scores_and_cites_the_source(tmp_path):
    path = research_checkpoint(tmp_path / "model_best.pth")
    folder = mmzoo.convert_checkpoint("toy", path, tmp_path / "out")
    model = mmzoo.from_pretrained(f"local-dir:{folder}")
    regions = torch.randn(3, 5, 24)
    captions = ["a red circle", "two blue squares", "a green triangle"]
    with torch.no_grad():
        scores = model.similarity(model.encode_images(regions), model.encode_texts(captions))
    torch.testing.assert_close(scores, reference_scores(path, regions, captions), atol=1e-5, rtol=1e-5)
    source = json.loads((folder / "config.json").read_text())["converted_from"]
    assert source["converter"] == "toy" and source["file"] == "model_best.pth" and len(source["sha256"]) == 64
    card = (folder / "README.md").read_text()
    assert "Toy et al., A Toy Model, 2099" in card and "@article{toy2099" in card and "mmzoo convert toy" in card


def test_convert_refuses_to_overwrite_and_leaves_nothing_behind_on_error(tmp_path):
    path = research_checkpoint(tmp_path / "model_best.pth")
    out = tmp_path / "out"
    mmzoo.convert_checkpoint("toy", path, out)
    with pytest.raises(mmzoo.errors.ConfigError, match="already exists"):
        mmzoo.convert_checkpoint("toy", path, out)
    torch.save({"model": [{}], "opt": argparse.Namespace(embed_size=16, img_dim=24, vocab=VOCAB)}, tmp_path / "bad.pth")
    with pytest.raises(mmzoo.errors.CheckpointError, match="not a toy checkpoint"):
        mmzoo.convert_checkpoint("toy", tmp_path / "bad.pth", tmp_path / "never")
    assert not (tmp_path / "never").exists() and not list(tmp_path.glob(".never*"))
    ckpt = mmzoo.plugin.read_foreign_checkpoint(path)
    ckpt["model"][0]["fc.weight"] = torch.zeros(16, 25)
    torch.save(ckpt, tmp_path / "misshaped.pth")
    with pytest.raises(
        mmzoo.errors.CheckpointError, match=r"visual\.fc\.weight: checkpoint \(16, 25\) vs model \(16, 24\)"
    ):
        mmzoo.convert_checkpoint("toy", tmp_path / "misshaped.pth", tmp_path / "never")
    with pytest.raises(mmzoo.errors.ConfigError, match="Invalid options for the 'toy' converter"):
        mmzoo.convert_checkpoint("toy", path, tmp_path / "never", word_dim="eight")


def test_mmzoo_convert_command(tmp_path, capsys):
    path = research_checkpoint(tmp_path / "model_best.pth")
    assert main(["convert", "toy", str(path), "--out", str(tmp_path / "out"), "--word-dim", "8"]) == 0
    assert f"local-dir:{tmp_path / 'out'}" in capsys.readouterr().out
    assert main(["convert", "toy", str(path), "--out", str(tmp_path / "out2"), "--word-dim", "9"]) == 2
    assert "do not fit" in capsys.readouterr().err
    assert main(["convert", "nope", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "No converter named 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # other commands take no extra flags
        main(["list", "--pretrained", "x", "--word-dim", "8"])


# -- zoo entries in a foreign format --------------------------------------------------------------------------
def converted_entry(alias: str = "toy-coco", **weights: object) -> mmzoo.plugin.PretrainedEntry:
    return mmzoo.plugin.PretrainedEntry(
        alias=alias,
        recipe="vsepp",
        dataset="a toy dataset",
        weights=mmzoo.plugin.Weights(
            repo="toy-authors/toy", filename="coco/model_best.pth", format="toy", options={"word_dim": 8}, **weights
        ),
        status=mmzoo.plugin.CONVERTED,
        license="mit",
        paper="Toy et al., 2099",
        published_results={"COCO 1K": {"rsum": 500.0}},
        results_source="their README",
    )


def test_a_converted_entry_downloads_verifies_converts_once_then_works_offline(fake_hub, tmp_path, monkeypatch):  # noqa: F811
    path = research_checkpoint(tmp_path / "model_best.pth")
    fake_hub.create_repo("toy-authors/toy")
    fake_hub.commit("toy-authors/toy", {"coco/model_best.pth": path.read_bytes()})
    mmzoo.registry.pretrained.register("toy-coco", converted_entry())
    model = mmzoo.from_pretrained("toy-coco")
    assert ToyConverter.conversions == 1
    regions, captions = torch.randn(2, 5, 24), ["a red circle", "two blue squares"]
    with torch.no_grad():
        scores = model.similarity(model.encode_images(regions), model.encode_texts(captions))
    torch.testing.assert_close(scores, reference_scores(path, regions, captions), atol=1e-5, rtol=1e-5)
    go_offline(monkeypatch)
    fake_hub.requests.clear()
    again = mmzoo.from_pretrained("toy-coco")
    assert ToyConverter.conversions == 1 and fake_hub.requests == []  # cached: no download, no conversion
    assert torch.equal(again.visual.fc.weight, model.visual.fc.weight)
    assert isinstance(mmzoo.download("toy-coco"), Path)


def test_a_converted_checkpoint_is_hashed_once_on_its_first_load(fake_hub, tmp_path, monkeypatch):  # noqa: F811
    """Verifying the download and keying the conversion cache share one sha256 of the (possibly GB) file."""
    import mmzoo.hub.transfer
    import mmzoo.pretrained

    path = research_checkpoint(tmp_path / "model_best.pth")
    fake_hub.create_repo("toy-authors/toy")
    fake_hub.commit("toy-authors/toy", {"coco/model_best.pth": path.read_bytes()})
    mmzoo.registry.pretrained.register("toy-coco", converted_entry())
    hashed = []
    real = mmzoo.hub.transfer.file_digest

    def counting(file, algorithm):
        hashed.append(Path(file).name)
        return real(file, algorithm)

    monkeypatch.setattr(mmzoo.hub.transfer, "file_digest", counting)
    monkeypatch.setattr(mmzoo.pretrained, "file_digest", counting)
    mmzoo.from_pretrained("toy-coco")
    assert ToyConverter.conversions == 1
    assert hashed.count("model_best.pth") == 1, hashed


def test_a_converted_entry_refuses_a_file_that_is_not_the_pinned_one(fake_hub, tmp_path):  # noqa: F811
    path = research_checkpoint(tmp_path / "model_best.pth")
    fake_hub.create_repo("toy-authors/toy")
    fake_hub.commit("toy-authors/toy", {"coco/model_best.pth": path.read_bytes()})
    mmzoo.registry.pretrained.register("toy-coco", converted_entry(sha256="0" * 64))
    with pytest.raises(mmzoo.errors.HubError, match="not the pinned file"):
        mmzoo.from_pretrained("toy-coco")
    assert ToyConverter.conversions == 0


def test_a_manual_entry_says_where_to_download_and_installs_by_convert(tmp_path, capsys, monkeypatch):
    entry = mmzoo.plugin.PretrainedEntry(
        alias="toy-drive",
        recipe="vsepp",
        dataset="a toy dataset",
        weights=mmzoo.plugin.Weights(format="toy", options={"word_dim": 8}, url="https://drive.example/toy"),
        status=mmzoo.plugin.MANUAL,
        license="mit",
        paper="Toy et al., 2099",
    )
    mmzoo.registry.pretrained.register("toy-drive", entry)
    with pytest.raises(mmzoo.errors.HubError, match=r"https://drive\.example/toy.*mmzoo convert toy-drive"):
        mmzoo.from_pretrained("toy-drive")
    path = research_checkpoint(tmp_path / "downloaded.pth")
    assert main(["convert", "toy-drive", str(path)]) == 0
    assert "from_pretrained('toy-drive')" in capsys.readouterr().out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = mmzoo.from_pretrained("toy-drive")
    assert isinstance(model, mmzoo.MatchingModel)
    card = json.loads(
        (
            Path(json.loads(mmzoo.hub.zoo.installed_marker("toy-drive").read_text())["folder"]) / "config.json"
        ).read_text()
    )
    assert card["converted_from"]["file"] == "downloaded.pth"


def test_an_entry_with_members_loads_as_an_ensemble(tmp_path):
    for alias, seed in (("toy-a", 0), ("toy-b", 1)):
        entry = mmzoo.plugin.PretrainedEntry(
            alias=alias,
            recipe="vsepp",
            dataset="toy",
            weights=mmzoo.plugin.Weights(format="toy", options={"word_dim": 8}),
            status=mmzoo.plugin.MANUAL,
            license="mit",
            paper="Toy",
        )
        mmzoo.registry.pretrained.register(alias, entry)
        mmzoo.convert_checkpoint(alias, research_checkpoint(tmp_path / f"{alias}.pth", seed=seed))
    both = mmzoo.plugin.PretrainedEntry(
        alias="toy-ensemble",
        recipe="vsepp",
        dataset="toy",
        weights=mmzoo.plugin.Weights(),
        status=mmzoo.plugin.MANUAL,
        license="mit",
        paper="Toy",
        members=("toy-a", "toy-b"),
    )
    mmzoo.registry.pretrained.register("toy-ensemble", both)
    ensemble = mmzoo.from_pretrained("toy-ensemble")
    a, b = mmzoo.from_pretrained("toy-a"), mmzoo.from_pretrained("toy-b")
    regions = torch.randn(2, 5, 24)
    with torch.no_grad():
        mean = (
            a.similarity(a.encode_images(regions), a.encode_texts(CAPTIONS))
            + b.similarity(b.encode_images(regions), b.encode_texts(CAPTIONS))
        ) / 2
        scores = ensemble.similarity(ensemble.encode_images(regions), ensemble.encode_texts(CAPTIONS))
    torch.testing.assert_close(scores, mean)
