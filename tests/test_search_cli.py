"""``mmzoo search``: a folder of images for captions, captions for an image, and the contact sheet."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import mmzoo
from mmzoo.cli import main
from mmzoo.cli._contact_sheet import Hit, SheetRow, write_contact_sheet
from mmzoo.data.render import render_scene
from mmzoo.errors import InputError
from mmzoo.model import load_folder
from tests.conftest import CAPTIONS


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The test machine is small and shared: one intra-op thread avoids oversubscription (several times faster)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SCENES = [
    [("red", "circle", 0.3, 0.5), ("blue", "square", 0.7, 0.5)],
    [("green", "triangle", 0.5, 0.3), ("yellow", "circle", 0.5, 0.7)],
    [("blue", "square", 0.3, 0.3), ("blue", "star", 0.7, 0.7)],
    [("purple", "triangle", 0.7, 0.5), ("red", "square", 0.3, 0.5)],
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small saved pixel model (random backbone, 32-pixel input) and a folder of four rendered scenes."""
    root = tmp_path_factory.mktemp("search")
    folder = root / "scenes"
    folder.mkdir()
    for i, objects in enumerate(SCENES):
        scene = {"objects": [{"colour": c, "shape": s, "size": "big", "x": x, "y": y} for c, s, x, y in objects]}
        render_scene(scene, size=48).save(folder / f"scene{i}.png")
    torch.manual_seed(0)
    settings = {"embed_dim": 32, "visual.heads": 4, "visual.ffn_dim": 64, "visual.weights": "none"}
    model = mmzoo.create_model("pixels-lite0", **settings, **{"visual.preprocess.image_size": 32})
    model.text.fit(CAPTIONS)
    model.save_pretrained(root / "model")
    return root / "model", folder


def test_search_ranks_the_folder_by_the_model_score(saved, tmp_path, capsys):
    model_dir, folder = saved
    sheet = tmp_path / "sheet.png"
    args = ["search", str(model_dir), "--images", str(folder), CAPTIONS[0], CAPTIONS[2], "--top", "3"]
    assert main([*args, "--sheet", str(sheet)]) == 0
    out = capsys.readouterr().out
    model = load_folder(model_dir)
    paths = sorted(folder.glob("*.png"))
    with torch.no_grad():
        scores = model.similarity(model.encode_images(paths), model.encode_texts([CAPTIONS[0], CAPTIONS[2]]))
    best = paths[int(scores[:, 0].argmax())]
    lines = out.splitlines()
    assert lines[0] == CAPTIONS[0] and lines[1].startswith("  1. ") and lines[1].endswith(str(best))
    assert sum(line.startswith("  ") for line in lines) == 6  # 3 hits for each of 2 queries
    assert f"{float(scores[:, 0].max()):+.4f}" in lines[1]
    image = Image.open(sheet)
    assert image.width > 3 * 128 and image.height > 2 * 128


def test_reverse_direction_and_html_sheet(saved, tmp_path, capsys):
    model_dir, folder = saved
    (tmp_path / "caps.txt").write_text("\n".join([*CAPTIONS, "", "a <b>bold</b> caption"]) + "\n")
    sheet = tmp_path / "sheet.html"
    args = ["search", str(model_dir), "--image", str(folder / "scene0.png"), "--captions", str(tmp_path / "caps.txt")]
    assert main([*args, "--top", "10", "--sheet", str(sheet)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("scene0.png")
    assert sum(line.startswith("  ") for line in out.splitlines()) == 5  # all 5 non-empty captions
    page = sheet.read_text()
    assert page.count("data:image/png;base64,") == 1 and "&lt;b&gt;bold&lt;/b&gt;" in page


def test_search_scores_both_sides_on_the_model_device(saved, tmp_path, monkeypatch):
    """`--device cuda` failed: the captions came back on the CPU, the images stayed on the GPU. No GPU here, so the
    model reports the 'meta' device and its encoders hand their fragments over there, as a CUDA model's do."""
    from mmzoo.model import MatchingModel

    model_dir, folder = saved
    meta, computing = torch.device("meta"), []
    weights_device = MatchingModel.device.fget
    monkeypatch.setattr(MatchingModel, "device", property(lambda m: weights_device(m) if computing else meta))

    def on_meta(encode):
        def wrapper(self, *args, **kwargs):
            computing.append(True)  # the weights are on the CPU: compute there, then hand over on "the device"
            try:
                return encode(self, *args, **kwargs).to(meta)
            finally:
                computing.pop()

        return wrapper

    monkeypatch.setattr(MatchingModel, "encode_images", on_meta(MatchingModel.encode_images))
    monkeypatch.setattr(MatchingModel, "encode_texts", on_meta(MatchingModel.encode_texts))
    seen = []

    def similarity(self, images, texts, block_size=256):
        seen.append((self.device, images.features.device, texts.features.device))
        return torch.arange(len(images) * len(texts), dtype=torch.float32).view(len(images), len(texts))

    monkeypatch.setattr(MatchingModel, "similarity", similarity)
    (tmp_path / "caps.txt").write_text("\n".join(CAPTIONS) + "\n")
    assert (
        main(["search", str(model_dir), "--images", str(folder), CAPTIONS[0], "--sheet", str(tmp_path / "a.png")]) == 0
    )
    reverse = ["--image", str(folder / "scene0.png"), "--captions", str(tmp_path / "caps.txt")]
    assert main(["search", str(model_dir), *reverse, "--sheet", str(tmp_path / "b.png")]) == 0
    assert seen == [(meta, meta, meta)] * 2


def test_search_errors_exit_2_with_a_message(saved, tmp_path, capsys):
    model_dir, folder = saved
    assert main(["search", str(model_dir), "--images", str(folder)]) == 2
    assert "at least one caption" in capsys.readouterr().err
    assert main(["search", str(model_dir), "--image", str(folder / "scene0.png")]) == 2
    assert "--captions" in capsys.readouterr().err
    assert main(["search", str(model_dir), "--images", str(tmp_path), "a red circle"]) == 2
    assert "holds no images" in capsys.readouterr().err
    regions = mmzoo.create_model("vsepp", embed_dim=32, **{"visual.in_dim": 24})
    regions.text.fit(CAPTIONS)
    regions.save_pretrained(tmp_path / "regions")
    assert main(["search", str(tmp_path / "regions"), "--images", str(folder), "a red circle"]) == 2
    assert "cannot read images" in capsys.readouterr().err


def test_contact_sheet_refuses_nothing_to_show(tmp_path):
    with pytest.raises(InputError, match="at least one query"):
        write_contact_sheet([SheetRow("a red circle", [])], tmp_path / "s.png")
    with pytest.raises(InputError, match="not both"):
        write_contact_sheet(
            [SheetRow("q", [Hit("x", 1.0)]), SheetRow("img.png", [Hit("cap", 1.0)], query_is_image=True)],
            tmp_path / "s.png",
        )
