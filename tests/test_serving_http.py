"""The HTTP service on a real uvicorn server (127.0.0.1, a free port): search, items, thumbnails, metrics, the
client, rerank with another model, bad requests, and queries while ``index add`` publishes a new version."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import torch

from mmzoo.cli import main
from mmzoo.data import read_captions
from mmzoo.errors import InputError
from mmzoo.model import load_folder
from mmzoo.serving import Client, LiveIndex, SavedIndex, Searcher, ServiceError, add_items, build_index, detect_source
from mmzoo.serving.app import create_app
from tests._serving import make_world, running


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("http")
    world = make_world(root)
    vse = load_folder(world["vse"]).eval()
    build_index(
        vse, str(world["vse"]), detect_source(world["shapes"], "test"), root / "regions", shard_size=8, progress=False
    )
    pixels = load_folder(world["pixels"]).eval()
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
    model = load_folder(world["pixels"]).eval()
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
    vse, mmca = load_folder(world["vse"]).eval(), load_folder(world["mmca"]).eval()
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
    model = load_folder(world["pixels"]).eval()
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
    vse = load_folder(world["vse"]).eval()
    searcher = Searcher(LiveIndex(folder), vse, str(world["vse"]))
    seen, problems = set(), []
    with running(create_app(searcher)) as url:
        client = Client(url)
        adder = threading.Thread(
            target=add_items,
            args=(load_folder(world["vse"]).eval(), folder, detect_source(world["shapes"], "dev")),
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


class _Recorder:
    """Wraps an ASGI app: records each request's client address (one address = one TCP connection)."""

    def __init__(self, app):
        self.app, self.clients = app, []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.clients.append(tuple(scope["client"]))
        await self.app(scope, receive, send)


def test_the_client_keeps_its_connection_and_reopens_a_closed_one(world):
    searcher = Searcher(LiveIndex(world["regions"]), load_folder(world["vse"]).eval(), str(world["vse"]))
    app = _Recorder(create_app(searcher, max_upload=1024 * 1024))
    with running(app, timeout_keep_alive=1) as url:
        client = Client(url)
        for _ in range(3):
            assert len(client.search("a red circle", k=2)["results"]) == 2
        assert client.health()["status"] == "ok"
        assert len(app.clients) == 4 and len(set(app.clients)) == 1  # four requests, one connection
        with pytest.raises(ServiceError) as caught:  # refused before the body is read: the next call still works
            client.search(image=b"\0" * (2 * 1024 * 1024))
        assert caught.value.status == 413 and "larger than 1 MB" in str(caught.value)
        assert client.item(3)["id"] == 3
        time.sleep(1.6)  # the server closes the idle connection; the client opens a new one, once
        assert client.search("a blue square", k=1)["results"][0]["score"] is not None
        assert len(set(app.clients)) >= 2
        seen = []
        threads = [threading.Thread(target=lambda: seen.append(client.info()["count"])) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert seen == [30, 30, 30]  # threads do not share a connection
    with pytest.raises(ServiceError) as caught:
        client.health()
    assert caught.value.status == 0 and "cannot reach" in str(caught.value)
    with pytest.raises(InputError, match="http://HOST:PORT"):
        Client("127.0.0.1:8080")


class _WhereSearched(Searcher):
    """A Searcher that records the name of the thread each search ran on."""

    threads: list[str]

    def _search(self, *args, **kwargs):
        self.threads.append(threading.current_thread().name)
        return super()._search(*args, **kwargs)


def test_quick_searches_run_on_the_event_loop_and_never_wait_for_the_model_there(world):
    vse = load_folder(world["vse"]).eval()
    searcher = _WhereSearched(LiveIndex(world["regions"]), vse, str(world["vse"]), quick_seconds=60.0)
    searcher.threads = []
    worker = "AnyIO worker thread"
    with running(create_app(searcher)) as url:
        client = Client(url)
        assert not searcher.quick(text="a red circle")  # a kind never searched is not quick: a worker runs it
        client.search("a red circle", k=2)
        assert searcher.threads == [worker] and searcher.quick(text="a red circle")
        client.search("a red circle", k=2)
        assert searcher.threads[-1] != worker and not searcher.quick(embedding=[0.0] * 32)
        assert not searcher.quick(text="a red circle", k=500)  # many results: timed apart
        with searcher._lock:  # the model is busy (a slow rerank, say): a quick search must not wait on the loop
            assert searcher.search_now(text="a red circle") is None
            answers = []
            asking = threading.Thread(target=lambda: answers.append(client.search("a red circle", k=2)))
            asking.start()
            deadline = time.monotonic() + 30
            while searcher.threads.count(worker) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            loop = searcher.threads[1]
            assert searcher.threads[-2:] == [loop, worker] and not answers  # tried on the loop, then waits in a worker
            t = time.perf_counter()
            assert Client(url).health()["status"] == "ok"  # the loop still answers while that search waits
            assert time.perf_counter() - t < 5
        asking.join(timeout=30)
        assert len(answers) == 1 and len(answers[0]["results"]) == 2
        metrics = client.metrics()
        assert 'mmzoo_requests_total{endpoint="/search",status="200"} 3' in metrics
        assert 'mmzoo_stage_seconds_count{stage="total"} 3' in metrics and 'stage="http"' in metrics
    slow = _WhereSearched(LiveIndex(world["regions"]), vse, str(world["vse"]), quick_seconds=0.0)
    slow.threads = []
    with running(create_app(slow)) as url:
        for _ in range(2):
            Client(url).search("a red circle", k=2)
    assert slow.threads == [worker, worker]  # nothing is quick at 0 s: every search in a worker thread
