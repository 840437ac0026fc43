"""Shared pieces of the serving tests: tiny saved models and data, and a real uvicorn server on loopback."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch

import mmzoo
from mmzoo.data import make_shapes, read_captions
from mmzoo.data.render import render_scene, render_shapes
from tests._launch import free_port

SCENES = [
    [("red", "circle", 0.3, 0.5), ("blue", "square", 0.7, 0.5)],
    [("green", "triangle", 0.5, 0.3), ("yellow", "circle", 0.5, 0.7)],
    [("blue", "square", 0.3, 0.3), ("blue", "star", 0.7, 0.7)],
    [("purple", "triangle", 0.7, 0.5), ("red", "square", 0.3, 0.5)],
    [("red", "star", 0.5, 0.5), ("green", "circle", 0.2, 0.2)],
]
TINY_MMCA = {"visual.heads": 4, "visual.ffn_dim": 64, "fusion.heads": 4, "fusion.ffn_dim": 64, "fusion.channels": 8}


def make_world(root: Path) -> dict[str, Path]:
    """A shapes dataset (30 test images), a tiny VSE++ and MMCA on its regions, a tiny pixel model, 5 pictures."""
    make_shapes(root / "shapes", images=40, test_images=15, regions=8, region_dim=24)
    render_shapes(root / "shapes", images=40, test_images=15, size=32)  # thumbnails of the region rows
    captions = read_captions(root / "shapes" / "train_caps.txt")
    torch.manual_seed(0)
    vse = mmzoo.create_model("vsepp", **{"embed_dim": 32, "visual.in_dim": 24})
    vse.text.fit(captions)
    vse.save_pretrained(root / "vse")
    torch.manual_seed(1)
    mmca = mmzoo.create_model("mmca", **{"embed_dim": 32, "visual.in_dim": 24, "text.name": "gru", **TINY_MMCA})
    mmca.text.fit(captions)
    mmca.save_pretrained(root / "mmca")
    torch.manual_seed(2)
    settings = {"embed_dim": 32, "visual.heads": 4, "visual.ffn_dim": 64, "visual.weights": "none"}
    pixels = mmzoo.create_model("pixels-lite0", **settings, **{"visual.preprocess.image_size": 32})
    pixels.text.fit(captions)
    pixels.save_pretrained(root / "pixels")
    folder = root / "pictures" / "sub"
    folder.mkdir(parents=True)
    for i, objects in enumerate(SCENES):
        scene = {"objects": [{"colour": c, "shape": s, "size": "big", "x": x, "y": y} for c, s, x, y in objects]}
        render_scene(scene, size=48).save((folder if i % 2 else folder.parent) / f"scene{i}.png")
    (root / "pictures" / "notes.txt").write_text("not an image")
    (root / "captions.txt").write_text("\n".join(captions[:12]) + "\n\n")
    return {
        "shapes": root / "shapes",
        "vse": root / "vse",
        "mmca": root / "mmca",
        "pixels": root / "pixels",
        "pictures": root / "pictures",
        "captions": root / "captions.txt",
    }


@contextlib.contextmanager
def running(app, port: int | None = None, **options) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn server on 127.0.0.1 in a thread (``options``: more uvicorn settings);
    yields its base URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
