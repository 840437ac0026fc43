"""SCAN's text side: the tokenizer against NLTK's output, the vocabulary JSON, the GRU encoder."""

from __future__ import annotations

import json

import pytest
import torch

import mmzoo
from mmzoo_plugins.common.tokenizer import sentences, word_tokenize
from mmzoo_plugins.common.vocab import Vocabulary
from mmzoo_plugins.scan.text import SCANText
from tests.reference import scan_reference as ref

#: nltk.word_tokenize(caption.lower()) as printed by NLTK 3.10.4 with Punkt's English model.
NLTK_TOKENS = {
    "A man, in a red shirt, isn't riding his bike. The dog runs!": [
        "a", "man", ",", "in", "a", "red", "shirt", ",", "is", "n't", "riding", "his", "bike", ".", "the", "dog",
        "runs", "!",
    ],
    "Mr. Smith walks his dog on St. Patrick's day.": [
        "mr.", "smith", "walks", "his", "dog", "on", "st.", "patrick", "'s", "day", ".",
    ],
    "Two dogs... playing in the snow": ["two", "dogs", "...", "playing", "in", "the", "snow"],
    'A sign that reads "STOP".': ["a", "sign", "that", "reads", "``", "stop", "''", "."],
    "A woman (wearing a hat) sits on a bench -- alone.": [
        "a", "woman", "(", "wearing", "a", "hat", ")", "sits", "on", "a", "bench", "--", "alone", ".",
    ],
    "A cat; a dog & a bird @ the zoo: 3.5 feet, 1,000 people": [
        "a", "cat", ";", "a", "dog", "&", "a", "bird", "@", "the", "zoo", ":", "3.5", "feet", ",", "1,000", "people",
    ],
    "I cannot believe it's not butter": ["i", "can", "not", "believe", "it", "'s", "not", "butter"],
    "The U.S. flag flies over a building.": ["the", "u.s.", "flag", "flies", "over", "a", "building", "."],
    "a man is gonna throw a frisbee": ["a", "man", "is", "gon", "na", "throw", "a", "frisbee"],
    "people at the 2. floor of a mall": ["people", "at", "the", "2.", "floor", "of", "a", "mall"],
    "A red circle left of a blue square": ["a", "red", "circle", "left", "of", "a", "blue", "square"],
    "\u201cCurly quotes\u201d and \u2018single\u2019 ones": [
        "\u201c", "curly", "quotes", "\u201d", "and", "\u2018", "single", "\u2019", "ones",
    ],
    "What is that? A plane!": ["what", "is", "that", "?", "a", "plane", "!"],
    "a kid's toy car*": ["a", "kid", "'s", "toy", "car", "*"],
}  # fmt: skip


@pytest.mark.parametrize("caption", list(NLTK_TOKENS))
def test_caption_tokenises_as_nltk_does(caption):
    assert word_tokenize(caption) == NLTK_TOKENS[caption]


def test_sentence_breaks_follow_punkt():
    # a break after an ordinary word, none after an abbreviation, an initial before a word, or a number
    assert sentences("a dog runs. a cat sits.") == ["a dog runs.", "a cat sits."]
    assert sentences("mr. smith and dr. who") == ["mr. smith and dr. who"]
    assert sentences("j. walter runs") == ["j. walter runs"]
    assert sentences("at 2. the end") == ["at 2. the end"]
    assert word_tokenize("A dog runs. A cat sits.") == ["a", "dog", "runs", ".", "a", "cat", "sits", "."]


def test_vocabulary_json_round_trips_with_their_serialize_vocab(tmp_path):
    tokenised = [NLTK_TOKENS[c] for c in NLTK_TOKENS]
    theirs = ref.build_vocab(tokenised, threshold=1)
    ref.serialize_vocab(theirs, tmp_path / "theirs.json")
    ours = Vocabulary.load(tmp_path / "theirs.json")
    assert ours.word2idx == theirs.word2idx and len(ours) == len(theirs)
    assert [ours.word2idx[s] for s in ("<pad>", "<start>", "<end>", "<unk>")] == [0, 1, 2, 3]
    ours.save(tmp_path / "ours.json")
    assert json.loads((tmp_path / "ours.json").read_text()) == json.loads((tmp_path / "theirs.json").read_text())
    back = ref.deserialize_vocab(tmp_path / "ours.json")
    assert back.word2idx == theirs.word2idx and back.idx == theirs.idx
    # ids as their PrecompDataset makes them: <start>, tokens (unknown -> <unk>), <end>
    caption = "Mr. Smith walks his zebra."
    expected = [theirs("<start>"), *(theirs(t) for t in word_tokenize(caption)), theirs("<end>")]
    assert ours.encode(caption) == expected and theirs("zebra") == 3


def test_vocabulary_build_keeps_frequent_words_deterministically():
    vocab = Vocabulary.build(["a red circle", "a red square", "a blue circle"], threshold=2)
    assert vocab.words == ["<pad>", "<start>", "<end>", "<unk>", "a", "circle", "red"]
    assert Vocabulary.build(["a b", "b a"], threshold=1).words == Vocabulary.build(["b a", "a b"], threshold=1).words


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"words": []}, "not a SCAN vocabulary"),
        ({"word2idx": {"<pad>": 0, "a": 2}, "idx2word": {"0": "<pad>", "2": "a"}, "idx": 2}, "0..1"),
        ({"word2idx": {"<pad>": 0, "a": 1}, "idx2word": {"0": "<pad>", "1": "b"}, "idx": 2}, "does not mirror"),
        ({"word2idx": {"<pad>": 0, "a": 1}, "idx2word": {"0": "<pad>", "1": "a"}, "idx": 5}, "idx is 5"),
        ({"word2idx": {"<pad>": 0, "a": 1}, "idx2word": {"0": "<pad>", "1": "a"}, "idx": 2}, "special token"),
    ],
)
def test_bad_vocabularies_are_named(data, message):
    with pytest.raises(mmzoo.errors.CheckpointError, match=message):
        Vocabulary.from_json(data)


def test_vocabulary_file_errors(tmp_path):
    with pytest.raises(mmzoo.errors.CheckpointError, match="Cannot read"):
        Vocabulary.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(mmzoo.errors.CheckpointError, match="not valid JSON"):
        Vocabulary.load(tmp_path / "bad.json")


def _encoder(**params) -> SCANText:
    torch.manual_seed(0)
    enc = SCANText(SCANText.Config(word_dim=8, min_count=1, **params), mmzoo.plugin.BuildContext(embed_dim=16))
    enc.fit(list(NLTK_TOKENS))
    return enc.eval()


def test_text_encoder_matches_their_encoder_text():
    enc = _encoder()
    theirs = ref.EncoderText(len(enc.vocab), 8, 16, 1, use_bi_gru=True)
    theirs.load_state_dict(enc.state_dict())
    theirs.eval()
    captions = list(NLTK_TOKENS)[:5]
    ids = [enc.vocab.encode(c) for c in captions]
    cap_embs, cap_lens = ref.encode_captions(theirs, ids, batch_size=2)
    out = enc(enc.tokenize(captions))
    assert out.mask.sum(1).tolist() == cap_lens == [len(i) for i in ids]
    torch.testing.assert_close(
        out.features, torch.from_numpy(cap_embs)[:, : out.features.shape[1]], atol=1e-6, rtol=1e-5
    )
    torch.testing.assert_close(out.features.norm(dim=-1)[out.mask], torch.ones(int(out.mask.sum())))
    torch.testing.assert_close(out.pooled.norm(dim=-1), torch.ones(5))


def test_text_encoder_saves_the_vocabulary_in_their_format(tmp_path):
    enc = _encoder()
    enc.save_assets(tmp_path)
    data = json.loads((tmp_path / "vocab.json").read_text())
    assert set(data) == {"word2idx", "idx2word", "idx"}
    again = SCANText(enc.config, mmzoo.plugin.BuildContext(embed_dim=16, assets=tmp_path))
    assert again.vocab.words == enc.vocab.words and again.embed.num_embeddings == len(enc.vocab)


def test_text_encoder_without_vocabulary_says_what_to_do():
    enc = SCANText(SCANText.Config(), mmzoo.plugin.BuildContext(embed_dim=16))
    with pytest.raises(mmzoo.errors.ConfigError, match="fit"):
        enc.tokenize(["a cat"])


def test_max_tokens_keeps_the_end_token():
    enc = _encoder(max_tokens=4)
    batch = enc.tokenize(["a man in a red shirt"])
    assert batch.ids.shape == (1, 4) and batch.ids[0, -1].item() == enc.vocab.word2idx["<end>"]
