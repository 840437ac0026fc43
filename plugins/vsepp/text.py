"""A word-embedding + (bi-)GRU text encoder with a vocabulary built from the training captions.

The encoder of VSE++ and SCAN: it needs no pretrained language model, so every recipe can train on a
CPU. ``fit(captions)`` builds the vocabulary (the trainer calls it); the vocabulary is saved beside the
weights as ``vocab.json`` and restored by ``from_pretrained``.
"""

from __future__ import annotations

import json
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmzoo.errors import CheckpointError, ConfigError, MMZooWarning
from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, TextEncoder, TokenBatch, l2_normalize

PAD, UNK = "<pad>", "<unk>"
#: scripts written without spaces between words: each character is a token (as BERT's basic tokenizer does).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_WORD = re.compile(f"[{_CJK}]|(?:(?![{_CJK}])[^\\W_])+")
#: share of <unk> tokens in a batch above which the vocabulary clearly does not fit the captions.
UNK_WARNING = 0.5


def words(caption: str) -> list[str]:
    """Unicode words, NFKC-normalised and case-folded ("Straße" -> "strasse", "café" stays whole); letters and
    digits only, and every CJK character a word of its own."""
    return _WORD.findall(unicodedata.normalize("NFKC", caption).casefold())


class GRUTextConfig(ComponentConfig):
    word_dim: int = Field(300, gt=0, le=1 << 16, description="Word embedding size (VSE++/SCAN: 300).")
    layers: int = Field(1, ge=1, le=64, description="Stacked GRU layers.")
    bidirectional: bool = Field(True, description="Run the GRU both ways and average the directions (SCAN).")
    min_count: int = Field(1, ge=1, description="Words seen fewer times in training captions map to <unk>.")
    max_tokens: int = Field(32, ge=1, le=4096, description="Captions are cut to this many words.")


class GRUTextEncoder(TextEncoder):
    """Captions -> word ids -> embedding -> GRU -> (word fragments, c0 = final states)."""

    Config = GRUTextConfig

    @classmethod
    def test_config(cls) -> dict:
        return {"word_dim": 16}

    def __init__(self, config: GRUTextConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        self.vocab: dict[str, int] = {}
        self.embed: nn.Embedding | None = None
        self.gru = nn.GRU(
            config.word_dim, context.embed_dim, config.layers, batch_first=True, bidirectional=config.bidirectional
        )
        if context.assets is not None:
            path = context.assets / "vocab.json"
            try:
                self.set_vocabulary(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                raise CheckpointError(f"Cannot read the GRU vocabulary {path}: {exc}") from None

    def fit(self, captions: Sequence[str]) -> None:
        counts = Counter(w for c in captions for w in words(c))
        kept = sorted(w for w, n in counts.items() if n >= self.config.min_count)
        self.set_vocabulary([PAD, UNK, *kept])

    def set_vocabulary(self, itos: list[str]) -> None:
        """Install a vocabulary (index -> word, starting with <pad>, <unk>) and a fresh embedding."""
        if itos[:2] != [PAD, UNK] or len(set(itos)) != len(itos):
            raise CheckpointError("A GRU vocabulary must start with <pad>, <unk> and hold no duplicates.")
        self.vocab = {w: i for i, w in enumerate(itos)}
        device = next(self.gru.parameters()).device
        self.embed = nn.Embedding(len(itos), self.config.word_dim, padding_idx=0).to(device)

    def tokenize(self, captions: Sequence[str]) -> TokenBatch:
        if self.embed is None:
            raise ConfigError("The GRU text encoder has no vocabulary yet: call model.text.fit(train_captions) first.")
        ids = [[self.vocab.get(w, 1) for w in words(c)[: self.config.max_tokens]] or [1] for c in captions]
        self._check_unknown(ids)
        length = max(len(i) for i in ids)
        batch = torch.zeros(len(ids), length, dtype=torch.long)
        for row, seq in enumerate(ids):
            batch[row, : len(seq)] = torch.tensor(seq)
        return TokenBatch(batch, batch != 0)

    def _check_unknown(self, ids: list[list[int]]) -> None:
        """Warn (once) when most words are unknown: captions in another language or script than the vocabulary's."""
        total = sum(len(i) for i in ids)
        unknown = sum(x == 1 for i in ids for x in i)
        if total >= 20 and unknown > UNK_WARNING * total and not getattr(self, "_warned_unknown", False):
            self._warned_unknown = True
            warnings.warn(
                f"{unknown} of {total} words of these captions are not in the GRU's vocabulary ({len(self.vocab)} "
                "words) and map to <unk>: the captions differ from the training captions (another language, script "
                "or domain), so their embeddings carry little. Fit the vocabulary on captions like them.",
                MMZooWarning,
                stacklevel=4,
            )

    def unknown_words(self, caption: str) -> tuple[list[str], int]:
        """(the words of ``caption`` this vocabulary does not know, its word count): read by
        ``MatchingModel.search`` and ``mmzoo search`` to warn about a query that reads as ``<unk>``."""
        ws = words(caption)[: self.config.max_tokens]
        return [w for w in ws if w not in self.vocab], len(ws)

    def forward(self, tokens: TokenBatch) -> Fragments:
        if self.embed is None:
            raise ConfigError("The GRU text encoder has no vocabulary yet: call model.text.fit(train_captions) first.")
        lengths = tokens.mask.sum(1)
        packed = pack_padded_sequence(self.embed(tokens.ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, last = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.ids.shape[1])
        if self.config.bidirectional:
            d = out.shape[-1] // 2
            out = (out[..., :d] + out[..., d:]) / 2
            final = (last[-1] + last[-2]) / 2
        else:
            final = last[-1]
        return Fragments(out, tokens.mask, l2_normalize(final))

    def save_assets(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        itos = sorted(self.vocab, key=self.vocab.__getitem__)
        (directory / "vocab.json").write_text(json.dumps(itos), encoding="utf-8")
