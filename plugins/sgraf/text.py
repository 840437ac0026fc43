"""SGRAF's text side: word embedding, dropout, a (bi-)GRU with the two directions averaged, L2 per word.

As ``EncoderText`` of the ``python3.6`` branch: ``embed`` (vocabulary x 300, uniform(-0.1, 0.1) init),
dropout 0.4 on the embedded words, ``cap_rnn`` = GRU(300 -> 1024, 1 layer, bidirectional by default) over
``<start> w1 ... wn <end>``, the forward and backward halves averaged, each word scaled to unit length unless
``no_txtnorm``. The word fragments include the ``<start>`` and ``<end>`` positions, as theirs do: SGRAF's
attention and similarity graph run over all of them. ``pooled`` (the L2-normalised mean of the word
fragments) serves mmzoo's cheap shortlisting score only.

The vocabulary is their JSON (:mod:`mmzoo_plugins.common.vocab`, shared with SCAN): ``fit(captions)`` builds one from training
captions like their ``vocab.py``; ``mmzoo convert sgraf --vocab`` installs theirs; it is saved beside the
weights as ``vocab.json`` in the same format.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmzoo.errors import ConfigError
from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, TextEncoder, TokenBatch, l2_normalize
from mmzoo_plugins.common import tokenizer
from mmzoo_plugins.common.vocab import Vocabulary
from mmzoo_plugins.sgraf.ops import l2norm, masked_average

VOCAB_FILE = "vocab.json"
#: the word rules of NLTK 3.2/3.3, with which SCAN built the vocabularies SGRAF reuses (docs/sgraf.md).
RULES = "nltk-2018"


def word_tokenize(caption: str) -> list[str]:
    """SGRAF's ``nltk.tokenize.word_tokenize(caption.lower())``: the shared tokenizer with the rules of 2018.

    Example:
        >>> word_tokenize("boats on the water.. a sign says 'stop'")
        ['boats', 'on', 'the', 'water..', 'a', 'sign', 'says', "'stop", "'"]
    """
    return tokenizer.word_tokenize(caption, RULES)


class SGRAFTextConfig(ComponentConfig):
    word_dim: int = Field(300, gt=0, description="Word embedding size (their word_dim: 300).")
    layers: int = Field(1, ge=1, description="Stacked GRU layers (their num_layers: 1).")
    bidirectional: bool = Field(True, description="Bi-GRU with the two directions averaged (their bi_gru: True).")
    normalize: bool = Field(True, description="L2-normalise each word embedding (their `not no_txtnorm`).")
    dropout: float = Field(0.4, ge=0.0, lt=1.0, description="Dropout on the embedded words (theirs: 0.4).")
    min_count: int = Field(4, ge=1, description="fit() keeps words seen this often (their vocab.py threshold: 4).")


class SGRAFText(TextEncoder):
    """Captions -> ``<start> words <end>`` ids -> embedding -> (bi-)GRU -> word fragments."""

    Config = SGRAFTextConfig

    def __init__(self, config: SGRAFTextConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        self.vocab: Vocabulary | None = None
        self.embed: nn.Embedding | None = None
        self.dropout = nn.Dropout(config.dropout)
        self.cap_rnn = nn.GRU(
            config.word_dim, context.embed_dim, config.layers, batch_first=True, bidirectional=config.bidirectional
        )
        if context.assets is not None:
            self.set_vocabulary(Vocabulary.load(context.assets / VOCAB_FILE))

    @classmethod
    def test_config(cls) -> dict:
        return {"word_dim": 16, "min_count": 1}

    def fit(self, captions: Sequence[str]) -> None:
        self.set_vocabulary(Vocabulary.build(captions, self.config.min_count, rules=RULES, order="first-seen"))

    def set_vocabulary(self, vocab: Vocabulary) -> None:
        """Install a vocabulary and a freshly initialised embedding with one row per word."""
        self.vocab = vocab
        device = next(self.cap_rnn.parameters()).device
        self.embed = nn.Embedding(len(vocab), self.config.word_dim).to(device)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)

    def _require_vocab(self) -> Vocabulary:
        if self.vocab is None or self.embed is None:
            raise ConfigError(
                "The SGRAF text encoder has no vocabulary yet: call model.text.fit(train_captions), or convert "
                "a checkpoint with its vocabulary (mmzoo convert sgraf CKPT --vocab VOCAB.json)."
            )
        return self.vocab

    def tokenize(self, captions: Sequence[str]) -> TokenBatch:
        vocab = self._require_vocab()
        ids = [vocab.encode(c, RULES) for c in captions]
        batch = torch.zeros(len(ids), max(len(i) for i in ids), dtype=torch.long)
        mask = torch.zeros(batch.shape, dtype=torch.bool)
        for row, seq in enumerate(ids):
            batch[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = True
        return TokenBatch(batch, mask)

    def forward(self, tokens: TokenBatch) -> Fragments:
        self._require_vocab()
        lengths = tokens.mask.sum(1)
        words = self.dropout(self.embed(tokens.ids.masked_fill(~tokens.mask, 0)))
        packed = pack_padded_sequence(words, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.cap_rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.ids.shape[1])
        if self.config.bidirectional:
            half = out.shape[-1] // 2
            out = (out[..., :half] + out[..., half:]) / 2
        if self.config.normalize:
            out = l2norm(out)
        return Fragments(out, tokens.mask, l2_normalize(masked_average(out, tokens.mask)))

    def save_assets(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._require_vocab().save(directory / VOCAB_FILE)
