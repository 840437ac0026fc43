"""``from_pretrained("vse-infinity-coco")`` end to end against the loopback Hub, then offline from the cache.

The repository ``cccjc/vse-infty`` on the fake Hub holds ``coco_butd_region_bert/model_best.pth`` written in
their exact format by the reference modules (tiny sizes); the zoo entry's ``--bert`` option is pointed at the
tiny BERT folder, since bert-base-uncased cannot be fetched offline.
"""

from __future__ import annotations

import pytest
import torch

import mmzoo
from mmzoo import registry
from mmzoo_plugins.vse_infinity.convert import RegionConverter
from tests.conftest import minilm_path
from tests.hub_server import fake_hub, go_offline  # noqa: F401  (fake_hub is a fixture)
from tests.reference import vse_infinity_reference as ref
from tests.test_vse_infinity_convert import (  # noqa: F401  (bert_folder is a fixture)
    CAPTIONS,
    bert_checkpoint,
    bert_folder,
    bigru_checkpoint,
    region_inputs,
)

REPO, FILE = "cccjc/vse-infty", "coco_butd_region_bert/model_best.pth"


def test_entries_are_registered_with_their_numbers():
    coco = registry.pretrained.get("vse-infinity-coco")
    assert coco.status == mmzoo.plugin.CONVERTED and coco.recipe == "vse-infinity" and coco.license == "mit"
    assert (coco.weights.repo, coco.weights.filename, coco.weights.format) == (REPO, FILE, "vse-infinity")
    assert coco.published_results["COCO 1K (5-fold)"]["i2t_r1"] == 79.7
    assert "woodfrog/vse_infty" in coco.code and "chen2021vseinfty" in coco.citation
    f30k = registry.pretrained.get("vse-infinity-f30k")
    assert f30k.weights.filename == "f30k_butd_region_bert/model_best.pth"
    assert f30k.published_results["Flickr30K 1K test"]["rsum"] == 513.5
    assert registry.pretrained.get("vse-infinity-wsl-grid-coco").weights.format == "vse-infinity-grid"
    assert registry.pretrained.get("vse-infinity-bigru-coco").status == mmzoo.plugin.MANUAL


@pytest.fixture
def coco_entry(bert_folder, monkeypatch):  # noqa: F811
    """The registered entry, its --bert option pointed at the tiny BERT for one test (restored afterwards)."""
    entry = registry.pretrained.get("vse-infinity-coco")
    monkeypatch.setitem(entry.weights.options, "bert", str(bert_folder))
    return entry


def test_from_pretrained_downloads_converts_once_then_works_offline(
    tmp_path,
    fake_hub,  # noqa: F811
    coco_entry,
    monkeypatch,
):
    img, txt = bert_checkpoint(tmp_path / "model_best.pth")
    fake_hub.create_repo(REPO)
    fake_hub.commit(REPO, {FILE: (tmp_path / "model_best.pth").read_bytes()})
    calls = []
    convert = RegionConverter.convert
    monkeypatch.setattr(RegionConverter, "convert", lambda self, path: calls.append(path) or convert(self, path))

    model = mmzoo.from_pretrained("vse-infinity-coco")
    x, lengths = region_inputs()
    mask = torch.arange(x.shape[1])[None] < lengths[:, None]
    with torch.no_grad():
        theirs = img(x, lengths) @ ref.encode_bert_captions(txt, ref.slow_bert_tokenizer(minilm_path()), CAPTIONS).t()
        ours = model.similarity(model.encode_images(x, mask), model.encode_texts(CAPTIONS))
    torch.testing.assert_close(ours, theirs, atol=2e-6, rtol=1e-5)
    assert len(calls) == 1

    go_offline(monkeypatch)
    fake_hub.requests.clear()
    again = mmzoo.from_pretrained("vse-infinity-coco")
    assert len(calls) == 1, "the converted folder is cached: no second conversion"
    assert fake_hub.requests == [], "offline: nothing is downloaded"
    with torch.no_grad():
        torch.testing.assert_close(again.similarity(again.encode_images(x, mask), again.encode_texts(CAPTIONS)), ours)


def test_manual_bigru_entry_says_what_to_do():
    with pytest.raises(mmzoo.errors.HubError, match=r"--vocab|mmzoo convert"):
        mmzoo.from_pretrained("vse-infinity-bigru-coco")


def test_manual_bigru_entry_converts_by_alias_then_loads_offline(tmp_path, fake_hub, monkeypatch):  # noqa: F811
    img, txt, vocab = bigru_checkpoint(tmp_path)
    go_offline(monkeypatch)
    folder = mmzoo.convert_checkpoint(
        "vse-infinity-bigru-coco", tmp_path / "model_best.pth", vocab=str(tmp_path / "coco_precomp_vocab.json")
    )
    model = mmzoo.from_pretrained("vse-infinity-bigru-coco")
    assert model.text.vocab == vocab and folder.is_dir()
    x, lengths = region_inputs()
    mask = torch.arange(x.shape[1])[None] < lengths[:, None]
    with torch.no_grad():
        theirs = img(x, lengths) @ ref.encode_gru_captions(txt, vocab, CAPTIONS).t()
        ours = model.similarity(model.encode_images(x, mask), model.encode_texts(CAPTIONS))
    torch.testing.assert_close(ours, theirs, atol=2e-6, rtol=1e-5)
