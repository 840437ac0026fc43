"""The search page in a real headless browser (Debian's chromium): it loads, runs a typed query (``/?q=`` fills
the search box and submits the form, as a user does), and shows the result grid the API returns."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.parse

import pytest
import torch

from mmzoo.model import load_folder
from mmzoo.serving import Client, LiveIndex, Searcher, build_index, detect_source
from mmzoo.serving.app import create_app
from tests._serving import make_world, running

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium package)"
)


def browse(url: str, *flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run headless chromium on ``url``; --virtual-time-budget lets the page's fetches finish first."""
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--virtual-time-budget=20000",
        *flags,
        url,
    ]
    env = {**os.environ, "HOME": os.environ.get("TMPDIR", "/tmp")}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_the_page_searches_and_shows_the_result_grid(tmp_path):
    torch.set_num_threads(1)
    world = make_world(tmp_path)
    model = load_folder(world["pixels"]).eval()
    build_index(model, str(world["pixels"]), detect_source(world["pictures"]), tmp_path / "idx", progress=False)
    searcher = Searcher(LiveIndex(tmp_path / "idx"), model, str(world["pixels"]))
    query = "a red circle left of a blue square"
    with running(create_app(searcher)) as url:
        expected = Client(url).search(query, k=20)["results"]
        page = f"{url}/?q={urllib.parse.quote(query)}"
        done = browse(page, "--dump-dom")
        assert done.returncode == 0, done.stderr[-2000:]
        dom = done.stdout
        cards = re.findall(r'<div class="card" data-id="(\d+)">', dom)
        assert [int(c) for c in cards] == [hit["id"] for hit in expected]
        assert f"results of 5 for \u201c{query}\u201d" in dom
        for hit in expected:
            assert f"{hit['score']:.4f}" in dom and f"#{hit['id']} {hit['key']}" in dom
        assert dom.count('src="/items/') == len(expected)  # a thumbnail per image
        assert 'data-state="done"' in dom
        shot = tmp_path / "page.png"
        done = browse(page, f"--screenshot={shot}", "--window-size=1000,700", "--hide-scrollbars")
        assert done.returncode == 0 and shot.stat().st_size > 5000
        reranked = browse(page + "&rerank=1", "--dump-dom").stdout  # the rerank toggle, set from the link
        assert "(reranked)" in reranked and "rerank " in reranked
        assert re.findall(r'<div class="card" data-id="(\d+)">', reranked)
        empty = browse(f"{url}/?q=%20", "--dump-dom").stdout
        assert 'class="error"' in empty and "Type what to look for." in empty
