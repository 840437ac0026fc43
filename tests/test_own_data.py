"""A user's own images and captions end to end: CSV / JSON Lines tables, any number of captions per image, the
split names the data has, unreadable images skipped and named, queries the model cannot read flagged."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch

import mmzoo
from mmzoo.cli import main
from mmzoo.data.caption_table import read_caption_rows
from mmzoo.errors import DataError, MMZooWarning
from tests.conftest import tiny_model

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}


def write_photos(folder, names_and_colours, size=32):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name, colour in names_and_colours:
        Image.new("RGB", (size, size), COLOURS[colour]).save(folder / name)


# -- the caption table --------------------------------------------------------------------------------------
def test_csv_rows_group_by_image_in_any_order(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(
        'image,caption,split\na.jpg,"a red, round thing",train\nb.jpg,a blue square,test\n'
        "a.jpg,another caption of a,train\n"
    )
    table = read_caption_rows(path)
    assert table.splits() == ["train", "test"]
    assert [(i.image, i.captions) for i in table.images] == [
        ("a.jpg", ["a red, round thing", "another caption of a"]),
        ("b.jpg", ["a blue square"]),
    ]


def test_jsonl_rows_take_a_caption_or_a_list(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"image": "a.png", "caption": ["one", "two"]}, {"image": "b.png", "caption": "three"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    table = read_caption_rows(path)
    assert table.splits() == ["train"]  # no split column: everything trains
    assert [len(i.captions) for i in table.images] == [2, 1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("file,text\na.jpg,x\n", "must name the columns image,caption"),
        ("image,caption,split\na.jpg,x,train\na.jpg,y,test\n", "belongs to one split"),
        ("image,caption\na.jpg,\n", "line 2: the caption of a.jpg is empty"),
        ("image,caption\na.jpg,red, round\n", "line 2: more cells than columns; quote"),
        ("image,caption,split\na.jpg,x,my split\n", "not a plain word"),
    ],
)
def test_bad_tables_name_the_line(tmp_path, text, expected):
    path = tmp_path / "c.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=expected):
        read_caption_rows(path)


# -- extract-features from a CSV of one caption per image ---------------------------------------------------
@pytest.fixture
def own_photos(tmp_path):
    rows = []
    for split, count in (("train", 6), ("val", 3), ("test", 3)):
        for i in range(count):
            colour = list(COLOURS)[i % 4]
            name = f"{split}{i}.png"
            write_photos(tmp_path / "photos", [(name, colour)])
            rows.append(f"{name},a {colour} picture,{split}")
    (tmp_path / "captions.csv").write_text("image,caption,split\n" + "\n".join(rows) + "\n")
    return tmp_path


def extract(root, *extra):
    argv = ["extract-features", "--captions", str(root / "captions.csv"), "--images", str(root / "photos")]
    return main([*argv, "--out", str(root / "feats"), "--image-size", "32", "--batch-size", "8", *extra])


@pytest.mark.slow
def test_extract_a_csv_of_one_caption_per_image_skipping_unreadable_files(own_photos, capsys):
    photos = own_photos / "photos"
    (photos / "broken.png").write_bytes(b"not a png")
    os.mkfifo(photos / "pipe.png")  # never opened: reading a FIFO would block forever
    with open(own_photos / "captions.csv", "a") as f:
        f.write("broken.png,a broken file,train\npipe.png,a pipe,train\nmissing.png,nothing here,test\n")
    with pytest.warns(MMZooWarning) as caught:
        assert extract(own_photos) == 0
    messages = " ".join(str(w.message) for w in caught)
    assert "Skipped 2 of 8 train images" in messages and "broken.png" in messages
    assert "pipe.png (a FIFO, not an image file (never opened))" in messages
    assert "Skipped 1 of 4 test images" in messages and "missing.png" in messages
    manifest = json.loads((own_photos / "feats" / "mmzoo_data.json").read_text())
    assert manifest["captions_per_image"] == 1
    assert {s: v["images"] for s, v in manifest["splits"].items()} == {"train": 6, "dev": 3, "test": 3}
    dev = mmzoo.open_split(own_photos / "feats", "dev")
    assert dev.captions == ["a red picture", "a green picture", "a blue picture"]
    assert "train: 6 images, 1 caption each" in capsys.readouterr().out


def test_a_wrong_split_name_fails_before_any_image_is_read(own_photos, capsys):
    assert extract(own_photos, "--splits", "train", "dev") == 2
    err = capsys.readouterr().err
    assert "has no split 'dev'; its splits are train, val, test (this file calls it val" in err
    assert not (own_photos / "feats").exists()


def test_too_few_captions_for_captions_per_image(own_photos, capsys):
    assert extract(own_photos, "--captions-per-image", "2") == 2
    assert "12 images have fewer than 2 captions" in capsys.readouterr().err
    assert extract(own_photos, "--captions-per-image", "0") == 2
    assert "--captions-per-image must be at least 1; got 0" in capsys.readouterr().err
    assert not list((own_photos / "feats").glob("*_ims.npy"))


def test_import_features_reads_a_caption_table(tmp_path):
    folder = tmp_path / "npy"
    folder.mkdir()
    rows = []
    rng = np.random.default_rng(0)
    for split, names in (("train", "abcd"), ("val", "ef"), ("test", "gh")):
        for name in names:
            np.save(folder / f"{name}.npy", rng.standard_normal((5, 8)).astype(np.float32))
            rows += [
                f"photos/{name}.jpg,first caption of {name},{split}",
                f"photos/{name}.jpg,second of {name},{split}",
            ]
    table = tmp_path / "captions.csv"
    table.write_text("image,caption,split\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    argv = ["import-features", "npy-folder", str(folder), "--captions", str(table), "--out", str(out)]
    assert main([*argv, "--extractor", "test", "--no-progress"]) == 0
    dev = mmzoo.open_split(out, "dev")
    assert dev.captions_per_image == 2 and dev.captions == [
        "first caption of e",
        "second of e",
        "first caption of f",
        "second of f",
    ]


# -- search ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pixel_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pixels") / "model"
    torch.manual_seed(0)
    model = mmzoo.create_model(
        "pixels-lite0",
        embed_dim=16,
        **{"text.word_dim": 8, "visual.preprocess": {"image_size": 32}, "visual.layers": 0, "visual.heads": 1},
    )
    model.text.fit(["a red picture", "a blue picture"])
    model.save_pretrained(folder)
    return folder


def test_search_skips_an_unreadable_file_and_writes_no_sheet_unasked(pixel_model, tmp_path, monkeypatch, capsys):
    photos = tmp_path / "photos"
    write_photos(photos, [("r.png", "red"), ("b.png", "blue")])
    (photos / "multipage.tif").write_bytes(b"II*\x00broken tiff")
    monkeypatch.chdir(tmp_path)
    with pytest.warns(MMZooWarning, match=r"Skipped 1 of 3 files .*multipage.tif"):
        assert main(["search", str(pixel_model), "--images", str(photos), "a red picture", "--top", "2"]) == 0
    assert "r.png" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.png"))  # no mmzoo_search.png in the working folder


def test_a_query_of_unknown_words_is_flagged_whatever_its_length(pixel_model, tmp_path):
    model = mmzoo.from_pretrained(pixel_model)
    write_photos(tmp_path, [("r.png", "red")])
    index = mmzoo.EmbeddingIndex.from_images(model, model.encode_images([tmp_path / "r.png"]))
    with pytest.warns(MMZooWarning, match=r"1 of the 2 words of the query 'a cat' .*\(cat\)"):
        model.search(["a cat"], index, top_k=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MMZooWarning)
        model.search(["a red picture"], index, top_k=1)  # every word known: no warning


# -- training health -----------------------------------------------------------------------------------------
def test_pixels_lite0_warms_up_like_vsepp():
    recipe = mmzoo.registry.model.get("pixels-lite0")
    assert recipe.training["warmup_epochs"] == mmzoo.registry.model.get("vsepp").training["warmup_epochs"] == 1


def test_a_collapsed_best_epoch_is_recorded_and_said(tmp_path):
    from mmzoo.checkpoint import read_document
    from mmzoo.hub import cards
    from mmzoo.training.trainer import mark_collapse

    model = tiny_model("vsepp")
    mark_collapse(model, {"epoch": 3, "collapse": ["image embeddings spread 0.001"]})
    model.save_pretrained(tmp_path / "best")
    document = read_document(tmp_path / "best")
    assert document["training_health"] == {"epoch": 3, "collapsed": ["image embeddings spread 0.001"]}
    assert "looked collapsed: image embeddings spread 0.001" in str(cards.model_card(document))
    with pytest.warns(MMZooWarning, match="epoch that looked collapsed"):
        mmzoo.from_pretrained(tmp_path / "best")
    mark_collapse(model, {"epoch": 4, "collapse": []})
    assert "training_health" not in model.extra_config


def test_rendered_shapes_extract_their_own_split_names(tmp_path, capsys):
    """The rendered shapes file names its splits train / dev / test: the default takes them; a wrong name fails
    before the train split is extracted, not after."""
    from mmzoo.cli.extract_features_cmd import plan_splits
    from mmzoo.data.render import KARPATHY_NAME, render_shapes

    render_shapes(tmp_path / "shapes", images=4, dev_images=2, test_images=2, size=16)
    karpathy = tmp_path / "shapes" / KARPATHY_NAME
    assert plan_splits(str(karpathy), None) == ["train", "dev", "test"]
    argv = ["extract-features", "--karpathy", str(karpathy), "--images", str(tmp_path / "shapes" / "images")]
    assert main([*argv, "--out", str(tmp_path / "f"), "--splits", "train", "val"]) == 2
    assert "this file calls its validation split dev" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()
