"""The known traps of transformers' CLIP / SigLIP classes, each pinned by a test (docs/clip.md, "Traps")."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import mmzoo
from mmzoo_plugins.clip import processing
from tests.conftest import minilm_path
from tests.plugins.clip.checkpoints import CAPTIONS, images, write_clip, write_siglip


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def siglip_folder(tmp_path_factory):
    return write_siglip(tmp_path_factory.mktemp("siglip"))


def tower_model(folder):
    return mmzoo.create_model("clip", **{"visual.source": str(folder), "text.source": str(folder), "embed_dim": 32})


def test_get_features_return_unnormalised_outputs_and_mmzoo_normalises(clip_folder):
    """transformers 5: get_image_features / get_text_features return output objects whose pooler_output is the
    projected, unnormalised embedding (what broke vllm and torchmetrics); mmzoo's pooled is it, normalised."""
    from transformers import AutoProcessor, CLIPModel

    model, processor = (
        CLIPModel.from_pretrained(str(clip_folder)).eval(),
        AutoProcessor.from_pretrained(str(clip_folder)),
    )
    ours = tower_model(clip_folder)
    with torch.no_grad():
        out = model.get_image_features(**processor(images=images(), return_tensors="pt"))
        text = model.get_text_features(**processor(text=CAPTIONS, padding=True, return_tensors="pt"))
        assert not isinstance(out, torch.Tensor) and not isinstance(text, torch.Tensor)
        assert not torch.allclose(out.pooler_output.norm(dim=-1), torch.ones(3))
        torch.testing.assert_close(ours.encode_images(images()).pooled, mmzoo.plugin.l2_normalize(out.pooler_output))
        torch.testing.assert_close(ours.encode_texts(CAPTIONS).pooled, mmzoo.plugin.l2_normalize(text.pooler_output))


def test_tokenizer_constructors_ignore_their_files_so_mmzoo_uses_from_pretrained(clip_folder):
    """CLIPTokenizer(vocab_file=..., merges_file=...) and BertTokenizer(vocab_file=...) silently map every word to
    the unknown token in transformers 5; from_pretrained(folder) reads the files. The towers use from_pretrained."""
    from transformers import BertTokenizer, CLIPTokenizer

    words = "a red circle"
    ignored = CLIPTokenizer(vocab_file=str(clip_folder / "vocab.json"), merges_file=str(clip_folder / "merges.txt"))
    loaded = CLIPTokenizer.from_pretrained(str(clip_folder))
    assert set(ignored(words, add_special_tokens=False)["input_ids"]) <= {ignored.unk_token_id}
    assert loaded.unk_token_id not in loaded(words, add_special_tokens=False)["input_ids"]
    bert = BertTokenizer(vocab_file=f"{minilm_path()}/vocab.txt")
    assert set(bert(words, add_special_tokens=False)["input_ids"]) <= {bert.unk_token_id}
    tokens = tower_model(clip_folder).tokenize([words])
    assert loaded.unk_token_id not in tokens.ids[0, 1:-1].tolist()  # CLIP's unknown token is its end token


@pytest.mark.parametrize("write", [write_clip, write_siglip])
def test_long_captions_are_truncated_with_a_warning_never_dropped(tmp_path, write):
    model = tower_model(write(tmp_path / "ckpt"))
    long = " ".join(["a red circle left of a blue square"] * 40)
    with pytest.warns(mmzoo.errors.MMZooWarning, match="truncated"):
        tokens = model.tokenize(["a dog", long, "a cat"])
    assert len(tokens) == 3 and tokens.ids.shape[1] == model.text.max_length
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mmzoo.errors.MMZooWarning)
        out = model.encode_texts(["a dog", long, "a cat"])
    assert out.pooled.shape[0] == 3 and bool(torch.isfinite(out.pooled).all())


def test_siglip_text_is_lower_cased_padded_to_64_and_run_without_a_mask(siglip_folder):
    """big_vision trained SigLIP on lower-cased text padded to 64 tokens, without an attention mask (not doing so
    cost ~4 R@1: big_vision#166). transformers 5's processor returns a mask; passing it changes the scores."""
    from transformers import AutoProcessor, SiglipModel

    model = tower_model(siglip_folder)
    upper, lower = model.tokenize(["A Red Circle"]), model.tokenize(["a red circle"])
    assert torch.equal(upper.ids, lower.ids) and upper.ids.shape == (1, 64)
    assert int(upper.mask.sum()) < 64  # the fragments' mask still marks the padding
    theirs, processor = (
        SiglipModel.from_pretrained(str(siglip_folder)).eval(),
        AutoProcessor.from_pretrained(str(siglip_folder)),
    )
    inputs = processor(text=["a red circle"], padding="max_length", return_tensors="pt")
    with torch.no_grad():
        unmasked = theirs.get_text_features(input_ids=inputs["input_ids"]).pooler_output
        masked = theirs.get_text_features(**inputs).pooler_output
        ours = model.encode_texts(["A Red Circle"]).pooled
    torch.testing.assert_close(ours, mmzoo.plugin.l2_normalize(unmasked), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(mmzoo.plugin.l2_normalize(masked), ours, atol=1e-3)


def _exif_rotated() -> Image.Image:
    """A JPEG whose EXIF orientation (6) says: rotate 90 degrees clockwise to view."""
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes())
    return Image.open(io.BytesIO(buffer.getvalue()))


def _sixteen_bit() -> tuple[Image.Image, Image.Image]:
    values = np.linspace(0, 65535, 40 * 40).reshape(40, 40).astype(np.uint16)
    eight = np.clip(np.rint(values / 65535.0 * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(values), Image.fromarray(eight, mode="L").convert("RGB")


def _palette() -> Image.Image:
    rng = np.random.default_rng(2)
    return Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)).convert("P", palette=Image.ADAPTIVE)


def _cases() -> dict[str, tuple[Image.Image, Image.Image]]:
    base = images(1)[0]
    grey, cmyk, palette, rotated = base.convert("L"), base.convert("CMYK"), _palette(), _exif_rotated()
    return {
        "grey": (grey, grey.convert("RGB")),
        "cmyk": (cmyk, cmyk.convert("RGB")),
        "16-bit": _sixteen_bit(),
        "palette": (palette, palette.convert("RGB")),
        "exif-rotated": (rotated, ImageOps.exif_transpose(rotated).convert("RGB")),
    }


@pytest.mark.parametrize("case", ["grey", "cmyk", "16-bit", "palette", "exif-rotated"])
def test_every_image_mode_gives_the_pixels_the_processor_gives_for_the_image_a_person_sees(clip_folder, case):
    from transformers import AutoImageProcessor

    image, seen = _cases()[case]
    processor = AutoImageProcessor.from_pretrained(str(clip_folder))
    expected = processor(images=[seen], return_tensors="pt")["pixel_values"]
    ours = tower_model(clip_folder).preprocess([image])
    torch.testing.assert_close(ours, expected)
    assert processing.to_rgb(image).mode == "RGB"
    if case in ("16-bit", "exif-rotated"):  # what the processor alone makes of them: not the image a person sees
        assert not torch.allclose(processor(images=[image], return_tensors="pt")["pixel_values"], expected)


def test_unreadable_images_are_named_errors(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(mmzoo.errors.InputError, match=r"broken\.jpg"):
        processing.to_rgb(bad)
    with pytest.raises(mmzoo.errors.InputError, match="PIL image"):
        processing.to_rgb(42)


def test_siglip2_gemma_tokenizer_keeps_capitals_so_the_tower_lower_cases(tmp_path):
    """SigLIP 2 was trained on lower-cased text, but the Gemma tokenizer its repository names keeps capitals."""
    from transformers import AutoTokenizer

    from tests.plugins.clip.checkpoints import write_siglip2

    folder = write_siglip2(tmp_path / "siglip2")
    gemma = AutoTokenizer.from_pretrained(str(folder))
    assert gemma("A Dog")["input_ids"] != gemma("a dog")["input_ids"]
    model = tower_model(folder)
    assert torch.equal(model.tokenize(["A Dog"]).ids, model.tokenize(["a dog"]).ids)
