"""The known traps of BLIP in transformers, each pinned: if upstream changes, these fail and say what changed."""

from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image

import mmzoo
from mmzoo.cli import main
from mmzoo_plugins.blip.text import clean_caption, enc_token_id
from tests.plugins.blip._tiny import CAPTIONS, ENC_ID, VOCAB, photos, write_blip_folder, write_vocab


@pytest.fixture(scope="module")
def blip_folder(tmp_path_factory):
    return write_blip_folder(tmp_path_factory.mktemp("blip") / "tiny")


@pytest.fixture(scope="module")
def model(blip_folder):
    sources = {f"{s}.pretrained": str(blip_folder) for s in ("visual", "text", "fusion")}
    return mmzoo.create_model("blip-itm-base", **sources).eval()


def test_bert_tokenizer_vocab_file_is_silently_ignored_but_from_pretrained_works(tmp_path, model):
    """transformers 5: ``BertTokenizer(vocab_file=...)`` tokenises every word to [UNK]; ``from_pretrained`` reads it."""
    from transformers import BertTokenizer

    vocab = write_vocab(tmp_path / "vocab")
    ignored = BertTokenizer(vocab_file=str(vocab))
    unk = ignored.convert_tokens_to_ids("[UNK]")
    words = ignored(CAPTIONS[0], add_special_tokens=False)["input_ids"]
    assert words and set(words) == {unk}, "if this fails, transformers reads vocab_file again"
    loaded = BertTokenizer.from_pretrained(str(tmp_path / "vocab"))
    ids = loaded(CAPTIONS[0], add_special_tokens=False)["input_ids"]
    assert ids == [VOCAB.index(w) for w in CAPTIONS[0].split()]
    tokens = model.tokenize([CAPTIONS[0]])
    assert tokens.ids[0, 1:-1].tolist() == ids, "the BLIP text encoder tokenises with from_pretrained"


def test_a_long_caption_is_truncated_with_a_warning_never_dropped(model, caplog):
    model.text._warned_long = False
    long = " ".join(["a dog playing on the grass"] * 10)  # 60 words, 62 tokens with [CLS] and [SEP]
    with caplog.at_level(logging.WARNING, logger="mmzoo.blip.text"):
        tokens = model.tokenize([long, "a cat"])
        fragments = model.encode_texts([long, "a cat"])
    assert tokens.ids.shape == (2, 35) and int(tokens.mask[0].sum()) == 35, "LAVIS's 35 tokens, [SEP] last"
    assert tokens.ids[0, -1] == VOCAB.index("[SEP]")
    assert len(fragments) == 2 and "truncated" in caplog.text


def test_captions_are_cleaned_as_lavis_cleans_them():
    assert clean_caption("A Dog!  Running (fast)... on the beach.\n") == "a dog running fast on the beach"
    assert clean_caption(" ".join(["word"] * 60)) == " ".join(["word"] * 50)


def test_enc_id_comes_from_the_tokenizer_or_blips_layout(model):
    from transformers import BlipTextConfig

    tokenizer = model.text.tokenizer
    assert enc_token_id(tokenizer, BlipTextConfig(vocab_size=len(VOCAB) + 2, bos_token_id=len(VOCAB))) == ENC_ID
    with pytest.raises(mmzoo.errors.ConfigError, match="itm_first_token=cls"):
        enc_token_id(tokenizer, BlipTextConfig(vocab_size=len(VOCAB) + 5, bos_token_id=len(VOCAB)))
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    try:
        assert enc_token_id(tokenizer, BlipTextConfig()) == tokenizer.convert_tokens_to_ids("[ENC]")
    finally:
        tokenizer.add_special_tokens({"additional_special_tokens": []})


def test_transformers_cross_attention_ignores_the_image_mask(blip_folder, model):
    """Upstream drops ``encoder_attention_mask`` in BLIP's text layer; blip-itm cuts padded image fragments instead."""
    from transformers import BlipForImageTextRetrieval

    hf = BlipForImageTextRetrieval.from_pretrained(blip_folder).eval()
    with torch.no_grad():
        images, texts = model.encode_images(photos()[:1]), model.encode_texts(CAPTIONS[:1])
        states = images.features
        ids = model.tokenize(CAPTIONS[:1]).ids
        half = torch.ones(states.shape[:2], dtype=torch.long)
        half[:, states.shape[1] // 2 :] = 0
        run = lambda mask: hf.text_encoder(input_ids=ids, encoder_hidden_states=states, encoder_attention_mask=mask)  # noqa: E731
        assert torch.equal(run(half).last_hidden_state, run(torch.ones_like(half)).last_hidden_state), (
            "transformers now honours the image mask: blip-itm's cut-off may go"
        )
        keep = states.shape[1] // 2
        padded = mmzoo.plugin.Fragments(states, half.bool(), images.pooled)
        cut = mmzoo.plugin.Fragments(states[:, :keep], torch.ones(1, keep, dtype=torch.bool), images.pooled)
        torch.testing.assert_close(model.fusion(padded, texts), model.fusion(cut, texts))


@pytest.mark.parametrize("mode", ["L", "CMYK", "I;16", "P", "RGBA", "exif"])
def test_image_files_give_the_pixels_the_processor_gives(model, tmp_path, mode):
    from transformers import BlipImageProcessor

    photo = photos()[1]
    if mode == "exif":
        exif = Image.Exif()
        exif[0x0112] = 6  # rotated: transformers does not apply EXIF orientation, and neither does mmzoo
        path = tmp_path / "photo.jpg"
        photo.save(path, exif=exif)
    else:
        image = photo.convert("L").convert("I;16") if mode == "I;16" else photo.convert(mode)
        path = tmp_path / ("photo.tiff" if mode in ("CMYK", "I;16") else "photo.png")
        image.save(path)
    processor = model.visual.processor  # read from the folder's preprocessor_config.json
    with Image.open(path) as opened:
        expected = processor(images=[opened], return_tensors="pt")["pixel_values"]
    assert isinstance(processor, BlipImageProcessor)
    torch.testing.assert_close(model.preprocess([path]), expected, atol=0, rtol=0)
    torch.testing.assert_close(model.preprocess(path), expected, atol=0, rtol=0)


def test_bad_sources_are_named_errors(blip_folder, tmp_path):
    with pytest.raises(mmzoo.errors.ConfigError, match="not a folder"):
        mmzoo.create_model("blip-itm-base", **{"visual.pretrained": str(tmp_path / "missing")})
    with pytest.raises(mmzoo.errors.ConfigError, match="embed_dim=256"):
        mmzoo.create_model("blip-itm-base", embed_dim=128, **{"visual.pretrained": str(blip_folder)})
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in blip_folder.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(broken / "model.safetensors"))
    del tensors["itm_head.weight"]
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(mmzoo.errors.CheckpointError, match=r"itm_head\.weight"):
        mmzoo.create_model(
            "blip-itm-base",
            **{"fusion.pretrained": str(broken), "visual.pretrained": str(broken), "text.pretrained": str(broken)},
        )
    (broken / "model.safetensors").unlink()
    with pytest.raises(mmzoo.errors.CheckpointError, match="safetensors"):
        mmzoo.create_model("blip-itm-base", **{"visual.pretrained": str(broken)})


def test_cli_search_ranks_a_folder_and_reports_bad_input(model, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, photo in enumerate(photos()):
        photo.save(folder / f"p{i}.png")
    model.save_pretrained(tmp_path / "saved")
    sheet = tmp_path / "sheet.png"
    args = ["search", str(tmp_path / "saved"), "--images", str(folder), "--sheet", str(sheet)]
    assert main([*args, "a cat sitting on a table"]) == 0
    assert "p0.png" in capsys.readouterr().out and sheet.is_file()
    assert main(["search", str(tmp_path / "saved"), "--images", str(tmp_path / "saved"), "a cat"]) == 2
    assert "holds no images" in capsys.readouterr().err
