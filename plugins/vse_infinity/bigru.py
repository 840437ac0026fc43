"""VSE-infinity's bi-GRU text encoder (their ``EncoderText`` on the ``bigru`` branch), with SCAN's vocabulary.

Captions -> lower-cased NLTK word tokens, framed as ``<start> ... <end>`` -> word embedding (300) ->
bi-GRU (hidden d per direction, the two directions averaged) -> the word fragments -> GPO -> L2-normalised c0.

The vocabulary is SCAN's (``coco_precomp_vocab.json`` / ``f30k_precomp_vocab.json``: ``word2idx`` with
``<pad>`` 0, ``<start>`` 1, ``<end>`` 2, ``<unk>`` 3) with ``<mask>`` appended, as their ``train.py`` does:
the embedding has ``len(vocab) + 1`` rows. ``fit(captions)`` builds one the way SCAN's ``vocab.py`` does
(NLTK tokens of the lower-cased captions, words seen at least ``min_count`` = 4 times). It is saved as
``vocab.json`` in SCAN's format beside the weights.

Word tokens are theirs, ``nltk.word_tokenize(caption.lower())`` (Punkt sentences, then the Treebank word
rules), computed without NLTK by the shared SCAN-style tokenizer (``mmzoo_plugins.common.tokenizer``, tested in tests/test_scan_text.py
against NLTK's recorded outputs): both codebases tokenise with the same call for the same vocabularies.
In training each token, ``<start>`` and ``<end>`` included, is masked, replaced or deleted with probability 0.2
(:mod:`mmzoo_plugins.vse_infinity.augment`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmzoo.errors import ConfigError
from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, TextEncoder, TokenBatch, l2_normalize
from mmzoo_plugins.common.tokenizer import word_tokenize
from mmzoo_plugins.common.vocab import END, START, UNK, Vocabulary
from mmzoo_plugins.vse_infinity.augment import augment_words
from mmzoo_plugins.vse_infinity.gpo import GPO

logger = logging.getLogger(__name__)

MASK = "<mask>"
VOCAB_NAME = "vocab.json"
#: SCAN's tokenizer rules (their bigru branch builds on SCAN's vocabularies and data code).
RULES = "nltk-3.10"


def word_tokens(caption: str) -> list[str]:
    """``nltk.word_tokenize(caption.lower())``, their (and SCAN's) tokeniser."""
    return word_tokenize(caption, RULES)


def scan_vocabulary(data: Any, source: str) -> dict[str, int]:
    """Validate SCAN's vocabulary JSON (``{"word2idx": ..., "idx2word": ..., "idx": n}``) -> word2idx with <mask>.

    Raises:
        CheckpointError: not SCAN's format, indices not 0..n-1, or a special token missing.
    """
    # their train.py / evaluation.py: vocab.add_word('<mask>')
    return Vocabulary.from_json(data, source).with_word(MASK).word2idx


def read_scan_vocabulary(path: str | Path) -> dict[str, int]:
    """Read and validate a SCAN vocabulary file (see :func:`scan_vocabulary`)."""
    return Vocabulary.load(path).with_word(MASK).word2idx


class VseBiGRUConfig(ComponentConfig):
    word_dim: int = Field(300, gt=0, description="Word embedding size (theirs: 300).")
    layers: int = Field(1, ge=1, description="Stacked GRU layers (their --num_layers, 1).")
    min_count: int = Field(4, ge=1, description="fit(): keep words seen at least this often (SCAN's threshold 4).")
    word_drop_prob: float = Field(
        0.2, ge=0.0, lt=1.0, description="Training only: mask / replace / delete each token with this probability."
    )
    pe_dim: int = Field(32, gt=0, description="GPO position-encoding size (theirs: 32); must be even.")
    gpo_hidden: int = Field(32, gt=0, description="GPO bi-GRU hidden size (theirs: 32).")


class VseBiGRUText(TextEncoder):
    """Captions -> SCAN vocabulary ids -> embedding -> bi-GRU (directions averaged) -> GPO -> c0."""

    Config = VseBiGRUConfig

    @classmethod
    def test_config(cls) -> dict:
        return {"word_dim": 16, "min_count": 1, "pe_dim": 8, "gpo_hidden": 8}

    def __init__(self, config: VseBiGRUConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        if config.pe_dim % 2:
            raise ConfigError(f"text.pe_dim must be even (sin/cos pairs); got {config.pe_dim}.")
        self.vocab: dict[str, int] = {}
        self.embed: nn.Embedding | None = None
        self.rnn = nn.GRU(config.word_dim, context.embed_dim, config.layers, batch_first=True, bidirectional=True)
        self.gpool = GPO(config.pe_dim, config.gpo_hidden)
        if context.assets is not None:
            self.set_vocabulary(read_scan_vocabulary(context.assets / VOCAB_NAME))

    def fit(self, captions: Sequence[str]) -> None:
        vocab = Vocabulary.build(captions, self.config.min_count, rules=RULES, order="first-seen")
        self.set_vocabulary(vocab.with_word(MASK).word2idx)

    def set_vocabulary(self, word2idx: Mapping[str, int]) -> None:
        """Install a vocabulary (word -> id, SCAN's specials and <mask> included) and a fresh embedding."""
        vocab = scan_vocabulary({"word2idx": dict(word2idx)}, "the vocabulary")
        self.vocab = vocab
        device = next(self.rnn.parameters()).device
        self.embed = nn.Embedding(len(vocab), self.config.word_dim).to(device)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)  # their init_weights

    def _require_vocabulary(self) -> nn.Embedding:
        if self.embed is None:
            raise ConfigError("The bi-GRU text encoder has no vocabulary yet: call model.text.fit(train_captions).")
        return self.embed

    def tokenize(self, captions: Sequence[str]) -> TokenBatch:
        self._require_vocabulary()
        unk = self.vocab[UNK]
        rows = []
        for caption in captions:
            ids = [self.vocab[START], *(self.vocab.get(w, unk) for w in word_tokens(caption)), self.vocab[END]]
            if self.training and self.config.word_drop_prob > 0:
                ids = augment_words(
                    [[i] for i in ids], self.config.word_drop_prob, self.vocab[MASK], len(self.vocab), allow_empty=False
                )
            rows.append(ids)
        length = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = True
        return TokenBatch(ids, mask)

    def forward(self, tokens: TokenBatch) -> Fragments:
        embed = self._require_vocabulary()
        lengths = tokens.mask.sum(1)
        packed = pack_padded_sequence(embed(tokens.ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=tokens.ids.shape[1])
        half = out.shape[-1] // 2
        words = (out[..., :half] + out[..., half:]) / 2
        return Fragments(words, tokens.mask, l2_normalize(self.gpool(words, tokens.mask)))

    def save_assets(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        Vocabulary(sorted(self.vocab, key=self.vocab.__getitem__)).save(directory / VOCAB_NAME)
