"""Raw-image datasets in Karpathy format and the resumable feature extractor (``mmzoo extract-features``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import mmzoo
from mmzoo import registry
from mmzoo.cli import main
from mmzoo.contracts import BuildContext
from mmzoo.data import ImageFolder, KarpathyImages, collate_images
from mmzoo.data.extract import extract_split
from mmzoo.errors import ConfigError, DataError

SPLITS = ["train", "train", "restval", "test", "test", "test", "test"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The test machine is small and shared: one intra-op thread avoids oversubscription (several times faster)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def karpathy(tmp_path):
    """7 small images, some COCO-style in `filepath` sub-folders, some Flickr-style at the root, and their split file."""
    rng = np.random.default_rng(0)
    entries = []
    for i, split in enumerate(SPLITS):
        subfolder = "" if i % 3 == 0 else ("val2014" if i % 2 else "train2014")  # "": Flickr30K, no filepath
        folder = tmp_path / "images" / subfolder
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
        sentences = [{"raw": f"image {i} caption {c} "} for c in range(6 if i == 0 else 5)]
        entry = {"filename": f"im{i}.png", "split": split, "sentences": sentences}
        entries.append({**entry, "filepath": subfolder} if subfolder else entry)
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return path, tmp_path / "images"


def encoder():
    cls = registry.visual_encoder.get("timm-grid")
    config = cls.Config.model_validate({"weights": "none", "grid": 2, "preprocess": {"image_size": 32}, "heads": 1})
    torch.manual_seed(0)
    return cls(config, BuildContext(embed_dim=8)).eval()


def test_karpathy_images_yield_caption_items(karpathy):
    path, root = karpathy
    ds = KarpathyImages(path, root, "test")
    assert len(ds) == 4 * 5 and len(ds.records) == 4
    image, caption, caption_index, image_index = ds[7]
    assert isinstance(image, Image.Image) and image.size == (56, 40)
    assert (caption, caption_index, image_index) == ("image 4 caption 2", 7, 1)
    train = KarpathyImages(path, root, "train+restval", captions_per_image=5)
    assert len(train.records) == 3 and len(train) == 15  # image 0's sixth caption is dropped
    assert len(KarpathyImages(path, root, "train", captions_per_image=None)) == 11
    pixels = KarpathyImages(path, root, "test", transform=encoder().transform())
    batch = collate_images([pixels[0], pixels[1]])
    assert batch[0].shape == (2, 3, 32, 32) and batch[1] == ["image 3 caption 0", "image 3 caption 1"]


def test_karpathy_errors_name_the_problem(karpathy, tmp_path):
    path, root = karpathy
    with pytest.raises(DataError, match="no images in split 'val'; its splits are restval, test, train"):
        KarpathyImages(path, root, "val")
    with pytest.raises(DataError, match="has 5 captions; 6 are needed"):
        KarpathyImages(path, root, "test", captions_per_image=6)
    (tmp_path / "broken.json").write_text('{"images": [{"filename": "x.png"}]}')
    with pytest.raises(DataError, match="lacks 'filename', 'split'"):
        KarpathyImages(tmp_path / "broken.json", root, "test")
    ds = KarpathyImages(path, tmp_path / "nowhere", "test")
    with pytest.raises(DataError, match="Cannot read image"):
        ds[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(DataError, match="is not a folder"):
        ImageFolder(tmp_path / "missing")


def test_extract_writes_the_precomputed_layout(karpathy, tmp_path):
    path, root = karpathy
    enc = encoder()
    ds = KarpathyImages(path, root, "test")
    ims = extract_split(enc, ds, tmp_path / "feats", "test", batch_size=3, progress=False)
    feats = np.load(ims, mmap_mode="r")
    assert feats.shape == (4, 4, enc.input_dim) and feats.dtype == np.float32
    with torch.no_grad():
        expected = enc.regions(enc.preprocess([r.path for r in ds.records]))
    np.testing.assert_allclose(feats, expected.numpy(), rtol=1e-4, atol=1e-5)
    lines = (tmp_path / "feats" / "test_caps.txt").read_text().splitlines()
    assert len(lines) == 20 and lines[5] == "image 4 caption 0"
    assert not (tmp_path / "feats" / "test_ims.progress.json").exists()
    manifest = json.loads((tmp_path / "feats" / "mmzoo_data.json").read_text())
    assert manifest["region_dim"] == enc.input_dim and manifest["splits"]["test"]["images"] == 4
    assert manifest["splits"]["test"]["captions"] == 20


def test_extract_resumes_after_an_interruption(karpathy, tmp_path):
    path, root = karpathy
    ds = KarpathyImages(path, root, "test")
    reference = np.array(np.load(extract_split(encoder(), ds, tmp_path / "ref", "test", batch_size=1, progress=False)))

    enc = encoder()
    real = enc.regions
    calls = []

    def interrupted(pixels):
        calls.append(len(pixels))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(pixels)

    enc.regions = interrupted
    with pytest.raises(KeyboardInterrupt):
        extract_split(enc, ds, tmp_path / "feats", "test", batch_size=1, progress=False)
    marker = json.loads((tmp_path / "feats" / "test_ims.progress.json").read_text())
    assert marker["done"] == 2 and not (tmp_path / "feats" / "test_caps.txt").exists()

    calls.clear()
    enc.regions = lambda pixels: calls.append(len(pixels)) or real(pixels)
    extract_split(enc, ds, tmp_path / "feats", "test", batch_size=1, progress=False)
    assert calls == [1, 1]  # only the two images not yet done
    np.testing.assert_array_equal(np.load(tmp_path / "feats" / "test_ims.npy"), reference)

    calls.clear()
    extract_split(enc, ds, tmp_path / "feats", "test", batch_size=1, progress=False)
    assert calls == []  # complete: nothing to do


def stop_after(enc, batches: int) -> None:
    """Make ``enc.regions`` raise KeyboardInterrupt (as Ctrl-C would) once ``batches`` batches are done."""
    real, calls = enc.regions, []

    def regions(pixels):
        if len(calls) == batches:
            raise KeyboardInterrupt
        calls.append(1)
        return real(pixels)

    enc.regions = regions


def test_resume_with_other_settings_is_refused(karpathy, tmp_path):
    path, root = karpathy
    ds = KarpathyImages(path, root, "test")
    enc = encoder()
    stop_after(enc, 1)
    with pytest.raises(KeyboardInterrupt):
        extract_split(enc, ds, tmp_path / "f", "test", batch_size=1, progress=False, source={"visual": {"grid": 2}})
    with pytest.raises(DataError, match="belongs to another run"):
        extract_split(enc, ds, tmp_path / "f", "test", batch_size=1, progress=False, source={"visual": {"grid": 3}})


def test_extract_features_command(karpathy, tmp_path, capsys):
    from safetensors.torch import save_file

    path, root = karpathy
    weights = tmp_path / "backbone.safetensors"  # one fixed backbone for the extractor and the model
    save_file({k: v.contiguous() for k, v in encoder().backbone.state_dict().items()}, str(weights))
    args = ["extract-features", "--karpathy", str(path), "--images", str(root), "--out", str(tmp_path / "out")]
    args += ["--splits", "train", "test", "--weights", str(weights), "--grid", "2", "--image-size", "32"]
    args += ["--batch-size", "2"]
    assert main(args) == 0
    assert np.load(tmp_path / "out" / "train_ims.npy").shape == (2, 4, 1280)
    assert np.load(tmp_path / "out" / "test_ims.npy").shape == (4, 4, 1280)
    manifest = json.loads((tmp_path / "out" / "mmzoo_data.json").read_text())
    assert manifest["model_overrides"]["visual.grid"] == 2
    assert manifest["model_overrides"]["visual.preprocess"]["image_size"] == 32
    assert "test: 4 images" in capsys.readouterr().out
    # what a trainer builds from the data: the region size plus the manifest's overrides -> the same pixel encoder
    settings = {
        "visual.in_dim": manifest["region_dim"],
        **manifest["model_overrides"],
        "embed_dim": 16,
        "visual.heads": 2,
    }
    model = mmzoo.create_model("vsepp", **settings).eval()
    model.text.fit(["image caption"])
    with torch.no_grad():
        from_regions = model.encode_images(torch.from_numpy(np.load(tmp_path / "out" / "test_ims.npy")))
        from_pixels = model.encode_images(KarpathyImages(path, root, "test").records[0].path)
    torch.testing.assert_close(from_pixels.pooled, from_regions.pooled[:1], atol=1e-5, rtol=1e-4)
    with pytest.raises(ConfigError, match="extracted with another backbone"):
        mmzoo.create_model("vsepp", **{**settings, "visual.in_dim": 512})
    assert main([*args, "--splits", "val"]) == 2
    assert "has no split 'val'; its splits are train, restval, test" in capsys.readouterr().err
    assert main([*args[:6], str(tmp_path / "out2"), *args[7:], "--splits", "train+restval"]) == 0
    n = len(KarpathyImages(path, root, "train+restval").records)
    assert np.load(tmp_path / "out2" / "train_ims.npy").shape[0] == n > 2, "train+restval is written as train"


def test_extract_features_with_a_saved_models_backbone(karpathy, tmp_path):
    path, root = karpathy
    torch.manual_seed(0)
    settings = {"embed_dim": 16, "visual.heads": 2, "visual.weights": "none", "visual.grid": 1}
    model = mmzoo.create_model("pixels-lite0", **settings, **{"visual.preprocess.image_size": 32})
    model.text.fit(["image caption"])
    model.save_pretrained(tmp_path / "model")
    args = ["extract-features", "--karpathy", str(path), "--images", str(root), "--out", str(tmp_path / "out")]
    assert main([*args, "--splits", "test", "--model", str(tmp_path / "model")]) == 0
    feats = np.load(tmp_path / "out" / "test_ims.npy")
    ds = KarpathyImages(path, root, "test")
    with torch.no_grad():
        expected = model.eval().visual.regions(model.preprocess([r.path for r in ds.records]))
    assert feats.shape == (4, 1, 1280)
    np.testing.assert_allclose(feats, expected.numpy(), rtol=1e-4, atol=1e-5)
