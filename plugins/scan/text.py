"""SCAN's text side: word embedding + (bi-)GRU, the two directions averaged, L2 norm per word.

``EncoderText`` in SCAN's ``model.py``: ``embed`` (vocabulary x word_dim, initialised U(-0.1, 0.1), no
padding index), ``rnn`` (a GRU of ``num_layers`` to the joint size d, bidirectional with ``--bi_gru``;
the forward and backward outputs of each word are averaged), then every word vector is L2-normalised
unless ``no_txtnorm``. Captions are SCAN's word ids: ``<start>``, the ``nltk.word_tokenize`` tokens of
the lower-cased caption (:mod:`~mmzoo_plugins.common.tokenizer`, NLTK 3.10's rules), ``<end>``. Parameter names are theirs
(``embed.weight``, ``rnn.weight_ih_l0``...). ``pooled`` (the cheap shortlisting score; SCAN itself has no
caption vector) is the L2-normalised mean of the word vectors.

The vocabulary comes from ``fit(captions)`` (SCAN's ``build_vocab``; the trainer calls it), from the
``vocab.json`` beside saved weights, or from SCAN's own vocabulary file via the converter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmzoo.errors import ConfigError
from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, TextEncoder, TokenBatch, l2_normalize, masked_mean
from mmzoo_plugins.common.vocab import Vocabulary
from mmzoo_plugins.scan.regions import l2norm

VOCAB_FILE = "vocab.json"
#: SCAN tokenises with the word rules of NLTK 3.10 (mmzoo_plugins.common.tokenizer).
RULES = "nltk-3.10"


class SCANTextConfig(ComponentConfig):
    word_dim: int = Field(300, gt=0, description="Word embedding size (SCAN's word_dim).")
    layers: int = Field(1, ge=1, description="Stacked GRU layers (SCAN's num_layers).")
    bidirectional: bool = Field(True, description="Bi-GRU with the two directions averaged (SCAN's --bi_gru).")
    no_txtnorm: bool = Field(False, description="Do not L2-normalise the word vectors (SCAN's --no_txtnorm).")
    min_count: int = Field(
        4, ge=1, description="fit(): keep words seen at least this often (SCAN's vocab.py threshold, 4)."
    )
    max_tokens: int | None = Field(
        None, ge=3, description="Cut longer captions to this many ids, <start> and <end> included (SCAN: no cut)."
    )


class SCANText(TextEncoder):
    """Captions -> SCAN word ids -> embedding -> (bi-)GRU -> L2 norm per word -> fragments."""

    Config = SCANTextConfig

    @classmethod
    def test_config(cls) -> dict:
        return {"word_dim": 16, "min_count": 1}

    def __init__(self, config: SCANTextConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        self.vocab: Vocabulary | None = None
        self.embed: nn.Embedding | None = None
        self.rnn = nn.GRU(
            config.word_dim, context.embed_dim, config.layers, batch_first=True, bidirectional=config.bidirectional
        )
        if context.assets is not None:
            self.set_vocabulary(Vocabulary.load(context.assets / VOCAB_FILE))

    def fit(self, captions: Sequence[str]) -> None:
        self.set_vocabulary(Vocabulary.build(captions, self.config.min_count, rules=RULES))

    def set_vocabulary(self, vocab: Vocabulary) -> None:
        """Install a vocabulary and a fresh embedding of its size (U(-0.1, 0.1), as SCAN initialises it)."""
        self.vocab = vocab
        device = next(self.rnn.parameters()).device
        self.embed = nn.Embedding(len(vocab), self.config.word_dim).to(device)
        with torch.no_grad():
            self.embed.weight.uniform_(-0.1, 0.1)

    def _require_vocab(self) -> Vocabulary:
        if self.vocab is None:
            raise ConfigError("The SCAN text encoder has no vocabulary yet: call model.text.fit(train_captions) first.")
        return self.vocab

    def tokenize(self, captions: Sequence[str]) -> TokenBatch:
        vocab = self._require_vocab()
        ids = [vocab.encode(c, RULES) for c in captions]
        if self.config.max_tokens is not None:
            ids = [
                seq if len(seq) <= self.config.max_tokens else seq[: self.config.max_tokens - 1] + seq[-1:]
                for seq in ids
            ]
        length = max(len(seq) for seq in ids)
        batch = torch.full((len(ids), length), vocab.pad_id, dtype=torch.long)
        mask = torch.zeros(len(ids), length, dtype=torch.bool)
        for row, seq in enumerate(ids):
            batch[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = True
        return TokenBatch(batch, mask)

    def forward(self, tokens: TokenBatch) -> Fragments:
        self._require_vocab()
        lengths = tokens.mask.sum(1)
        x = self.embed(tokens.ids)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.ids.shape[1])
        if self.config.bidirectional:
            half = out.shape[-1] // 2
            out = (out[..., :half] + out[..., half:]) / 2
        if not self.config.no_txtnorm:
            out = l2norm(out)
        out = out.masked_fill(~tokens.mask.unsqueeze(-1), 0.0)
        return Fragments(out, tokens.mask, l2_normalize(masked_mean(out, tokens.mask)))

    def save_assets(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._require_vocab().save(directory / VOCAB_FILE)
