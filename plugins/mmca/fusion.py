"""MMCA's cross-attention fusion (CVPR 2020, Sec. 3.2).

For each image-caption pair, the region fragments R (k, d) and word fragments X (L, d) are stacked
into Y = [R ; X] and passed through transformer unit(s), so every region attends to every word and
vice versa (and within its own modality). The output is split back; i1 is the mean of the image part,
c1 the 1D-CNN (or mean) of the text part, both L2-normalised; the fused score is <i1, c1>.

``forward`` / ``pair_scores`` compute it the straightforward way, pairs expanded in chunks (the
differentiable training path and the reference). ``prepare_images`` / ``prepare_texts`` /
``score_prepared`` / ``score_prepared_pairs`` are the scoring-engine protocol (``mmzoo.scoring``):
per-image and per-caption work cached once, only pair-dependent work per pair (``engine.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

import mmzoo
from mmzoo_plugins.mmca import engine
from mmzoo_plugins.mmca.cnn import TextCNN
from mmzoo_plugins.mmca.regions import transformer_unit


class CrossAttentionConfig(mmzoo.ComponentConfig):
    layers: int = Field(1, ge=1, le=64, description="Transformer units over the concatenated fragments.")
    heads: int = Field(16, ge=1, le=1024, description="Attention heads; must divide embed_dim (SAEM: 16).")
    ffn_dim: int = Field(2048, gt=0, le=1 << 17, description="Hidden size of the feed-forward layer.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout in attention and feed-forward.")
    text_pool: Literal["cnn", "mean"] = Field("cnn", description="How c1 pools the text part: 1D-CNN or mean.")
    windows: list[Annotated[int, Field(ge=1, le=16)]] = Field(
        [1, 2, 3], min_length=1, max_length=16, description="CNN window sizes when text_pool is 'cnn'."
    )
    channels: int = Field(512, gt=0, le=1 << 16, description="CNN channels per window when text_pool is 'cnn'.")
    block_pairs: int = Field(
        4096,
        gt=0,
        le=1 << 24,
        description="Pairs held at once, by the scoring engine and the training path: the memory bound of a block.",
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_chunk_pairs(cls, data: Any) -> Any:
        """mmzoo 0.1 had a second block size for the training path; configs saved then still load."""
        if isinstance(data, dict) and "chunk_pairs" in data:
            data = {k: v for k, v in data.items() if k != "chunk_pairs"}
        return data


class CrossAttentionFusion(mmzoo.FusionBlock):
    """Joint self-attention over [regions ; words] for every pair -> <i1, c1>."""

    Config = CrossAttentionConfig

    @classmethod
    def test_config(cls) -> dict:
        return {"heads": 4, "ffn_dim": 64, "channels": 8}

    def __init__(self, config: CrossAttentionConfig, context: mmzoo.BuildContext) -> None:
        super().__init__(config, context)
        d = context.embed_dim
        self.units = nn.ModuleList(
            transformer_unit(d, config.heads, config.ffn_dim, config.dropout) for _ in range(config.layers)
        )
        self.cnn = TextCNN(d, d, config.windows, config.channels, 0.0) if config.text_pool == "cnn" else None

    def forward(self, images: mmzoo.Fragments, texts: mmzoo.Fragments) -> Tensor:
        n_img, n_txt = len(images), len(texts)
        img_idx = torch.arange(n_img, device=images.features.device).repeat_interleave(n_txt)
        txt_idx = torch.arange(n_txt, device=texts.features.device).repeat(n_img)
        step = self.pairs_per_block
        scores = [
            self.pair_scores(images, texts, img_idx[s : s + step], txt_idx[s : s + step])
            for s in range(0, n_img * n_txt, step)
        ]
        return torch.cat(scores).view(n_img, n_txt)

    def score_pairs(self, images: mmzoo.Fragments, texts: mmzoo.Fragments) -> Tensor:
        idx = torch.arange(len(images), device=images.features.device)
        return self.pair_scores(images, texts, idx, idx)

    def pair_scores(self, images: mmzoo.Fragments, texts: mmzoo.Fragments, img_idx: Tensor, txt_idx: Tensor) -> Tensor:
        """Fused score of the pairs (images[img_idx[p]], texts[txt_idx[p]]) -> (P,)."""
        regions, words = images.features[img_idx], texts.features[txt_idx]
        r_mask, w_mask = images.mask[img_idx], texts.mask[txt_idx]
        y = torch.cat([regions, words], dim=1)
        mask = torch.cat([r_mask, w_mask], dim=1)
        for unit in self.units:
            y = unit(y, src_key_padding_mask=~mask)
        return self._pool(y, regions.shape[1], r_mask, w_mask)

    def _pool(self, y: Tensor, k: int, r_mask: Tensor, w_mask: Tensor) -> Tensor:
        """<i1, c1> from the joint output (P, k + L, d): mean of the regions, CNN or mean of the words."""
        i1 = mmzoo.l2_normalize(mmzoo.masked_mean(y[:, :k], r_mask))
        text_part = y[:, k:]
        c1 = self.cnn(text_part, w_mask) if self.cnn is not None else mmzoo.masked_mean(text_part, w_mask)
        return (i1 * mmzoo.l2_normalize(c1)).sum(-1)

    # -- the scoring-engine protocol: eval-mode scores (dropout off), per-item work cached ------------
    @property
    def pairs_per_block(self) -> int:
        return self.config.block_pairs

    def prepare_images(self, images: mmzoo.Fragments) -> engine.ModalityCache:
        """Q, K, V of every region and each region's attention over its own image, once per image."""
        return engine.prepare(self.units[0], images)

    def prepare_texts(self, texts: mmzoo.Fragments) -> engine.ModalityCache:
        """Q, K, V of every word and each word's attention over its own caption, once per caption."""
        return engine.prepare(self.units[0], texts)

    def score_prepared(self, images: engine.ModalityCache, texts: engine.ModalityCache) -> Tensor:
        """(n_images, n_texts) fused scores of a block: cross blocks as one product per head."""
        images, texts = images.trimmed(), texts.trimmed()
        regions, words = engine.cross_dense(images, texts)
        n_img, n_txt = len(images), len(texts)
        r_mask = images.mask[:, None].expand(n_img, n_txt, -1)
        w_mask = texts.mask[None].expand(n_img, n_txt, -1)
        r_tokens = images.tokens[:, None].expand(n_img, n_txt, -1, -1)
        w_tokens = texts.tokens[None].expand(n_img, n_txt, -1, -1)
        return self._finish(regions, words, r_tokens, w_tokens, r_mask, w_mask)

    def score_prepared_pairs(
        self, images: engine.ModalityCache, texts: engine.ModalityCache, image_idx: Tensor, text_idx: Tensor
    ) -> Tensor:
        """(P,) fused scores of listed pairs (reranking) with batched per-pair cross blocks."""
        images, texts = images[image_idx].trimmed(), texts[text_idx].trimmed()
        pairs = torch.arange(len(image_idx), device=image_idx.device)
        regions, words = engine.cross_pairs(images, texts, pairs, pairs)
        return self._finish(regions, words, images.tokens, texts.tokens, images.mask, texts.mask)

    def _finish(
        self, regions: Tensor, words: Tensor, r_tokens: Tensor, w_tokens: Tensor, r_mask: Tensor, w_mask: Tensor
    ) -> Tensor:
        """Everything after the attention, on valid tokens only: (*lead, k|L, h, e) -> scores (*lead)."""
        unit, d = self.units[0], r_tokens.shape[-1]
        if bool(r_mask.all()) and bool(w_mask.all()):  # no padding: token-wise work on the dense layout
            y_r = engine.unit_tail(unit, regions.reshape(*regions.shape[:-2], d), r_tokens)
            y_w = engine.unit_tail(unit, words.reshape(*words.shape[:-2], d), w_tokens)
            text_mask = None
        else:  # pack the valid tokens, then put them back in place (zeros at padding)
            y_r = engine.scatter(engine.unit_tail(unit, regions[r_mask].flatten(1), r_tokens[r_mask]), r_mask)
            y_w = engine.scatter(engine.unit_tail(unit, words[w_mask].flatten(1), w_tokens[w_mask]), w_mask)
            text_mask = w_mask
        if len(self.units) > 1:
            lead, k = r_mask.shape[:-1], r_mask.shape[-1]
            y = torch.cat([y_r, y_w], dim=-2).flatten(0, -3)
            mask = torch.cat([r_mask, w_mask], dim=-1).flatten(0, -2)
            for later in self.units[1:]:
                y = later(y, src_key_padding_mask=~mask)
            return self._pool(y, k, mask[:, :k], mask[:, k:]).view(lead).float()
        i1 = y_r.sum(-2) / r_mask.sum(-1, keepdim=True).to(y_r.dtype)
        if self.cnn is not None:
            c1 = engine.fast_cnn(self.cnn, y_w, text_mask)
        else:
            c1 = y_w.sum(-2) / w_mask.sum(-1, keepdim=True).to(y_w.dtype)
        return (mmzoo.l2_normalize(i1.float()) * mmzoo.l2_normalize(c1.float())).sum(-1)
