"""The HTTP service on a real uvicorn server (127.0.0.1, a free port): search, items, thumbnails, metrics, the
client, rerank with another model, bad requests, and queries while ``index add`` publishes a new version."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import torch

from mmzoo.cli import main
from mmzoo.data import read_captions
from mmzoo.model import load_pretrained
from mmzoo.serving import Client, LiveIndex, SavedIndex, Searcher, ServiceError, add_items, build_index, detect_source
from mmzoo.serving.app import create_app
from tests._serving import make_world, running


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("http")
    world = make_world(root)
    vse = load_pretrained(world["vse"]).eval()
    build_index(
        vse, str(world["vse"]), detect_source(world["shapes"], "test"), root / "regions", shard_size=8, progress=False
    )
    pixels = load_pretrained(world["pixels"]).eval()
    build_index(pixels, str(world["pixels"]), detect_source(world["pictures"]), root / "pics", progress=False)
    return {**world, "regions": root / "regions", "pics": root / "pics"}


def call(url: str, method: str, path: str, body: bytes | None = None, ctype: str = "application/json"):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": ctype} if body is not None else {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


def test_search_items_thumbnails_metrics_and_the_client(world):
    model = load_pretrained(world["pixels"]).eval()
    searcher = Searcher(LiveIndex(world["pics"]), model, str(world["pixels"]))
    query = "a red circle left of a blue square"
    with running(create_app(searcher)) as url:
        client = Client(url)
        answer = client.search(query, k=3)
        scores = [hit["score"] for hit in answer["results"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert set(answer["timings"]) == {"encode", "ann", "metadata", "total"}
        local = model.search([query], SavedIndex.open(world["pics"]), top_k=3)  # the same path, in process
        assert [hit["id"] for hit in answer["results"]] == local.indices[0].tolist()
        np.testing.assert_allclose(scores, local.scores[0].numpy(), rtol=1e-5)
        first = answer["results"][0]
        assert client.item(first["id"]) == {k: v for k, v in first.items() if k != "score"}
        with torch.no_grad():
            vector = model.encode_texts([query]).pooled[0].tolist()
        assert [h["id"] for h in client.search(embedding=vector, k=3)["results"]] == [
            h["id"] for h in answer["results"]
        ]
        by_image = client.search(image=world["pictures"] / "scene0.png", k=2)
        status, _, raw = call(url, "POST", "/search?k=2", (world["pictures"] / "scene0.png").read_bytes(), "image/png")
        assert status == 200 and json.loads(raw)["results"] == by_image["results"]
        png = client.thumbnail(first["id"])
        from io import BytesIO

        from PIL import Image

        assert Image.open(BytesIO(png)).size == (48, 48)
        assert client.health() == {"status": "ok", "version": 1, "count": 5}
        metrics = client.metrics()
        assert 'mmzoo_requests_total{endpoint="/search",status="200"} 4' in metrics
        assert 'mmzoo_stage_seconds_count{stage="ann"} 4' in metrics and 'stage="encode"' in metrics
        status, ctype, page = call(url, "GET", "/")
        assert (
            status == 200
            and ctype.startswith("text/html")
            and b'id="grid"' in page
            and b"http" not in page.split(b"<script>")[0].replace(b"http-equiv", b"")
        )


def test_rerank_with_another_model_and_the_mismatch_error(world, capsys):
    vse, mmca = load_pretrained(world["vse"]).eval(), load_pretrained(world["mmca"]).eval()
    searcher = Searcher(LiveIndex(world["regions"]), vse, str(world["vse"]), mmca, str(world["mmca"]), rerank_k=20)
    queries = read_captions(world["shapes"] / "test_caps.txt")[:2]
    with running(create_app(searcher)) as url:
        client = Client(url)
        for query in queries:
            answer = client.search(query, k=5, rerank=True)
            expected = mmca.search([query], SavedIndex.open(world["regions"]), top_k=5, rerank=20, shortlist=vse)
            assert answer["reranked"] and "rerank" in answer["timings"]
            assert [h["id"] for h in answer["results"]] == expected.indices[0].tolist()
            assert answer["results"][0]["path"].startswith("images/test/")  # rendered pictures travel with the rows
        with pytest.raises(ServiceError, match="not an embedding"):
            client.search(embedding=[0.0] * 32, rerank=True)
        assert client.search(queries[0], k=5)["reranked"] is False
    assert main(["serve", str(world["regions"]), "--rerank", str(world["pixels"]), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert f"built by {world['vse']} over region features" in err and f"reranker {world['pixels']} reads images" in err


def test_bad_requests_get_clear_errors(world, tmp_path):
    model = load_pretrained(world["pixels"]).eval()
    searcher = Searcher(LiveIndex(world["pics"]), model, str(world["pixels"]))
    with running(create_app(searcher, max_upload=20 * 1024 * 1024)) as url:
        bad = [
            ({"text": ""}, "empty"),
            ({"text": "x" * 1001}, "1001 characters"),
            ({"text": "a circle", "k": 0}, "k must lie in"),
            ({"text": "a circle", "colour": "red"}, "Unknown fields"),
            ({"text": "a", "image": "bm90IGFuIGltYWdl"}, "exactly one"),
            ({"image": "bm90IGFuIGltYWdl"}, "not an image"),
            ({"image": "***"}, "base64"),
            ({"embedding": [1.0, 2.0]}, "32 per query"),
            ({"embedding": "abc"}, "list of numbers"),
        ]
        for body, message in bad:
            status, _, raw = call(url, "POST", "/search", json.dumps(body).encode())
            assert status == 400 and message in json.loads(raw)["error"], (body, raw)
        status, _, raw = call(url, "POST", "/search", b"{not json")
        assert status == 400 and "not valid JSON" in json.loads(raw)["error"]
        status, _, raw = call(url, "POST", "/search", b"plain text", "image/png")
        assert status == 400 and "not an image" in json.loads(raw)["error"]
        status, _, raw = call(url, "POST", "/search", b"x", "text/plain")
        assert status == 400 and "Send JSON or an image" in json.loads(raw)["error"]
        status, _, raw = call(url, "POST", "/search", b"\0" * (100 * 1024 * 1024), "image/png")  # 100 MB
        assert status == 413 and "larger than 20 MB" in json.loads(raw)["error"]
        huge = json.dumps({"image": base64.b64encode(b"\0" * (16 * 1024 * 1024)).decode()}).encode()
        assert call(url, "POST", "/search", huge)[0] == 413  # also when no image header says so
        for path in ("/items/..%2F..%2Fetc%2Fpasswd", "/items/%2Fetc%2Fpasswd/image", "/items/../../etc/passwd"):
            status, _, raw = call(url, "GET", path)
            assert status == 404 and "Not Found" in json.loads(raw)["error"], path  # never routed to a file
        for path in ("/items/..", "/items/-1", "/items/1.5", "/items/%2E%2E/image"):
            status, _, raw = call(url, "GET", path)
            assert status == 400 and "whole numbers" in json.loads(raw)["error"], path
        status, _, raw = call(url, "GET", "/items/5")
        assert status == 404 and "ids 0 to 4" in json.loads(raw)["error"]
        metrics = Client(url).metrics()
        assert 'mmzoo_errors_total{endpoint="/search",status="413"} 2' in metrics
    index = SavedIndex.open(world["pics"])
    outside = tmp_path / "secret.png"
    outside.write_bytes((world["pictures"] / "scene0.png").read_bytes())
    (world["pictures"] / "link.png").symlink_to(outside)
    try:
        source = index.source_of(0)
        assert source.file("../../../etc/passwd") is None and source.file(str(outside)) is None
        assert source.file("link.png") is None and source.file("scene0.png") is not None
    finally:
        (world["pictures"] / "link.png").unlink()


def test_queries_during_index_add_see_one_whole_version(world, tmp_path):
    import shutil

    folder = tmp_path / "regions"
    shutil.copytree(world["regions"], folder)
    vse = load_pretrained(world["vse"]).eval()
    searcher = Searcher(LiveIndex(folder), vse, str(world["vse"]))
    seen, problems = set(), []
    with running(create_app(searcher)) as url:
        client = Client(url)
        adder = threading.Thread(
            target=add_items,
            args=(load_pretrained(world["vse"]).eval(), folder, detect_source(world["shapes"], "dev")),
            kwargs={"progress": False},
        )
        adder.start()
        rounds = 0
        while adder.is_alive() or rounds < 3:
            rounds += not adder.is_alive()
            answer = client.search("a red circle", k=40)
            ids = [h["id"] for h in answer["results"]]
            seen.add((answer["index_version"], answer["count"]))
            if len(ids) != answer["count"] or max(ids) >= answer["count"] or len(set(ids)) != len(ids):
                problems.append(answer)
        adder.join()
    assert not problems
    assert seen <= {(1, 30), (2, 40)} and (2, 40) in seen


def test_serve_binds_loopback_unless_told(world):
    from mmzoo.cli import build_parser

    args = build_parser().parse_args(["serve", str(world["pics"])])
    assert args.host == "127.0.0.1" and args.port == 8080 and args.k == 50
    assert Path(world["pics"], "manifest.json").is_file()
