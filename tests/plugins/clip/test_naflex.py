"""SigLIP 2 NaFlex: images at their own aspect ratio as patch sequences, only the real patches as fragments.

Checked against transformers' ``Siglip2Model`` run directly: the fragments are its patch tokens at the real
patches, padding never changes a score, ``max_num_patches`` is honoured (and saved), the DataLoader and cached-regions
paths give the same as ``encode_images``, and malformed inputs are named errors. The trap: transformers'
``Siglip2Processor`` applies its own class defaults (16-pixel patches, 256 of them) over the image processor's saved
settings; mmzoo uses the image processor itself.
"""

from __future__ import annotations

import pytest
import torch

import mmzoo
from mmzoo.cli import main
from mmzoo.errors import ConfigError, InputError, MMZooWarning
from mmzoo_plugins.clip.processing import pack_naflex, unpack_naflex
from tests.plugins.clip.checkpoints import CAPTIONS, images, write_clip, write_siglip2_naflex

TOL = {"atol": 1e-5, "rtol": 1e-5}


@pytest.fixture(scope="module")
def naflex_folder(tmp_path_factory):
    return write_siglip2_naflex(tmp_path_factory.mktemp("naflex"))


def from_folder(folder, **overrides):
    return mmzoo.create_model(
        "siglip", **{"visual.source": str(folder), "text.source": str(folder), "embed_dim": 32, **overrides}
    ).eval()


def transformers_vision(folder, **processor_kwargs):
    """transformers' own image processor and vision tower on :func:`images`: (inputs, last hidden state, pooled)."""
    from transformers import AutoImageProcessor, Siglip2Model

    inputs = AutoImageProcessor.from_pretrained(str(folder))(images=images(), return_tensors="pt", **processor_kwargs)
    model = Siglip2Model.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        out = model.vision_model(**inputs)
    return inputs, out.last_hidden_state, out.pooler_output


def test_fragments_are_the_real_patches_of_each_aspect_ratio(naflex_folder):
    model = from_folder(naflex_folder)
    inputs, hidden, pooled = transformers_vision(naflex_folder)
    with torch.no_grad():
        frags = model.encode_images(images())
    real = inputs["pixel_attention_mask"].bool()
    counts = inputs["spatial_shapes"].prod(dim=-1)
    assert len(set(counts.tolist())) > 1 and int((counts < real.shape[1]).sum()) == 2  # two of the three padded
    assert torch.equal(frags.mask, real) and torch.equal(frags.mask.sum(dim=1), counts)
    torch.testing.assert_close(frags.features[real], hidden[real], **TOL)
    assert not bool(frags.features[~real].any())
    torch.testing.assert_close(frags.pooled, torch.nn.functional.normalize(pooled, dim=-1), **TOL)


def test_padding_never_changes_a_score(naflex_folder):
    model = from_folder(naflex_folder)
    packed = model.preprocess(images())
    _, mask, _ = unpack_naflex(packed)
    noisy = packed.clone()
    noise = torch.randn(noisy[:, 1:].shape, generator=torch.Generator().manual_seed(0))
    noisy[:, 1:][~mask] = noise[~mask]  # garbage in every padded patch
    with torch.no_grad():
        clean, dirty = model.encode_images(packed), model.encode_images(noisy)
        alone = model.encode_images(images()[1:2])  # one image, no batch-mates
    torch.testing.assert_close(dirty.pooled, clean.pooled, **TOL)
    torch.testing.assert_close(dirty.features, clean.features, **TOL)
    torch.testing.assert_close(alone.pooled, clean.pooled[1:2], **TOL)


def test_max_num_patches_is_honoured_and_saved(tmp_path, naflex_folder):
    model = from_folder(naflex_folder, **{"visual.max_num_patches": 64})
    inputs, _, pooled = transformers_vision(naflex_folder, max_num_patches=64)
    packed = model.preprocess(images())
    assert packed.shape == (3, 1 + 64, 16 * 16, 3)
    with torch.no_grad():
        frags = model.encode_images(packed)
    assert torch.equal(frags.mask.sum(dim=1), inputs["spatial_shapes"].prod(dim=-1))
    torch.testing.assert_close(frags.pooled, torch.nn.functional.normalize(pooled, dim=-1), **TOL)
    again = mmzoo.from_pretrained(f"local-dir:{model.save_pretrained(tmp_path / 'saved')}")
    assert again.preprocess(images()).shape == packed.shape
    with torch.no_grad():
        torch.testing.assert_close(
            again.similarity(again.encode_images(images()), again.encode_texts(CAPTIONS)),
            model.similarity(frags, model.encode_texts(CAPTIONS)),
        )


def test_the_combined_processor_overrides_the_saved_patch_settings_so_the_tower_uses_the_image_processor(tmp_path):
    """transformers 5's Siglip2Processor fills patch_size=16 / max_num_patches=256 from its class defaults, over a
    preprocessor_config.json that says 8 / 16: a folder with other settings is silently preprocessed wrongly."""
    from transformers import AutoProcessor

    folder = write_siglip2_naflex(tmp_path / "small", patch_size=8, max_num_patches=16)
    combined = AutoProcessor.from_pretrained(str(folder))(images=images(), return_tensors="pt")
    assert combined["pixel_values"].shape == (3, 256, 16 * 16 * 3)  # the trap: not the folder's 16 patches of 8
    model = from_folder(folder)
    inputs, _, pooled = transformers_vision(folder)  # the image processor alone: the saved settings
    assert inputs["pixel_values"].shape == (3, 16, 8 * 8 * 3)
    packed = model.preprocess(images())
    assert packed.shape == (3, 1 + 16, 8 * 8, 3)
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode_images(packed).pooled, torch.nn.functional.normalize(pooled, dim=-1), **TOL
        )


def test_dataloader_and_cached_regions_give_what_encode_images_gives(naflex_folder):
    from mmzoo.data.images import collate_images

    model = from_folder(naflex_folder)
    packed = model.preprocess(images())
    transform = model.visual.transform()
    (stacked,) = collate_images([(transform(image),) for image in images()])
    torch.testing.assert_close(stacked, packed)
    with torch.no_grad():
        direct = model.encode_images(packed)
        regions = model.visual.regions(packed)  # what `mmzoo extract-features` caches
        cached = model.encode_images(regions)
    assert regions.shape == (3, 1 + 256, 32)
    assert torch.equal(cached.mask, direct.mask)
    torch.testing.assert_close(cached.pooled, direct.pooled)
    torch.testing.assert_close(cached.features, direct.features)


def test_packing_round_trips_the_processor_output(naflex_folder):
    inputs, _, _ = transformers_vision(naflex_folder)
    values, mask, shapes = unpack_naflex(pack_naflex(inputs["pixel_values"], inputs["spatial_shapes"]))
    assert torch.equal(values, inputs["pixel_values"]) and torch.equal(shapes, inputs["spatial_shapes"])
    assert torch.equal(mask, inputs["pixel_attention_mask"].bool())


def test_bad_inputs_are_named_errors(naflex_folder, tmp_path):
    model = from_folder(naflex_folder)
    with pytest.raises(InputError, match="NaFlex tower takes images"):
        model.encode_images(torch.zeros(2, 3, 32, 32))  # square pixels of a fixed-resolution tower
    packed = model.preprocess(images(2))
    bad = packed.clone()
    bad[0, 0, 0, 0] = 1000.0  # a patch grid larger than the sequence
    with pytest.raises(InputError, match="patch grid"):
        model.encode_images(bad)
    raw = transformers_vision(naflex_folder)[0]["pixel_values"]  # the model card's processor output, unpacked
    with pytest.raises(InputError, match="raw pixel_values"):  # for SigLIP 2 B (16*16*3 = 768 = its width),
        model.visual(raw, None)  # encode_images' region shape check lets such a tensor through to here
    with pytest.raises(InputError, match="float32"):
        model.encode_images(packed.to(torch.bfloat16))
    with pytest.raises(InputError, match="finite"):
        model.encode_images(packed.masked_fill(torch.ones_like(packed, dtype=torch.bool), float("nan")))
    clip = write_clip(tmp_path / "clip")
    with pytest.raises(ConfigError, match="max_num_patches is a SigLIP 2 NaFlex setting"):
        mmzoo.create_model(
            "clip",
            **{"visual.source": str(clip), "text.source": str(clip), "embed_dim": 32, "visual.max_num_patches": 64},
        )
    with pytest.raises(ConfigError, match="max_num_patches"):
        from_folder(naflex_folder, **{"visual.max_num_patches": 0})


def test_search_cli_on_a_saved_naflex_model(tmp_path, naflex_folder, capsys):
    model = from_folder(naflex_folder)
    saved = model.save_pretrained(tmp_path / "saved")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, image in enumerate(images(4)):  # four aspect ratios
        image.save(photos / f"im{i}.png")
    paths = sorted(photos.iterdir())
    with torch.no_grad():
        scores = model.similarity(model.encode_images(paths), model.encode_texts(["a red circle"]))[:, 0]
    expected = [paths[i].name for i in scores.argsort(descending=True)[:2].tolist()]
    assert main(["search", str(saved), "--images", str(photos), "a red circle", "--top", "2"]) == 0
    shown = [line.split("/")[-1] for line in capsys.readouterr().out.splitlines() if line.strip()[:2] in ("1.", "2.")]
    assert shown == expected


def test_text_is_big_vision_s_lower_no_bos_sticky_eos_padded_to_64(naflex_folder):
    """big_vision: ``lower | tok(length=64, model="gemma", bos="no", eos="sticky")``, no attention mask."""
    model = from_folder(naflex_folder)
    tokenizer = model.text.tokenizer
    with pytest.warns(MMZooWarning, match="longer than the 64 tokens"):
        tokens = model.tokenize(["A Dog", "a long caption " * 10])
    assert tokens.ids.shape == (2, 64)
    assert torch.equal(tokens.ids[0, :6], torch.tensor(tokenizer("a dog")["input_ids"]))
    assert int(tokens.ids[0, 0]) != tokenizer.bos_token_id and int(tokens.ids[0, 5]) == tokenizer.eos_token_id
    assert bool((tokens.ids[0, 6:] == tokenizer.pad_token_id).all())
    assert bool(tokens.mask[1].all()) and int(tokens.ids[1, -1]) == tokenizer.eos_token_id  # sticky: kept when cut


def test_eval_from_pixels_in_batches_of_mixed_aspect_ratios(tmp_path, naflex_folder, capsys):
    import json

    import numpy as np
    from PIL import Image

    from mmzoo.data import open_image_split
    from mmzoo.evaluation import recall_metrics

    rng = np.random.default_rng(5)
    root = tmp_path / "images"
    root.mkdir()
    entries = []
    for i, (w, h) in enumerate([(40, 30), (30, 52), (64, 20), (33, 33)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"im{i}.jpg")
        sentences = [{"raw": f"{word} {i} {k}"} for k, word in enumerate(["red", "blue", "dog", "park", "street"])]
        entries.append({"filename": f"im{i}.jpg", "split": "test", "sentences": sentences})
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": entries}))
    model = from_folder(naflex_folder)
    saved = model.save_pretrained(tmp_path / "saved")
    out = tmp_path / "metrics.json"
    args = ["eval", str(saved), "--images", str(root), "--karpathy", str(tmp_path / "dataset_coco.json")]
    assert main([*args, "--split", "test", "--json", str(out), "--device", "cpu", "--batch-size", "3"]) == 0
    split = open_image_split(root, karpathy=tmp_path / "dataset_coco.json", split="test")
    with torch.no_grad():
        sims = model.similarity(model.encode_images(split.load_images(range(4))), model.encode_texts(split.captions))
    assert json.loads(out.read_text())["rsum"] == pytest.approx(recall_metrics(sims, 5)["rsum"], abs=1e-4)
