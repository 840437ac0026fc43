"""``from_pretrained("blip-itm-base-coco")`` against the loopback Hub gives transformers' own numbers, then offline.

The repository ``Salesforce/blip-itm-base-coco`` on the fake Hub holds a tiny folder written by transformers'
``save_pretrained`` (tests/plugins/blip/_tiny.py). The references are computed with transformers directly:
``BlipForImageTextRetrieval(use_itm_head=False)`` and ``BlipProcessor`` for the ITC similarities, and LAVIS's
``compute_sim_matrix`` formula (``itm_head(text_encoder([ENC] ids, image_embeds))[:, 1] + ITC``) for the reranked
scores.
"""

from __future__ import annotations

import socket

import pytest
import torch

import mmzoo
from tests.hub_server import fake_hub, go_offline  # noqa: F401  (fake_hub is a fixture)
from tests.plugins.blip._tiny import CAPTIONS, ENC_ID, folder_files, photos, write_blip_folder

REPO, ALIAS = "Salesforce/blip-itm-base-coco", "blip-itm-base-coco"


@pytest.fixture(scope="module")
def blip_folder(tmp_path_factory):
    return write_blip_folder(tmp_path_factory.mktemp("blip") / "blip-itm-base-coco")


@pytest.fixture(scope="module")
def reference(blip_folder):
    """transformers run directly: (ITC similarities, LAVIS reranked scores of every pair, [CLS] ITM logits)."""
    from transformers import BlipForImageTextRetrieval, BlipProcessor

    hf = BlipForImageTextRetrieval.from_pretrained(blip_folder).eval()
    processor = BlipProcessor.from_pretrained(blip_folder)
    pixels = processor(images=photos(), return_tensors="pt")["pixel_values"]
    text = processor(text=CAPTIONS, padding=True, return_tensors="pt")
    with torch.no_grad():
        itc = hf(
            input_ids=text["input_ids"], attention_mask=text["attention_mask"], pixel_values=pixels, use_itm_head=False
        ).itm_score
        image_embeds = hf.vision_model(pixel_values=pixels).last_hidden_state
        enc_ids = text["input_ids"].clone()
        enc_ids[:, 0] = ENC_ID
        lavis = torch.empty_like(itc)
        cls_logit = torch.empty_like(itc)
        for i in range(len(pixels)):
            for j in range(len(CAPTIONS)):
                out = hf.text_encoder(
                    input_ids=enc_ids[j : j + 1],
                    attention_mask=text["attention_mask"][j : j + 1],
                    encoder_hidden_states=image_embeds[i : i + 1],
                    encoder_attention_mask=torch.ones(image_embeds.shape[:2], dtype=torch.long)[i : i + 1],
                ).last_hidden_state
                lavis[i, j] = hf.itm_head(out[:, 0, :])[0, 1] + itc[i, j]
                forward = hf(
                    input_ids=text["input_ids"][j : j + 1],
                    attention_mask=text["attention_mask"][j : j + 1],
                    pixel_values=pixels[i : i + 1],
                ).itm_score
                cls_logit[i, j] = forward[0, 1]
    return itc, lavis, cls_logit


def outputs(model):
    with torch.no_grad():
        images, texts = model.encode_images(photos()), model.encode_texts(CAPTIONS)
        return images.pooled @ texts.pooled.t(), model.similarity(images, texts)


def test_zoo_entry_loads_from_the_hub_with_transformers_numbers_then_offline(
    blip_folder,
    reference,
    fake_hub,  # noqa: F811
    monkeypatch,
):
    fake_hub.create_repo(REPO)
    fake_hub.commit(REPO, {**folder_files(blip_folder), "modeling_evil.py": b"raise SystemExit('code ran')\n"})
    model = mmzoo.from_pretrained(ALIAS)
    itc, lavis, _ = reference
    ours_itc, ours_s = outputs(model)
    torch.testing.assert_close(ours_itc, itc, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours_s, lavis, atol=1e-5, rtol=1e-5)
    fetched = [path for method, path in fake_hub.requests if method == "GET" and "/resolve/" in path]
    assert any(path.endswith("model.safetensors") for path in fetched), "the weights came from the Hub"
    assert not any(path.endswith(".py") for path in fetched), "no code file is fetched"
    assert model.config.to_dict()["visual"]["pretrained"] == REPO, "the saved config names the repo, not the cache"

    go_offline(monkeypatch)
    fake_hub.requests.clear()

    def no_network(*args, **kwargs):
        raise AssertionError("an offline load opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    again = mmzoo.from_pretrained(ALIAS)
    assert fake_hub.requests == [], "offline: nothing is requested"
    for a, b in zip(outputs(again), (ours_itc, ours_s), strict=True):
        torch.testing.assert_close(a, b)


def test_rerank_search_is_lavis_compute_sim_matrix(blip_folder, reference):
    """ITC shortlists k_test captions per image; each gets ITM match logit + ITC; the rest are not scored."""
    itc, lavis, _ = reference
    model = mmzoo.create_model(
        "blip-itm-base", **{f"{s}.pretrained": str(blip_folder) for s in ("visual", "text", "fusion")}
    )
    model.eval()
    k = 3
    with torch.no_grad():
        texts = model.encode_texts(CAPTIONS)
        index = mmzoo.EmbeddingIndex.from_texts(model, texts)
        hits = model.search(model.encode_images(photos()), index, top_k=k, rerank=k)
    shortlist = itc.topk(k, dim=1).indices
    assert torch.equal(hits.shortlist.sort(1).values, shortlist.sort(1).values)
    expected = lavis.gather(1, shortlist).sort(1, descending=True)
    torch.testing.assert_close(hits.scores, expected.values, atol=1e-5, rtol=1e-5)
    assert torch.equal(hits.indices, shortlist.gather(1, expected.indices))


def test_the_matching_head_reads_enc_first_not_cls(blip_folder, reference):
    """[ENC] (BLIP, LAVIS) by default; itm_first_token=cls reproduces transformers' forward, which differs."""
    _, lavis, cls_logit = reference
    sources = {f"{s}.pretrained": str(blip_folder) for s in ("visual", "text", "fusion")}
    enc = mmzoo.create_model("blip-itm-base", **sources).eval()
    cls = mmzoo.create_model("blip-itm-base", **sources, **{"text.itm_first_token": "cls"}).eval()
    assert enc.text.first_token == ENC_ID and cls.text.first_token == enc.text.tokenizer.cls_token_id
    with torch.no_grad():
        images = photos()
        fused_enc = enc.fusion(enc.encode_images(images), enc.encode_texts(CAPTIONS))
        fused_cls = cls.fusion(cls.encode_images(images), cls.encode_texts(CAPTIONS))
    itc = reference[0]
    torch.testing.assert_close(fused_enc, lavis - itc, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused_cls, cls_logit, atol=1e-5, rtol=1e-5)
    assert (fused_enc - fused_cls).abs().max() > 1e-3, "[ENC] and [CLS] must give different matching logits"


def test_the_vision_tower_runs_once_per_image_when_reranking(blip_folder, monkeypatch):
    from transformers import BlipVisionModel

    sources = {f"{s}.pretrained": str(blip_folder) for s in ("visual", "text", "fusion")}
    model = mmzoo.create_model("blip-itm-base", **sources).eval()
    calls = []
    forward = BlipVisionModel.forward
    monkeypatch.setattr(BlipVisionModel, "forward", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    with torch.no_grad():
        images = model.encode_images(photos())
        assert len(calls) == 1, "one ViT pass for the batch of images"
        texts = model.encode_texts(CAPTIONS * 4)
        scores = model.similarity(images, texts)
    assert scores.shape == (3, 20) and len(calls) == 1, "scoring 60 pairs ran no ViT pass"


def test_an_images_pairs_share_its_cross_attention_keys_and_values(blip_folder, monkeypatch):
    """The image tokens' key / value projections run once per image and layer, not once per pair."""
    sources = {f"{s}.pretrained": str(blip_folder) for s in ("visual", "text", "fusion")}
    model = mmzoo.create_model("blip-itm-base", **sources).eval()
    projections = {id(p) for p in model.fusion._projections}
    assert len(projections) == 2 * model.fusion.blip_config.text_config.num_hidden_layers
    rows = []
    linear = torch.nn.Linear.forward
    monkeypatch.setattr(
        torch.nn.Linear,
        "forward",
        lambda self, x: (id(self) in projections and rows.append(x.shape[0])) or linear(self, x),
    )
    with torch.no_grad():
        images, texts = model.encode_images(photos()), model.encode_texts(CAPTIONS * 4)
        rows.clear()
        model.similarity(images, texts)
    assert rows == [1] * (3 * len(projections)), "one projection of one image per layer, for 20 captions each"


def test_a_saved_copy_loads_offline_and_scores_the_same(blip_folder, tmp_path, monkeypatch):
    sources = {f"{s}.pretrained": str(blip_folder) for s in ("visual", "text", "fusion")}
    model = mmzoo.create_model("blip-itm-base", **sources).eval()
    model.save_pretrained(tmp_path / "saved")
    go_offline(monkeypatch)
    again = mmzoo.from_pretrained(tmp_path / "saved")
    for a, b in zip(outputs(again), outputs(model), strict=True):
        torch.testing.assert_close(a, b)


def test_rerank_evaluation_scores_lavis_formula_for_every_shortlisted_pair(blip_folder, reference):
    """The evaluation's shortlist-and-rerank (both directions, as LAVIS's compute_sim_matrix) keeps S = ITM + ITC."""
    from mmzoo.scoring import rerank_rankings

    itc, lavis, _ = reference
    sources = {f"{s}.pretrained": str(blip_folder) for s in ("visual", "text", "fusion")}
    model = mmzoo.create_model("blip-itm-base", **sources).eval()
    with torch.no_grad():
        images, texts = model.encode_images(photos()), model.encode_texts(CAPTIONS)
    ranking = rerank_rankings(model, images, texts, rerank=2)
    rows = torch.zeros_like(itc, dtype=torch.bool).scatter_(1, itc.topk(2, dim=1).indices, True)
    cols = torch.zeros_like(itc, dtype=torch.bool).scatter_(0, itc.topk(2, dim=0).indices, True)
    assert torch.equal(ranking.i2t_shortlist, rows) and torch.equal(ranking.t2i_shortlist, cols)
    torch.testing.assert_close(ranking.i2t[rows].float(), lavis[rows], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ranking.t2i[cols].float(), lavis[cols], atol=1e-5, rtol=1e-5)
    assert ranking.pairs_scored == int((rows | cols).sum())


def test_a_repository_without_safetensors_is_a_named_error_through_the_api_and_the_cli(
    blip_folder,
    fake_hub,  # noqa: F811
    capsys,
):
    from mmzoo.cli import main

    files = folder_files(blip_folder)
    weights = files.pop("model.safetensors")
    fake_hub.create_repo(REPO)
    fake_hub.commit(REPO, {**files, "pytorch_model.bin": weights})  # a pickle-only repository
    with pytest.raises(mmzoo.errors.HubError, match=r"no safetensors"):
        mmzoo.from_pretrained(ALIAS)
    assert main(["download", ALIAS]) == 2
    assert "no safetensors" in capsys.readouterr().err
    assert not any(path.endswith(".bin") for _, path in fake_hub.requests if "/resolve/" in path), "no pickle fetched"
