"""BLIP-2 retrieval: mmzoo gives transformers' own ITC scores and LAVIS's reranked scores, the ViT-g once per image.

The references are computed with transformers directly on a tiny folder its ``save_pretrained`` wrote
(tests/plugins/blip/_tiny_blip2.py), with its own ``Blip2Processor``: ``Blip2ForImageTextRetrieval.forward(
use_image_text_matching_head=False).logits_per_image`` (the max over queries) for ITC, and ``forward(
use_image_text_matching_head=True).logits_per_image[:, 1]`` (the mean over queries of the match logit) plus that
ITC for LAVIS's reranked score (``compute_sim_matrix``: ``score + topk_sim``).
"""

from __future__ import annotations

import socket

import pytest
import torch

import mmzoo
from mmzoo import errors
from mmzoo.cli import main
from tests.hub_server import fake_hub, go_offline  # noqa: F401  (fake_hub is a fixture)
from tests.plugins.blip._tiny import CAPTIONS, folder_files, photos, write_blip_folder
from tests.plugins.blip._tiny_blip2 import N_QUERIES, write_blip2_folder

REPO, ALIAS = "Salesforce/blip2-itm-vit-g-coco", "blip2-itm-vit-g-coco"
SECTIONS = ("visual", "text", "fusion")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_blip2_folder(tmp_path_factory.mktemp("blip2") / "blip2-itm-vit-g-coco")


@pytest.fixture(scope="module")
def reference(folder):
    """transformers run directly with its processor: (ITC (3, 5), LAVIS reranked scores (3, 5), query embeds)."""
    from transformers import Blip2ForImageTextRetrieval, Blip2Processor

    hf = Blip2ForImageTextRetrieval.from_pretrained(folder).eval()
    processor = Blip2Processor.from_pretrained(folder)
    images = photos()
    with torch.no_grad():
        out = hf(**processor(images=images, text=CAPTIONS, padding=True, return_tensors="pt"))
        itc, queries, text = out.logits_per_image, out.image_embeds, out.text_embeds
        itm = torch.stack(
            [
                hf(
                    **processor(images=[image] * len(CAPTIONS), text=CAPTIONS, padding=True, return_tensors="pt"),
                    use_image_text_matching_head=True,
                ).logits_per_image[:, 1]
                for image in images
            ]
        )
    assert itc.shape == itm.shape == (3, 5) and queries.shape == (3, N_QUERIES, 256)
    return itc, itm + itc, queries, text


def itm_model(folder, **overrides):
    return mmzoo.create_model("blip2-itm-vit-g", **{f"{s}.pretrained": str(folder) for s in SECTIONS}, **overrides)


@pytest.fixture(scope="module")
def model(folder):
    return itm_model(folder).eval()


def scores(model):
    with torch.no_grad():
        images, texts = model.encode_images(photos()), model.encode_texts(CAPTIONS)
        return images.pooled @ texts.pooled.t(), model.similarity(images, texts)


def test_itc_dual_encoder_is_transformers_max_over_queries(folder, reference):
    itc = reference[0]
    model = mmzoo.create_model("blip2-itc-vit-g", **{f"{s}.pretrained": str(folder) for s in ("visual", "text")})
    model.eval()
    assert model.config.fusion.name == "blip2-itc" and model.dual_weight == 0.0
    with torch.no_grad():
        images, texts = model.encode_images(photos()), model.encode_texts(CAPTIONS)
        assert images.features.shape == (3, N_QUERIES, 256), "the fragments are the query embeddings"
        torch.testing.assert_close(images.features, reference[2], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(texts.pooled, reference[3], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.similarity(images, texts), itc, atol=1e-5, rtol=1e-5)
    assert (itc.max(0).values - itc.min(0).values).min() > 1e-3, "the images must score differently"


def test_itm_scores_are_lavis_reranked_scores(model, reference):
    """Every pair (k_test = all): ITM match logit (mean over queries) + ITC max; <i0, c0> is the mean over queries."""
    _, lavis, queries, text = reference
    cheap, full = scores(model)
    torch.testing.assert_close(full, lavis, atol=1e-5, rtol=1e-5)
    mean_query = torch.nn.functional.normalize(queries.mean(1), dim=-1)
    torch.testing.assert_close(cheap, mean_query @ text.t(), atol=1e-5, rtol=1e-5)


def test_zoo_entry_loads_from_the_hub_with_transformers_numbers_then_offline(
    folder,
    reference,
    fake_hub,  # noqa: F811
    monkeypatch,
):
    fake_hub.create_repo(REPO)
    fake_hub.commit(REPO, {**folder_files(folder), "modeling_evil.py": b"raise SystemExit('code ran')\n"})
    model = mmzoo.from_pretrained(ALIAS)
    ours = scores(model)
    torch.testing.assert_close(ours[1], reference[1], atol=1e-5, rtol=1e-5)
    fetched = [path for method, path in fake_hub.requests if method == "GET" and "/resolve/" in path]
    assert any(path.endswith("model.safetensors") for path in fetched), "the weights came from the Hub"
    assert not any(path.endswith(".py") for path in fetched), "no code file is fetched"
    assert mmzoo.list_pretrained(ALIAS) == [(ALIAS, "blip2-itm-vit-g")]

    go_offline(monkeypatch)
    fake_hub.requests.clear()

    def no_network(*args, **kwargs):
        raise AssertionError("an offline load opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    again = mmzoo.from_pretrained(ALIAS)
    assert fake_hub.requests == [], "offline: nothing is requested"
    for a, b in zip(scores(again), ours, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("side", ["texts", "images"])
def test_rerank_search_is_lavis_compute_sim_matrix(model, reference, side):
    """The ITC maximum (not <i0, c0>) shortlists k per query; each shortlisted item gets ITM + ITC, LAVIS's score."""
    itc, lavis = reference[0], reference[1]
    if side == "images":  # caption queries against an image index: LAVIS's t2i half
        itc, lavis = itc.t(), lavis.t()
    k = 2
    with torch.no_grad():
        texts, images = model.encode_texts(CAPTIONS), model.encode_images(photos())
        if side == "texts":
            hits = model.search(images, mmzoo.EmbeddingIndex.from_texts(model, texts), top_k=k, rerank=k)
        else:
            hits = model.search(texts, mmzoo.EmbeddingIndex.from_images(model, images), top_k=k, rerank=k)
        cheap = images.pooled @ texts.pooled.t()
    shortlist = itc.topk(k, dim=1).indices
    assert torch.equal(hits.shortlist.sort(1).values, shortlist.sort(1).values)
    expected = lavis.gather(1, shortlist).sort(1, descending=True)
    torch.testing.assert_close(hits.scores, expected.values, atol=1e-5, rtol=1e-5)
    assert torch.equal(hits.indices, shortlist.gather(1, expected.indices))
    by_mean = (cheap if side == "texts" else cheap.t()).topk(k, dim=1).indices
    assert not torch.equal(by_mean.sort(1).values, shortlist.sort(1).values), "the mean over queries would differ"


def test_rerank_evaluation_is_lavis_compute_sim_matrix(model, reference):
    """Both directions shortlist by the ITC maximum (LAVIS's sims_matrix); shortlisted pairs score ITM + ITC."""
    from mmzoo.scoring import rerank_rankings

    itc, lavis = reference[0], reference[1]
    with torch.no_grad():
        images, texts = model.encode_images(photos()), model.encode_texts(CAPTIONS)
        ranking = rerank_rankings(model, images, texts, rerank=2)
    rows = torch.zeros_like(itc, dtype=torch.bool).scatter_(1, itc.topk(2, dim=1).indices, True)
    cols = torch.zeros_like(itc, dtype=torch.bool).scatter_(0, itc.topk(2, dim=0).indices, True)
    assert torch.equal(ranking.i2t_shortlist, rows) and torch.equal(ranking.t2i_shortlist, cols)
    torch.testing.assert_close(ranking.i2t[rows].float(), lavis[rows], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ranking.t2i[cols].float(), lavis[cols], atol=1e-5, rtol=1e-5)
    assert ranking.pairs_scored == int((rows | cols).sum())


def test_the_vision_tower_runs_once_per_image(model, monkeypatch):
    from transformers import Blip2VisionModel

    calls = []
    forward = Blip2VisionModel.forward
    monkeypatch.setattr(
        Blip2VisionModel,
        "forward",
        lambda self, *a, **k: calls.append(k["pixel_values"].shape[0]) or forward(self, *a, **k),
    )
    with torch.no_grad():
        images = model.encode_images(photos())
        texts = model.encode_texts(CAPTIONS * 4)
        full = model.similarity(images, texts)
        index = mmzoo.EmbeddingIndex.from_images(model, images)
        model.search(texts, index, top_k=2, rerank=3)
    assert full.shape == (3, 20)
    assert calls == [3], "one ViT pass for the batch of 3 images; scoring 60 pairs and reranking ran none"


def test_an_images_pairs_share_its_cross_attention_keys_and_values(model, monkeypatch):
    """The image tokens' key / value projections run once per image and cross-attention layer, not once per pair
    (besides the image-only query pass that prepares the batch of images)."""
    projections = {id(p) for p in model.fusion._projections}
    assert len(projections) == 2, "the tiny Q-Former has one cross-attention layer (every second of 2)"
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
    assert sorted(rows) == [1] * (3 * len(projections)) + [3] * len(projections), (
        "the query pass of the 3 images, then one projection of one image per layer for its 20 captions"
    )


def test_a_saved_copy_loads_offline_and_scores_the_same(model, tmp_path, monkeypatch):
    model.save_pretrained(tmp_path / "saved")
    go_offline(monkeypatch)
    again = mmzoo.from_pretrained(tmp_path / "saved")
    for a, b in zip(scores(again), scores(model), strict=True):
        torch.testing.assert_close(a, b)


def test_a_sharded_folder_loads_and_scores_the_same(folder, model, tmp_path):
    """Large folders (the ViT-g's) come as shards plus ``model.safetensors.index.json``: read them, strictly."""
    import json

    from transformers import Blip2ForImageTextRetrieval

    sharded = tmp_path / "sharded"
    Blip2ForImageTextRetrieval.from_pretrained(folder).save_pretrained(sharded, max_shard_size="100KB")
    for name in ("vocab.txt", "tokenizer_config.json", "tokenizer.json", "preprocessor_config.json"):
        (sharded / name).write_bytes((folder / name).read_bytes())
    assert not (sharded / "model.safetensors").exists() and len(list(sharded.glob("model-*.safetensors"))) > 1
    for a, b in zip(scores(itm_model(sharded).eval()), scores(model), strict=True):
        torch.testing.assert_close(a, b)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    index["weight_map"]["itm_head.weight"] = "../elsewhere.safetensors"
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(errors.CheckpointError, match="not safetensors shards"):
        itm_model(sharded)


def test_bad_sources_and_inputs_are_named_errors(folder, model, tmp_path):
    blip = write_blip_folder(tmp_path / "blip")
    with pytest.raises(errors.CheckpointError, match="not BLIP-2"):
        itm_model(blip)
    captioning = write_blip2_folder(tmp_path / "captioning", use_qformer_text_input=False)
    with pytest.raises(errors.ConfigError, match="use_qformer_text_input"):
        itm_model(captioning)
    with pytest.raises(errors.ConfigError, match="embed_dim=256"):
        itm_model(folder, embed_dim=128)
    with torch.no_grad():
        images, texts = model.encode_images(photos()), model.encode_texts(CAPTIONS)
        itc = mmzoo.create_model("blip2-itc-vit-g", **{f"{s}.pretrained": str(folder) for s in ("visual", "text")})
        with pytest.raises(errors.InputError, match="fragments=queries"):
            itc.fusion(images, texts)  # ViT token states where the query embeddings belong
        with pytest.raises(errors.InputError, match="fragments=vision"):
            model.fusion(itc.encode_images(photos()), texts)
    with pytest.raises(errors.InputError):
        model.encode_images(["/no/such/photo.jpg"])


def test_a_captioning_checkpoint_is_a_named_error_through_the_cli(tmp_path, fake_hub, capsys):  # noqa: F811
    """``mmzoo search blip2-itm-vit-g-coco`` on a repository holding a captioning BLIP-2 says what is wrong."""
    folder = tmp_path / "photos"
    folder.mkdir()
    photos()[0].save(folder / "p0.png")
    captioning = write_blip2_folder(tmp_path / "captioning", use_qformer_text_input=False)
    fake_hub.create_repo(REPO)
    fake_hub.commit(REPO, folder_files(captioning))
    assert main(["search", ALIAS, "--images", str(folder), "a cat"]) == 2
    assert "use_qformer_text_input" in capsys.readouterr().err
