"""Parity with transformers itself: a checkpoint written by transformers' ``save_pretrained`` in the official
layout, served by the loopback Hub under the official repository name, loads through ``from_pretrained(alias)``
and scores as transformers' model run directly with its own processor (1e-5); then offline with zero requests."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

import mmzoo
from mmzoo import registry
from mmzoo_plugins.clip.calibration import logits, probabilities
from tests.hub_server import fake_hub, go_offline  # noqa: F401  (fake_hub is a fixture)
from tests.plugins.clip.checkpoints import (
    CAPTIONS,
    hub_files,
    images,
    write_clip,
    write_siglip,
    write_siglip2,
    write_siglip2_naflex,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}


def transformers_scores(folder, family):
    """Cosine and logits of transformers' own model and processor on the same images and captions."""
    from transformers import AutoProcessor, CLIPModel, Siglip2Model, SiglipModel

    processor = AutoProcessor.from_pretrained(str(folder))
    if family == "siglip2":
        model = Siglip2Model.from_pretrained(str(folder)).eval()
        # the NaFlex model card's call, on images of three aspect ratios: Siglip2Processor lower-cases the raw captions,
        # pads them to 64 and (the official tokenizer config) returns no attention mask, as big_vision ran the text
        inputs = processor(text=CAPTIONS, images=images(), padding="max_length", max_length=64, return_tensors="pt")
        assert "attention_mask" not in inputs
        assert len(set(map(tuple, inputs["spatial_shapes"].tolist()))) == 3
    elif family == "clip":
        model = CLIPModel.from_pretrained(str(folder)).eval()
        inputs = processor(text=CAPTIONS, images=images(), padding=True, return_tensors="pt")
    else:
        model = SiglipModel.from_pretrained(str(folder)).eval()
        # as the SigLIP model cards say: lower-cased, padding="max_length" (64); big_vision ran the text without a mask
        lower = [c.lower() for c in CAPTIONS]
        inputs = processor(text=lower, images=images(), padding="max_length", max_length=64, return_tensors="pt")
        inputs.pop("attention_mask", None)
    with torch.no_grad():
        out = model(**inputs)
    cosine = out.image_embeds @ out.text_embeds.t()  # the model's forward normalises both
    return cosine, out.logits_per_image


@pytest.fixture
def tiny_entry(monkeypatch):
    """Point an entry's embed_dim at the tiny checkpoint's size for one test."""

    def point(alias):
        entry = registry.pretrained.get(alias)
        monkeypatch.setitem(entry.weights.options, "embed_dim", 32)
        return entry

    return point


def no_network(*args, **kwargs):
    raise AssertionError("a socket was opened offline")


@pytest.mark.parametrize(
    ("alias", "family", "write"),
    [
        ("clip-vit-base-patch32", "clip", write_clip),
        ("siglip-base-patch16-224", "siglip", write_siglip),
        ("siglip2-base-patch16-224", "siglip", write_siglip2),
        ("siglip2-base-patch16-naflex", "siglip2", write_siglip2_naflex),
    ],
)
def test_from_pretrained_gives_transformers_scores_then_works_offline(
    tmp_path,
    fake_hub,  # noqa: F811
    tiny_entry,
    monkeypatch,
    alias,
    family,
    write,
):
    entry = tiny_entry(alias)
    folder = write(tmp_path / "official")
    fake_hub.create_repo(entry.weights.repo)
    # the official repositories also hold other frameworks' weights: never fetched (gigabytes, and pickle)
    others = {"pytorch_model.bin": b"pickle", "tf_model.h5": b"tf", "flax_model.msgpack": b"flax"}
    fake_hub.commit(entry.weights.repo, {**hub_files(folder), **others})
    cosine, their_logits = transformers_scores(folder, family)

    model = mmzoo.from_pretrained(alias)
    with torch.no_grad():
        ims, txt = model.encode_images(images()), model.encode_texts(CAPTIONS)
        ours = model.similarity(ims, txt)
        torch.testing.assert_close(ours, cosine, **TOL)
        torch.testing.assert_close(logits(model, ims, txt), their_logits, **TOL)
        probs = probabilities(model, ims, txt)
    expected = their_logits.softmax(-1) if family == "clip" else torch.sigmoid(their_logits)
    torch.testing.assert_close(probs, expected, **TOL)
    assert model.extra_config["loaded_from"]["repo"] == entry.weights.repo
    assert not [r for r in fake_hub.requests if any(name in str(r) for name in others)]

    go_offline(monkeypatch)
    fake_hub.requests.clear()
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    again = mmzoo.from_pretrained(alias)
    assert fake_hub.requests == [], "offline: nothing is requested"
    with torch.no_grad():
        torch.testing.assert_close(again.similarity(again.encode_images(images()), again.encode_texts(CAPTIONS)), ours)


def test_a_corrupted_cached_weights_file_is_refused(tmp_path, fake_hub, tiny_entry, monkeypatch):  # noqa: F811
    import os

    entry = tiny_entry("clip-vit-base-patch32")
    fake_hub.create_repo(entry.weights.repo)
    fake_hub.commit(entry.weights.repo, hub_files(write_clip(tmp_path / "official")))
    folder = mmzoo.download("clip-vit-base-patch32")
    assert (folder / "model.safetensors").is_file() and (folder / "vocab.json").is_file()
    blob = Path(os.path.realpath(folder / "model.safetensors"))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte flipped
    blob.write_bytes(bytes(data))
    go_offline(monkeypatch)
    with pytest.raises(mmzoo.errors.HubError, match="corrupted"):
        mmzoo.from_pretrained("clip-vit-base-patch32")


def test_a_repository_that_carries_code_is_refused(tmp_path, fake_hub, tiny_entry):  # noqa: F811
    entry = tiny_entry("siglip-base-patch16-224")
    files = hub_files(write_siglip(tmp_path / "official"))
    fake_hub.create_repo(entry.weights.repo)
    fake_hub.commit(
        entry.weights.repo,
        {
            **files,
            "preprocessor_config.json": files["preprocessor_config.json"][:-2]
            + b', "auto_map": {"AutoImageProcessor": "evil.Processor"}}',
        },
    )
    with pytest.raises(mmzoo.errors.CheckpointError, match="carries code"):
        mmzoo.from_pretrained("siglip-base-patch16-224")
