"""Converting VSE-infinity checkpoints written in their exact format, and checking mmzoo gives their similarities.

Each checkpoint is written by the reference modules (tests/reference/vse_infinity_reference.py, which mirror
woodfrog/vse_infty's nn.Modules and were checked against their real classes), at tiny sizes, with
``torch.save`` as their train.py does. The converted folder is loaded with ``from_pretrained("local-dir:...")``
and must give the reference's similarities on the same features and captions.
"""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from transformers import AutoTokenizer, BertConfig

import mmzoo
from tests.conftest import minilm_path
from tests.reference import vse_infinity_reference as ref

EMBED, REGION_DIM = 32, 24
CAPTIONS = [
    "A man riding a horse, on a sunny beach!",
    "Two dogs play with a frisbee in the park.",
    "a naïve café owner's cat",
    # longer than 32 word pieces: their code does not truncate, neither does mmzoo
    "a very long caption " + "with many many words and commas , " * 6 + "that goes on and on",
    "xylophone",
    "a [MASK] dog [SEP] x [pad] [UNK]",  # their basic tokeniser knows no special tokens: plain words there
]


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    """What --bert points to: a tiny BertConfig and the real uncased WordPiece tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    tiny_config().save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return folder


def tiny_config() -> BertConfig:
    return BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        vocab_size=30522,
        max_position_embeddings=128,
    )


def region_inputs(n: int = 4, k: int = 9, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, REGION_DIM, generator=g)
    lengths = torch.tensor([k, k, 5, 2])[:n]
    mask = torch.arange(k)[None] < lengths[:, None]
    return x.masked_fill(~mask[..., None], 0.0), lengths


def bert_checkpoint(path, data_parallel=True, **opt):
    torch.manual_seed(0)
    img = ref.randomize_batchnorm(ref.EncoderImageAggr(REGION_DIM, EMBED)).eval()
    txt = ref.EncoderTextBert(EMBED, tiny_config()).eval()
    ref.write_checkpoint(path, img, txt, ref.make_opt(img_dim=REGION_DIM, embed_size=EMBED, **opt), data_parallel)
    return img, txt


def load_theirs(path):
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, weights_only=True)


def convert(tmp_path, name, checkpoint, **options) -> mmzoo.MatchingModel:
    out = mmzoo.convert_checkpoint(name, checkpoint, tmp_path / "converted", **options)
    return mmzoo.from_pretrained(f"local-dir:{out}")


def our_sims(model, x, lengths, captions):
    mask = torch.arange(x.shape[1])[None] < lengths[:, None]
    with torch.no_grad():
        return model.similarity(model.encode_images(x, mask), model.encode_texts(captions))


@pytest.mark.parametrize("data_parallel", [True, False])
def test_bert_region_checkpoint_gives_their_similarities(tmp_path, bert_folder, data_parallel):
    img, txt = bert_checkpoint(tmp_path / "model_best.pth", data_parallel)
    model = convert(tmp_path, "vse-infinity", tmp_path / "model_best.pth", bert=str(bert_folder))
    assert model.config.visual.name == "vse-infinity-regions" and model.config.text.name == "vse-infinity-bert"
    assert model.config.fusion is None and model.config.alpha == 0.0 and model.config.embed_dim == EMBED
    x, lengths = region_inputs()
    tokenizer = ref.slow_bert_tokenizer(minilm_path())  # the same WordPiece vocabulary, as a vocab.txt
    with torch.no_grad():
        theirs = img(x, lengths) @ ref.encode_bert_captions(txt, tokenizer, CAPTIONS).t()
    torch.testing.assert_close(our_sims(model, x, lengths, CAPTIONS), theirs, atol=2e-6, rtol=1e-5)
    # eval-time tokenisation: their ids exactly, no truncation at 32
    ours = model.text.tokenize(CAPTIONS)
    for row, caption in enumerate(CAPTIONS):
        ids = ref.bert_eval_ids(tokenizer, caption)
        assert ours.ids[row, : len(ids)].tolist() == ids and int(ours.mask[row].sum()) == len(ids)
    assert int(ours.mask.sum(1).max()) > 32


def test_converted_folder_is_an_ordinary_saved_model(tmp_path, bert_folder):
    bert_checkpoint(tmp_path / "model_best.pth")
    out = mmzoo.convert_checkpoint("vse-infinity", tmp_path / "model_best.pth", tmp_path / "out", bert=str(bert_folder))
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in out.iterdir()}
    assert (out / "text" / "tokenizer_config.json").is_file() and (out / "text" / "config.json").is_file()
    document = json.loads((out / "config.json").read_text())
    assert document["model"]["text"]["bert_config"]["num_hidden_layers"] == 2
    card = (out / "README.md").read_text()
    assert "woodfrog/vse_infty" in card and "chen2021vseinfty" in card


def bigru_vocab(path):
    """A vocabulary in SCAN's serialize_vocab format (no <mask>: their train.py appends it)."""
    words = ["<pad>", "<start>", "<end>", "<unk>", "a", "man", "riding", "horse", ",", "on", "beach", "!", "dogs"]
    words += ["two", "play", "with", "frisbee", "in", "the", "park", ".", "cat", "'s", "owner"]
    word2idx = {w: i for i, w in enumerate(words)}
    path.write_text(
        json.dumps({"word2idx": word2idx, "idx2word": {str(i): w for w, i in word2idx.items()}, "idx": len(words)})
    )
    return {**word2idx, "<mask>": len(words)}


def bigru_checkpoint(tmp_path, vocab_rows=None):
    vocab = bigru_vocab(tmp_path / "coco_precomp_vocab.json")
    torch.manual_seed(1)
    img = ref.randomize_batchnorm(ref.EncoderImageAggr(REGION_DIM, EMBED)).eval()
    txt = ref.EncoderTextGRU(vocab_rows or len(vocab), EMBED, 16, 1).eval()
    opt = ref.make_opt(
        img_dim=REGION_DIM, embed_size=EMBED, word_dim=16, num_layers=1, vocab_size=len(vocab), drop=True
    )
    ref.write_checkpoint(tmp_path / "model_best.pth", img, txt, opt, data_parallel=False)  # bigru branch: no wrap
    return img, txt, vocab


def test_bigru_region_checkpoint_gives_their_similarities(tmp_path):
    img, txt, vocab = bigru_checkpoint(tmp_path)
    model = convert(
        tmp_path, "vse-infinity", tmp_path / "model_best.pth", vocab=str(tmp_path / "coco_precomp_vocab.json")
    )
    assert model.config.text.name == "vse-infinity-bigru" and model.text.vocab == vocab
    x, lengths = region_inputs()
    with torch.no_grad():
        theirs = img(x, lengths) @ ref.encode_gru_captions(txt, vocab, CAPTIONS).t()
    torch.testing.assert_close(our_sims(model, x, lengths, CAPTIONS), theirs, atol=2e-6, rtol=1e-5)


# -- bad input: each a named error, nothing written ------------------------------------------------------------
def refuses(tmp_path, match, name="vse-infinity", checkpoint=None, **options):
    out = tmp_path / "refused"
    with pytest.raises(mmzoo.errors.CheckpointError, match=match):
        mmzoo.convert_checkpoint(name, checkpoint or tmp_path / "model_best.pth", out, **options)
    assert not out.exists(), "a failed conversion must leave nothing behind"


def test_truncated_file_is_refused(tmp_path, bert_folder):
    bert_checkpoint(tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "model_best.pth").write_bytes(data[: len(data) // 2])
    refuses(tmp_path, r".", bert=str(bert_folder))


class Payload:
    def __reduce__(self):  # would run code if it were ever unpickled
        return (print, ("unpickled!",))


def test_checkpoint_carrying_another_class_is_refused(tmp_path, bert_folder, capsys):
    bert_checkpoint(tmp_path / "ok.pth")
    state = load_theirs(tmp_path / "ok.pth")
    state["extra"] = Payload()
    torch.save(state, tmp_path / "model_best.pth")
    refuses(tmp_path, r"print", bert=str(bert_folder))  # the message names the refused global
    assert "unpickled!" not in capsys.readouterr().out


def test_another_models_checkpoint_is_refused(tmp_path):
    """VSE++ / SCAN write the same dict layout; without GPO tensors it is not VSE-infinity."""
    scan_img = torch.nn.Linear(REGION_DIM, EMBED)
    scan_txt = torch.nn.Module()
    scan_txt.embed = torch.nn.Embedding(10, 8)
    scan_txt.rnn = torch.nn.GRU(8, EMBED, batch_first=True)
    ref.write_checkpoint(tmp_path / "model_best.pth", scan_img, scan_txt, ref.make_opt(), data_parallel=False)
    refuses(tmp_path, r"no GPO")
    torch.save({"state_dict": scan_img.state_dict()}, tmp_path / "other.pth")
    refuses(tmp_path, r"not a VSE-infinity checkpoint", checkpoint=tmp_path / "other.pth")


def test_grid_checkpoint_given_to_the_region_converter_is_refused(tmp_path, bert_folder):
    bert_checkpoint(tmp_path / "model_best.pth", precomp_enc_type="backbone", backbone_source="wsl")
    refuses(tmp_path, r"grid checkpoint.*vse-infinity-grid", bert=str(bert_folder))


def test_region_checkpoint_given_to_the_grid_converter_is_refused(tmp_path, bert_folder):
    bert_checkpoint(tmp_path / "model_best.pth")
    refuses(tmp_path, r"region-feature checkpoint", name="vse-infinity-grid", bert=str(bert_folder))


def test_butd_grid_checkpoint_is_refused_with_the_reason(tmp_path, bert_folder):
    bert_checkpoint(tmp_path / "model_best.pth", precomp_enc_type="backbone", backbone_source="detector")
    refuses(tmp_path, r"Caffe-style", name="vse-infinity-grid", bert=str(bert_folder))


def test_bigru_vocabulary_must_fit_and_be_given(tmp_path):
    bigru_checkpoint(tmp_path, vocab_rows=40)  # trained with another (40-word) vocabulary
    refuses(tmp_path, r"25 entries .* 40 rows", vocab=str(tmp_path / "coco_precomp_vocab.json"))
    refuses(tmp_path, r"--vocab FILE")
    (tmp_path / "bad.json").write_text(json.dumps(["<pad>", "<unk>"]))
    refuses(tmp_path, r"not a SCAN vocabulary", vocab=str(tmp_path / "bad.json"))


def test_unexpected_missing_and_misshaped_tensors_are_named(tmp_path, bert_folder):
    bert_checkpoint(tmp_path / "ok.pth")
    state = load_theirs(tmp_path / "ok.pth")
    img_state, txt_state = state["model"]
    img_state["module.extra.weight"] = torch.zeros(3)
    del txt_state["module.linear.bias"]
    torch.save(state, tmp_path / "model_best.pth")
    refuses(tmp_path, r"visual\.extra\.weight.*|text\.linear\.bias", bert=str(bert_folder))
    state = load_theirs(tmp_path / "ok.pth")
    state["model"][0]["module.gpool.linear.weight"] = torch.zeros(1, 7)
    torch.save(state, tmp_path / "model_best.pth")
    refuses(tmp_path, r"visual\.gpool\.linear\.weight", bert=str(bert_folder))


def test_bert_folder_that_does_not_fit_is_named(tmp_path):
    bert_checkpoint(tmp_path / "model_best.pth")
    refuses(tmp_path, r"--bert", bert=minilm_path())  # a 6-layer 384-wide BERT: not the checkpoint's


def test_full_size_checkpoint_maps_onto_the_recipe_tensor_for_tensor():
    """At their sizes (2048-d regions, d = 1024, BERT-base), on the meta device: every tensor has its place."""
    from mmzoo_plugins.vse_infinity.checkpoint import map_region_state

    base = BertConfig()  # bert-base-uncased's architecture: 12 layers, 768 wide, 30522 words
    with torch.device("meta"):
        img, txt = ref.EncoderImageAggr(2048, 1024), ref.EncoderTextBert(1024, base)
        model = mmzoo.create_model(
            "vse-infinity", **{"text.bert_config": base.to_dict(), "text.tokenizer": minilm_path()}
        )
    mapped = {k: tuple(v.shape) for k, v in map_region_state(img.state_dict(), txt.state_dict()).items()}
    assert mapped == {k: tuple(v.shape) for k, v in model.state_dict().items()}
