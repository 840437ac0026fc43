"""VSE-infinity from pixels: their WSL-grid variant maps onto timm strictly; their BUTD grid does not.

Their WSL backbone is ``torch.hub.load('facebookresearch/WSL-Images', 'resnext101_32x8d_wsl')``, i.e.
torchvision's ResNet class at ResNeXt-101 32x8d. timm's ``resnext101_32x8d`` has the same tensors (checked
here on the meta device, at full size, for free) and the same computation (checked numerically on a small
torchvision ResNet through the whole conversion, against the reference EncoderImageFull).
"""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision

import mmzoo
from tests.conftest import minilm_path
from tests.reference import vse_infinity_reference as ref
from tests.test_vse_infinity_convert import CAPTIONS, EMBED, bert_folder, tiny_config  # noqa: F401 (fixture)


def shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_wsl_resnext_has_exactly_timms_tensors():
    with torch.device("meta"):
        theirs = torchvision.models.resnext101_32x8d()  # what WSL-Images' hubconf builds (then loads weights into)
        ours = timm.create_model("resnext101_32x8d", pretrained=False)
    assert shapes(theirs) == shapes(ours)


def test_their_caffe_style_resnet_is_not_timms_network():
    """Same names and shapes, other computation: why the BUTD-grid backbone gets no entry (docs/vse-infinity.md)."""
    ours = timm.create_model("resnet50", pretrained=False, num_classes=0).eval()
    stem = ours.maxpool
    assert (stem.padding, stem.ceil_mode) == (1, False)  # theirs: MaxPool2d(3, 2, padding=0, ceil_mode=True)
    block = ours.layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)  # theirs: stride on conv1, the 1x1


@pytest.mark.slow
def test_wsl_grid_checkpoint_gives_their_similarities(tmp_path, bert_folder):  # noqa: F811
    torch.manual_seed(2)
    resnet = torchvision.models.resnet18()
    img = ref.randomize_batchnorm(ref.EncoderImageFull(ref.ResnetFeatureExtractor(resnet), 512, EMBED)).eval()
    txt = ref.EncoderTextBert(EMBED, tiny_config()).eval()
    opt = ref.make_opt(
        precomp_enc_type="backbone", backbone_source="wsl", img_dim=512, embed_size=EMBED, input_scale_factor=0.25
    )
    ref.write_checkpoint(tmp_path / "model_best.pth", img, txt, opt)
    out = mmzoo.convert_checkpoint(
        "vse-infinity-grid", tmp_path / "model_best.pth", tmp_path / "out", bert=str(bert_folder)
    )
    model = mmzoo.from_pretrained(f"local-dir:{out}")
    visual = model.config.visual
    assert visual.name == "vse-infinity-grid" and visual.backbone == "resnet18" and visual.image_size == 64
    pre = model.visual.grid.config.preprocess
    assert (pre.image_size, pre.crop_mode, pre.crop_pct, pre.interpolation) == (64, "squash", 1.0, "bilinear")
    pixels = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    slow = ref.slow_bert_tokenizer(minilm_path())
    with torch.no_grad():
        theirs = img(pixels) @ ref.encode_bert_captions(txt, slow, CAPTIONS).t()
        ours = model.similarity(model.encode_images(pixels), model.encode_texts(CAPTIONS))
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-4)
    # usable from pixels: encode_images takes PIL images with the saved preprocessing, and `mmzoo search` runs
    import skimage.data
    from PIL import Image

    from mmzoo.cli import main

    folder = tmp_path / "images"
    folder.mkdir()
    photos = [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in ("astronaut", "chelsea", "coffee")]
    for i, photo in enumerate(photos):
        photo.save(folder / f"{i}.png")
    with torch.no_grad():
        assert model.encode_images(photos).pooled.shape == (3, EMBED)
        assert model.preprocess(photos[:1]).shape == (1, 3, 64, 64)
    sheet = tmp_path / "sheet.png"
    assert main(["search", str(out), "--images", str(folder), "a cat", "--top", "2", "--sheet", str(sheet)]) == 0
    assert sheet.is_file()
