"""MMCA's cross-attention fusion (CVPR 2020, Sec. 3.2).

For each image-caption pair, the region fragments R (k, d) and word fragments X (L, d) are stacked
into Y = [R ; X] and passed through transformer unit(s), so every region attends to every word and
vice versa (and within its own modality). The output is split back; i1 is the mean of the image part,
c1 the 1D-CNN (or mean) of the text part, both L2-normalised; the fused score is <i1, c1>.

Every path goes through the cached decomposition of ``engine.py``: per-image and per-caption work (Q, K,
V and the attention within each modality) once, only the pair-dependent part per pair. ``forward`` and
``score_pairs`` are the differentiable training path (dropout in training mode); ``prepare_images`` /
``prepare_texts`` / ``score_prepared`` / ``score_prepared_pairs`` are the scoring-engine protocol
(``mmzoo.scoring``); ``score_pairs_indexed`` scores listed pairs of a batch with each item prepared once
(the hard-negative training path). ``pair_scores`` and ``reference_forward`` compute it the
straightforward way, pairs expanded into joint sequences: the reference the tests compare against.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, FusionBlock, l2_normalize, masked_mean
from mmzoo_plugins.mmca import engine
from mmzoo_plugins.mmca.cnn import TextCNN
from mmzoo_plugins.mmca.regions import transformer_unit


class CrossAttentionConfig(ComponentConfig):
    layers: int = Field(1, ge=1, le=64, description="Transformer units over the concatenated fragments.")
    heads: int = Field(16, ge=1, le=1024, description="Attention heads; must divide embed_dim (SAEM: 16).")
    ffn_dim: int = Field(2048, gt=0, le=1 << 17, description="Hidden size of the feed-forward layer.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout in attention and feed-forward.")
    text_pool: Literal["cnn", "mean"] = Field("cnn", description="How c1 pools the text part: 1D-CNN or mean.")
    windows: list[Annotated[int, Field(ge=1, le=16)]] = Field(
        [1, 2, 3], min_length=1, max_length=16, description="CNN window sizes when text_pool is 'cnn'."
    )
    channels: int = Field(512, gt=0, le=1 << 16, description="CNN channels per window when text_pool is 'cnn'.")
    pairs_per_block: int = Field(
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


class CrossAttentionFusion(FusionBlock):
    """Joint self-attention over [regions ; words] for every pair -> <i1, c1>."""

    Config = CrossAttentionConfig

    @classmethod
    def test_config(cls) -> dict:
        return {"heads": 4, "ffn_dim": 64, "channels": 8}

    def __init__(self, config: CrossAttentionConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        d = context.embed_dim
        self.units = nn.ModuleList(
            transformer_unit(d, config.heads, config.ffn_dim, config.dropout) for _ in range(config.layers)
        )
        self.cnn = TextCNN(d, d, config.windows, config.channels, 0.0) if config.text_pool == "cnn" else None
        #: how the engine computes (not saved: hardware-dependent); see :meth:`configure_engine`
        self.engine_options = engine.EngineOptions()
        self._compiled: Any = None

    def configure_engine(self, **options: Any) -> CrossAttentionFusion:
        """Set :class:`~mmzoo_plugins.mmca.engine.EngineOptions` (attention, tile_tokens, compile, compile_mode).

        Example:
            >>> model.fusion.configure_engine(attention="sdpa", compile=True)  # doctest: +SKIP
        """
        self.engine_options = replace(self.engine_options, **options)
        self._compiled = None
        return self

    # -- the differentiable path (training) -----------------------------------------------------------
    def forward(self, images: Fragments, texts: Fragments) -> Tensor:
        """(N_images, N_texts) fused scores: each item prepared once, pairs in tiles of ``pairs_per_block``."""
        if len(images) == 0 or len(texts) == 0:
            return images.features.new_zeros(len(images), len(texts), dtype=torch.float32)
        if self.engine_options.path == "reference":
            return self.reference_forward(images, texts)
        if not self.training and not torch.is_grad_enabled():
            return self._score_in_blocks(self.prepare_images(images), self.prepare_texts(texts))
        dropout = self._attention_dropout()
        img = engine.prepare(self.units[0], images, dropout)
        txt = engine.prepare(self.units[0], texts, dropout)
        rows, cols = engine.tile_shape(len(img), len(txt), self._tile_pairs(img, txt))
        return torch.cat(
            [
                torch.cat([self._score_tile(img[r], txt[c], dense=True) for c in _spans(len(txt), cols)], 1)
                for r in _spans(len(img), rows)
            ]
        )

    def score_pairs(self, images: Fragments, texts: Fragments) -> Tensor:
        idx = torch.arange(len(images), device=images.features.device)
        return self.score_pairs_indexed(images, texts, idx, idx)

    def score_pairs_indexed(self, images: Fragments, texts: Fragments, image_idx: Tensor, text_idx: Tensor) -> Tensor:
        """(P,) differentiable fused scores of the pairs (images[image_idx[p]], texts[text_idx[p]]).

        Each image and caption is prepared once however many pairs it is in (hard-negative training).
        """
        if self.engine_options.path == "reference":
            return self.pair_scores(images, texts, image_idx, text_idx)
        dropout = self._attention_dropout()
        img = engine.prepare(self.units[0], images, dropout)
        txt = engine.prepare(self.units[0], texts, dropout)
        return self.score_prepared_pairs(img, txt, image_idx, text_idx)

    def _score_in_blocks(self, images: engine.ModalityCache, texts: engine.ModalityCache) -> Tensor:
        """:meth:`score_prepared` over blocks of at most ``pairs_per_block`` pairs: the memory bound the config
        promises, also for a direct ``fusion(images, texts)`` call outside the scoring engine."""
        rows, cols = engine.tile_shape(len(images), len(texts), self.pairs_per_block)
        out = torch.empty(len(images), len(texts), dtype=torch.float32, device=images.device)
        for r in _spans(len(images), rows):
            for c in _spans(len(texts), cols):
                out[r, c] = self.score_prepared(images[r], texts[c])
        return out

    def _attention_dropout(self) -> float:
        return float(self.units[0].self_attn.dropout) if self.training else 0.0

    # -- the reference: the straightforward joint unit ------------------------------------------------
    def reference_forward(self, images: Fragments, texts: Fragments) -> Tensor:
        """(N_images, N_texts) by :meth:`pair_scores` over every expanded pair (what the engine must equal)."""
        n_img, n_txt = len(images), len(texts)
        if n_img == 0 or n_txt == 0:
            return images.features.new_zeros(n_img, n_txt)
        img_idx = torch.arange(n_img, device=images.features.device).repeat_interleave(n_txt)
        txt_idx = torch.arange(n_txt, device=texts.features.device).repeat(n_img)
        step = self.pairs_per_block
        scores = [
            self.pair_scores(images, texts, img_idx[s : s + step], txt_idx[s : s + step])
            for s in range(0, n_img * n_txt, step)
        ]
        return torch.cat(scores).view(n_img, n_txt)

    def pair_scores(self, images: Fragments, texts: Fragments, img_idx: Tensor, txt_idx: Tensor) -> Tensor:
        """Fused score of the pairs (images[img_idx[p]], texts[txt_idx[p]]) -> (P,), the straightforward way."""
        regions, words = images.features[img_idx], texts.features[txt_idx]
        r_mask, w_mask = images.mask[img_idx], texts.mask[txt_idx]
        y = torch.cat([regions, words], dim=1)
        mask = torch.cat([r_mask, w_mask], dim=1)
        for unit in self.units:
            y = unit(y, src_key_padding_mask=~mask)
        return self._pool(y, regions.shape[1], r_mask, w_mask)

    def _pool(self, y: Tensor, k: int, r_mask: Tensor, w_mask: Tensor) -> Tensor:
        """<i1, c1> from the joint output (P, k + L, d): mean of the regions, CNN or mean of the words."""
        i1 = l2_normalize(masked_mean(y[:, :k], r_mask))
        text_part = y[:, k:]
        c1 = self.cnn(text_part, w_mask) if self.cnn is not None else masked_mean(text_part, w_mask)
        return (i1 * l2_normalize(c1)).sum(-1)

    # -- the scoring-engine protocol -----------------------------------------------------------------
    @property
    def pairs_per_block(self) -> int:
        return self.config.pairs_per_block

    def prepare_images(self, images: Fragments) -> engine.ModalityCache:
        """Q, K, V of every region and each region's attention over its own image, once per image."""
        return engine.prepare(self.units[0], images, self._attention_dropout())

    def prepare_texts(self, texts: Fragments) -> engine.ModalityCache:
        """Q, K, V of every word and each word's attention over its own caption, once per caption."""
        return engine.prepare(self.units[0], texts, self._attention_dropout())

    def score_prepared(self, images: engine.ModalityCache, texts: engine.ModalityCache) -> Tensor:
        """(n_images, n_texts) fused scores of a block: cross blocks as one product per head, in tiles."""
        options, static = self.engine_options, self.engine_options.compile
        if not static:
            images, texts = images.trimmed(), texts.trimmed()
        n_img, n_txt = len(images), len(texts)
        tile_tokens = options.resolved_tile_tokens(images.device)
        pairs = self.pairs_per_block if tile_tokens is None else tile_tokens // (images.length + texts.length)
        pairs = max(1, min(pairs, self.pairs_per_block))
        rows, cols = engine.tile_shape(pairs, pairs, pairs) if static else engine.tile_shape(n_img, n_txt, pairs)
        weights = self._inference_weights()
        slab = max(1, pairs // n_txt)
        if (
            weights is not None
            and not static  # compile=True tiles every block through the compiled static-shape unit
            and len(self.units) == 1
            and n_txt * (images.length + texts.length) <= 2 * pairs * (images.length + texts.length)
            and self.engine_options.resolved_attention(images.device) == "merge"
        ):
            return self._score_block_fast(images, texts, slab, weights)
        out = torch.empty(n_img, n_txt, dtype=torch.float32, device=images.device)
        for r in _spans(n_img, rows):
            img = images[r] if static else images[r].trimmed()
            for c in _spans(n_txt, cols):
                txt = texts[c] if static else texts[c].trimmed()
                if static:
                    n_r, n_c = len(img), len(txt)
                    out[r, c] = self._static_tile(img.padded_rows(rows), txt.padded_rows(cols), True)[:n_r, :n_c]
                else:
                    out[r, c] = self._score_tile(img, txt, dense=True, weights=weights)
        return out

    def _score_block_fast(
        self, images: engine.ModalityCache, texts: engine.ModalityCache, rows: int, weights: engine.InferenceWeights
    ) -> Tensor:
        """Float32 inference of a dense block: both attention directions for the whole block at once (a few large
        products and passes instead of many small ones per tile), then the token-wise work in slabs of ``rows``
        images x all captions, each small enough for the cache and contiguous in the block's buffers."""
        unit, d = self.units[0], images.tokens.shape[-1]
        n_img, n_txt, k, length = len(images), len(texts), images.length, texts.length
        e = d // unit.self_attn.num_heads
        regions = torch.empty(n_img, n_txt, k, d, dtype=images.q.dtype, device=images.device)
        words = torch.empty(n_img, n_txt, length, d, dtype=images.q.dtype, device=images.device)
        engine.attend_dense(images, texts, out=regions.view(n_img, n_txt, k, -1, e))
        engine.attend_dense(texts, images, out=words.view(n_img, n_txt, length, -1, e).transpose(0, 1))
        r_res, w_res = images.tokens + weights.out_bias, texts.tokens + weights.out_bias
        r_padded, w_padded = not bool(images.mask.all()), not bool(texts.mask.all())
        out = torch.empty(n_img, n_txt, dtype=torch.float32, device=images.device)
        for r in _spans(n_img, rows):
            n = r.stop - r.start
            # the residuals, materialised into fresh buffers (the tail overwrites them)
            z_r = torch.empty_like(regions[r]).copy_(r_res[r, None].expand(n, n_txt, k, d))
            z_w = torch.empty_like(words[r]).copy_(w_res[None].expand(n, n_txt, length, d))
            y_r = engine.tail_inplace(unit, regions[r].view(-1, d), z_r.view(-1, d), weights)
            y_w = engine.tail_inplace(unit, words[r].view(-1, d), z_w.view(-1, d), weights)
            r_mask = images.mask[r, None].expand(n, n_txt, k)
            w_mask = texts.mask[None].expand(n, n_txt, length)
            out[r] = self._pool_tokens(
                y_r.view(n, n_txt, k, d),
                y_w.view(n, n_txt, length, d),
                r_mask,
                w_mask,
                r_padded,
                w_padded,
                False,
                weights.taps,
            )
        return out

    def score_prepared_pairs(
        self, images: engine.ModalityCache, texts: engine.ModalityCache, image_idx: Tensor, text_idx: Tensor
    ) -> Tensor:
        """(P,) fused scores of listed pairs: sorted by length, gathered tile by tile, batched per-pair products."""
        static = self.engine_options.compile
        step = self._tile_pairs(images, texts)
        weights = self._inference_weights()
        if len(image_idx) == 0:
            return torch.zeros(0, device=images.device)
        if len(image_idx) <= step and not static:  # one tile (e.g. a training batch's candidates): no sorting
            img, txt = images[image_idx].trimmed(), texts[text_idx].trimmed()
            return self._score_tile(img, txt, dense=False, weights=weights)
        order = torch.argsort(
            texts.mask.sum(1)[text_idx] * (images.length + 1) + images.mask.sum(1)[image_idx], stable=True
        )
        parts = []
        for s in _spans(len(order), step):
            img, txt = images[image_idx[order[s]]], texts[text_idx[order[s]]]  # one gather per tile
            if static:
                parts.append(self._static_tile(img.padded_rows(step), txt.padded_rows(step), False)[: len(img)])
            else:
                parts.append(self._score_tile(img.trimmed(), txt.trimmed(), dense=False, weights=weights))
        scores = torch.cat(parts) if parts else torch.zeros(0, device=images.device)
        return scores[torch.argsort(order)]  # back to the listed order (a gather: differentiable)

    def _tile_pairs(self, images: engine.ModalityCache, texts: engine.ModalityCache) -> int:
        """Pairs per tile: at most ``pairs_per_block``; in float32 inference on the CPU, :data:`engine.CPU_TILE_TOKENS`
        tokens (with gradients, one tile per block measured faster: the backward pass is not cache-resident anyway)."""
        tile_tokens = self.engine_options.resolved_tile_tokens(images.device)
        if tile_tokens is None or not self._fast():
            return self.pairs_per_block
        return max(1, min(self.pairs_per_block, tile_tokens // (images.length + texts.length)))

    def _fast(self) -> bool:
        """The in-place float32 inference path applies: no gradients, no autocast, no dropout (eval mode)."""
        return engine.fast_path() and not self.training

    # -- one tile ------------------------------------------------------------------------------------
    def _static_tile(self, images: engine.ModalityCache, texts: engine.ModalityCache, dense: bool) -> Tensor:
        """A tile of fixed shape through ``torch.compile`` (compiled once, on first use)."""
        if self._compiled is None:
            self._compiled = torch.compile(
                self._score_tile, dynamic=False, mode=self.engine_options.compile_mode, fullgraph=False
            )
        return self._compiled(images, texts, dense, True)

    def _inference_weights(self) -> engine.InferenceWeights | None:
        """Weights the in-place inference path derives once per block (None off that path)."""
        return engine.inference_weights(self.units[0], self.cnn) if self._fast() else None

    def _score_tile(
        self,
        img: engine.ModalityCache,
        txt: engine.ModalityCache,
        dense: bool,
        static: bool = False,
        weights: engine.InferenceWeights | None = None,
    ) -> Tensor:
        """Fused scores of a tile: all pairs (dense: (n_img, n_txt)) or aligned pairs (P,)."""
        unit = self.units[0]
        k, length, d = img.length, txt.length, img.tokens.shape[-1]
        lead = (len(img), len(txt)) if dense else (len(img),)
        n_pairs = len(img) * len(txt) if dense else len(img)
        n_r = n_pairs * k
        dropout = self._attention_dropout()
        sdpa = self.engine_options.resolved_attention(img.device) == "sdpa"
        attend = engine.attend_dense if dense else engine.attend_pairs
        r_mask = img.mask[:, None].expand(*lead, k) if dense else img.mask
        w_mask = txt.mask[None].expand(*lead, length) if dense else txt.mask
        if self._fast() and not static:
            weights = weights if weights is not None else engine.inference_weights(unit, self.cnn)
            bias = weights.out_bias
            buf = torch.empty(n_pairs * (k + length), d, dtype=img.q.dtype, device=img.device)
            e = d // unit.self_attn.num_heads
            r_view, w_view = buf[:n_r].view(*lead, k, -1, e), buf[n_r:].view(*lead, length, -1, e)
            w_out = w_view.transpose(0, 1) if dense else w_view  # word queries lead: (n_txt, n_img, L, h, e)
            if sdpa:
                r_view.copy_(engine.attend_sdpa(img, txt, dense))
                w_out.copy_(engine.attend_sdpa(txt, img, dense))
            else:
                attend(img, txt, out=r_view)
                attend(txt, img, out=w_out)
            z = torch.empty_like(buf)
            z[:n_r].view(*lead, k, d).copy_((img.tokens + bias)[:, None] if dense else img.tokens + bias)
            z[n_r:].view(*lead, length, d).copy_((txt.tokens + bias)[None] if dense else txt.tokens + bias)
            y = engine.tail_inplace(unit, buf, z, weights)
        else:
            if sdpa:
                regions = engine.attend_sdpa(img, txt, dense, dropout, static)
                words = engine.attend_sdpa(txt, img, dense, dropout, static)
            else:
                regions = attend(img, txt, dropout=dropout, static=static)
                words = attend(txt, img, dropout=dropout, static=static)
            words = words.transpose(0, 1) if dense else words
            y_r = self._token_work(regions, img.tokens, r_mask, "regions" if dense else None, static)
            y_w = self._token_work(words, txt.tokens, w_mask, "words" if dense else None, static)
            zeroed = not static
            return self._finish(y_r, y_w, img, txt, r_mask, w_mask, lead, static, zeroed, None)
        y_r, y_w = (part.view(*lead, -1, d) for part in y.split([n_r, len(y) - n_r]))
        return self._finish(y_r, y_w, img, txt, r_mask, w_mask, lead, static, False, weights.taps)

    def _token_work(self, attended: Tensor, tokens: Tensor, mask: Tensor, side: str | None, static: bool) -> Tensor:
        """The unit's token-wise tail (out of place: gradients, dropout, autocast) on one modality of a tile.

        ``attended`` (*lead, n, h, e) are the attention outputs of the tile's pairs, ``tokens`` the items' (residual)
        fragments: per pair (``side`` None) or per item of a dense tile (``"regions"``: (n_img, k, d) broadcast over
        the captions; ``"words"``: (n_txt, L, d) broadcast over the images). Only valid tokens are computed (the
        residual is gathered from the items directly); padding comes back as zeros.
        """
        *lead, n, _, _ = attended.shape
        d = tokens.shape[-1]
        flat, table = attended.reshape(-1, d), tokens.reshape(-1, d)
        valid = None if static or bool(mask.all()) else mask.reshape(-1).nonzero().squeeze(1)
        if side is None:  # per-pair tokens: the residual lines up with the attention outputs
            index = valid
        else:  # flat position (i, t, j) -> the item token it adds to: (i, j) for regions, (t, j) for words
            position = torch.arange(flat.shape[0], device=flat.device) if valid is None else valid
            index = position // (lead[1] * n) * n + position % n if side == "regions" else position % (lead[1] * n)
        residual = table if index is None else table.index_select(0, index)
        if valid is None:
            return engine.tail(self.units[0], flat, residual).view(*lead, n, d)
        packed = engine.tail(self.units[0], flat.index_select(0, valid), residual)
        return packed.new_zeros(flat.shape).index_copy(0, valid, packed).view(*lead, n, d)

    def _finish(
        self,
        y_r: Tensor,
        y_w: Tensor,
        img: engine.ModalityCache,
        txt: engine.ModalityCache,
        r_mask: Tensor,
        w_mask: Tensor,
        lead: tuple[int, ...],
        static: bool,
        zeroed: bool,
        taps: engine.CnnTaps | None,
    ) -> Tensor:
        """Later units (if any) and pooling of a tile's first-unit outputs; ``zeroed``: padding is already 0."""
        k = y_r.shape[-2]
        if len(self.units) > 1:
            joint = torch.cat([y_r, y_w], dim=-2).flatten(0, -3)
            mask = torch.cat([r_mask, w_mask], dim=-1).flatten(0, -2)
            for later in self.units[1:]:
                joint = later(joint, src_key_padding_mask=~mask)
            return self._pool(joint, k, mask[:, :k], mask[:, k:]).view(lead).float()
        r_padded, w_padded = static or not bool(img.mask.all()), static or not bool(txt.mask.all())
        return self._pool_tokens(y_r, y_w, r_mask, w_mask, r_padded, w_padded, zeroed, taps)

    def _pool_tokens(
        self,
        y_r: Tensor,
        y_w: Tensor,
        r_mask: Tensor,
        w_mask: Tensor,
        r_padded: bool,
        w_padded: bool,
        zeroed: bool,
        taps: engine.CnnTaps | None,
    ) -> Tensor:
        """<i1, c1> from the unit's outputs on (..., k, d) regions and (..., L, d) words (padding masked)."""
        i1 = (y_r * r_mask.unsqueeze(-1).to(y_r.dtype)).sum(-2) if r_padded and not zeroed else y_r.sum(-2)
        if w_padded and not zeroed:
            invalid = ~w_mask.unsqueeze(-1)
            y_w = y_w.masked_fill_(invalid, 0.0) if engine.fast_path() else y_w.masked_fill(invalid, 0.0)
        c1 = engine.fast_cnn(self.cnn, y_w, w_mask if w_padded else None, taps) if self.cnn is not None else y_w.sum(-2)
        return (l2_normalize(i1.float()) * l2_normalize(c1.float())).sum(-1)


def _spans(n: int, step: int) -> list[slice]:
    return [slice(s, min(s + step, n)) for s in range(0, n, step)]
