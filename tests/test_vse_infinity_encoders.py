"""VSE-infinity's encoders: their forward passes, their tokenisation, and their training-only augmentation."""

from __future__ import annotations

import json

import pytest
import torch

import mmzoo
from mmzoo_plugins.vse_infinity.augment import DELETE, KEEP, MASK, REPLACE, word_fates
from mmzoo_plugins.vse_infinity.bert import TINY_BERT, VseBertText
from mmzoo_plugins.vse_infinity.bigru import VseBiGRUText, scan_vocabulary
from mmzoo_plugins.vse_infinity.regions import VseRegions, drop_regions
from tests.conftest import minilm_path
from tests.reference import vse_infinity_reference as ref

D, K = 32, 24


def regions(**params) -> VseRegions:
    torch.manual_seed(0)
    return VseRegions(VseRegions.Config(in_dim=K, **params), mmzoo.plugin.BuildContext(embed_dim=D))


def bert(**params) -> VseBertText:
    torch.manual_seed(0)
    config = VseBertText.Config(bert_config=TINY_BERT, tokenizer=minilm_path(), **params)
    return VseBertText(config, mmzoo.plugin.BuildContext(embed_dim=D))


def bigru(**params) -> VseBiGRUText:
    torch.manual_seed(0)
    return VseBiGRUText(VseBiGRUText.Config(word_dim=16, **params), mmzoo.plugin.BuildContext(embed_dim=D))


# -- regions ------------------------------------------------------------------------------------------------
def test_region_encoder_is_their_encoder_in_eval_mode():
    ours = regions().eval()
    theirs = ref.EncoderImageAggr(K, D)
    state = {k: v for k, v in ref.randomize_batchnorm(theirs).state_dict().items() if not k.startswith("mlp.bns.1.")}
    ours.load_state_dict(state)
    theirs.eval()
    x = torch.randn(3, 7, K)
    lengths = torch.tensor([7, 4, 1])
    mask = torch.arange(7)[None] < lengths[:, None]
    x = x.masked_fill(~mask[..., None], 0)
    torch.testing.assert_close(ours(x, mask).pooled, theirs(x, lengths), atol=1e-6, rtol=1e-5)
    assert ours.mlp.layers[0].out_features == D // 2


def test_a_mask_with_holes_is_the_same_as_dropping_the_rows():
    enc = regions().eval()
    x = torch.randn(2, 6, K)
    mask = torch.tensor([[1, 0, 1, 1, 0, 1], [0, 1, 1, 0, 0, 0]], dtype=torch.bool)
    out = enc(x, mask)
    for row in range(2):
        kept = x[row, mask[row]][None]
        alone = enc(kept, torch.ones(kept.shape[:2], dtype=torch.bool))
        torch.testing.assert_close(alone.pooled[0], out.pooled[row], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(alone.features[0], out.features[row, mask[row]], atol=1e-6, rtol=1e-5)


def test_region_dropout_in_training_only():
    torch.manual_seed(5)
    mask = torch.ones(300, 36, dtype=torch.bool)
    mask[0, 1:] = False  # an image with one region keeps it
    kept = drop_regions(mask, 0.2)
    assert bool(kept[0, 0]) and int(kept.any(1).sum()) == 300
    assert 0.78 < kept[1:].float().mean().item() < 0.82
    assert not bool((kept & ~mask).any())
    enc = regions()
    x = torch.randn(4, 36, K)
    full = torch.ones(4, 36, dtype=torch.bool)
    assert enc.train()(x, full).mask.sum() < 4 * 36
    assert enc.eval()(x, full).mask.all()
    assert regions(drop_prob=0.0).train()(x, full).mask.all()


def test_training_batchnorm_ignores_padding():
    enc = regions(drop_prob=0.0).train()
    x = torch.randn(3, 5, K)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[2, 2:] = False
    a = enc(x, mask).pooled
    b = enc(torch.where(mask[..., None], x, torch.randn_like(x) * 50), mask).pooled
    torch.testing.assert_close(a, b)


# -- BERT -----------------------------------------------------------------------------------------------------
TRICKY = [
    "A Man riding a horse, naïve café!",
    "Hello-world: 3.5km's (really) 東京",
    "two dogs " * 40,  # 80 words: cut only at the tiny BERT's 64 positions
    "unbelievably supercalifragilistic",
]


def test_bert_eval_tokens_are_theirs():
    enc = bert().eval()
    slow = ref.slow_bert_tokenizer(minilm_path())
    batch = enc.tokenize(TRICKY)
    for row, caption in enumerate(TRICKY):
        ids = ref.bert_eval_ids(slow, caption)
        if len(ids) > 64:
            ids = [*ids[:63], slow.sep_token_id]
        n = int(batch.mask[row].sum())
        assert batch.ids[row, :n].tolist() == ids
    out = enc(batch)
    assert out.pooled.shape == (4, D) and torch.equal(out.mask, batch.mask)


def test_word_fates_have_their_probabilities():
    torch.manual_seed(0)
    fates = torch.tensor(word_fates(40000, 0.2))
    share = {f: (fates == f).float().mean().item() for f in (KEEP, MASK, REPLACE, DELETE)}
    assert abs(share[KEEP] - 0.8) < 0.01 and abs(share[MASK] - 0.1) < 0.006
    assert abs(share[REPLACE] - 0.02) < 0.003 and abs(share[DELETE] - 0.08) < 0.006


def test_bert_augmentation_masks_whole_words_in_training_only():
    enc = bert()
    captions = ["unbelievably supercalifragilistic words everywhere"] * 200
    eval_ids = enc.eval().tokenize(captions)
    assert torch.equal(enc.eval().tokenize(captions).ids, eval_ids.ids)
    torch.manual_seed(1)
    train_ids = enc.train().tokenize(captions)
    assert not torch.equal(train_ids.ids, eval_ids.ids)
    mask_id = enc.tokenizer.mask_token_id
    pieces = enc.word_pieces(captions[:1])[0]
    long_word = next(p for p in pieces if len(p) > 1)
    masked_runs = 0
    for row in range(200):
        ids = train_ids.ids[row, : int(train_ids.mask[row].sum())].tolist()
        assert ids[0] == enc.tokenizer.cls_token_id and ids[-1] == enc.tokenizer.sep_token_id
        masked_runs += ids[1 : 1 + len(long_word)] == [mask_id] * len(long_word)
    assert masked_runs > 5  # every piece of a masked word is masked
    assert enc.train().tokenize(["x"]).ids.shape[1] >= 2


# -- bi-GRU ---------------------------------------------------------------------------------------------------
def test_bigru_fit_builds_scans_vocabulary_and_their_ids():
    enc = bigru(min_count=2)
    enc.fit(["A dog runs.", "a dog sits.", "the cat"])
    assert list(enc.vocab)[:4] == ["<pad>", "<start>", "<end>", "<unk>"]
    assert enc.vocab["<mask>"] == len(enc.vocab) - 1 and "dog" in enc.vocab and "cat" not in enc.vocab
    batch = enc.eval().tokenize(["A dog barks.", "cat"])
    v = enc.vocab
    assert batch.ids[0, :6].tolist() == [v["<start>"], v["a"], v["dog"], v["<unk>"], v["."], v["<end>"]]
    assert batch.ids[1, :3].tolist() == [v["<start>"], v["<unk>"], v["<end>"]] and int(batch.mask[1].sum()) == 3
    word2idx = dict(v)
    assert ref.bigru_eval_ids(word2idx, "A dog barks.") == batch.ids[0, :6].tolist()


def test_bigru_is_their_encoder():
    vocab = {w: i for i, w in enumerate(["<pad>", "<start>", "<end>", "<unk>", "a", "dog", "cat", "<mask>"])}
    enc = bigru()
    enc.set_vocabulary(vocab)
    theirs = ref.EncoderTextGRU(len(vocab), D, 16, 1)
    ours_state = {f"{k}": v for k, v in theirs.state_dict().items()}
    enc.load_state_dict(ours_state)
    enc.eval()
    captions = ["a dog", "a cat a dog a cat", "dog"]
    out = enc(enc.tokenize(captions))
    torch.testing.assert_close(
        out.pooled, ref.encode_gru_captions(theirs.eval(), vocab, captions), atol=1e-6, rtol=1e-5
    )


def test_bigru_augmentation_never_empties_a_caption():
    enc = bigru(min_count=1, word_drop_prob=0.9)
    enc.fit(["a dog"])
    torch.manual_seed(0)
    batch = enc.train().tokenize(["a dog"] * 300)
    assert bool(batch.mask.any(1).all())
    assert (batch.ids == enc.vocab["<mask>"]).any()  # <start> and <end> are augmented too
    assert torch.equal(enc.eval().tokenize(["a dog"]).ids[0], torch.tensor([1, 4, 5, 2]))


def test_scan_vocabulary_checks():
    words = {"<pad>": 0, "<start>": 1, "<end>": 2, "<unk>": 3, "dog": 4}
    assert scan_vocabulary({"word2idx": words}, "x")["<mask>"] == 5
    with pytest.raises(mmzoo.errors.CheckpointError, match="not a SCAN vocabulary"):
        scan_vocabulary(["<pad>"], "x")
    with pytest.raises(mmzoo.errors.CheckpointError, match=r"0 \.\. 4"):
        scan_vocabulary({"word2idx": {**words, "dog": 9}}, "x")
    with pytest.raises(mmzoo.errors.CheckpointError, match="lacks <start>"):
        scan_vocabulary({"word2idx": {"<pad>": 0, "<end>": 1, "<unk>": 2}}, "x")


def test_bigru_model_saves_its_vocabulary(tmp_path):
    torch.manual_seed(0)
    model = mmzoo.create_model(
        "vse-infinity-bigru", **{"embed_dim": D, "visual.in_dim": K, "text.word_dim": 16, "text.min_count": 1}
    )
    model.text.fit(["a red circle", "a blue square"])
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "text" / "vocab.json").read_text())
    assert set(saved) == {"word2idx", "idx2word", "idx"} and saved["word2idx"] == model.text.vocab
    loaded = mmzoo.from_pretrained(f"local-dir:{tmp_path / 'm'}")
    x = torch.randn(2, 4, K)
    model.eval()
    with torch.no_grad():
        a = model.similarity(model.encode_images(x), model.encode_texts(["a red circle", "a blue square"]))
        b = loaded.similarity(loaded.encode_images(x), loaded.encode_texts(["a red circle", "a blue square"]))
    torch.testing.assert_close(a, b)
