"""The fast path of MMCA's cross-attention fusion: pay per pair only what depends on the pair.

In the first transformer unit over ``Y = [R ; X]`` a region's query attends to the image's own regions
(intra block) and to the caption's words (cross block). Softmax over the concatenation is the
log-sum-exp merge of the two blocks: with ``lse_a``, ``o_a`` the log-normaliser and normalised output of
block a, ``out = (1 - w) o_intra + w o_cross`` with ``w = sigmoid(lse_cross - lse_intra)``. So the
per-image and per-caption work is cached once (:func:`prepare`: the Q, K, V projections of every
region and word, and each token's attention over its own modality), and each pair pays for:

* the two cross-modal logit blocks and their weighted value sums (``8 k L d`` FLOPs),
* the output projection, residual + LayerNorm, FFN, LayerNorm on its ``k + L`` tokens,
* pooling: the sum of the regions and the text 1D-CNN (one matrix product for all windows, then
  shifted sums), or the sum, and the dot product (L2 normalisation makes sum and mean equivalent).

The same decomposition serves three callers:

* **inference in float32** (the CPU engine): a dense block's attention (both directions) is computed for the
  whole block at once, a few large products and passes; everything after it then works in place, in *slabs*
  of the block (a few images x all captions, :data:`CPU_TILE_TOKENS` tokens) small enough for the CPU's cache
  and contiguous in the block's buffers (chosen by measurement in ``benchmarks/pair_scoring.py``). The output
  projection adds into a buffer that already holds the residual and its bias; the second feed-forward
  product adds into the first LayerNorm's output, whose bias absorbs ``linear2``'s bias (``linear1``'s
  bias is corrected by ``- W1 b2``), so no element-wise pass is spent on biases or residuals. Listed pairs
  (reranking) are sorted by length and scored in tiles of that size;
* **inference under autocast** (bfloat16 on a GPU) and **training** (gradients on): the same math out of
  place (:func:`tail`), so autograd and autocast see ordinary ops, with dropout where
  ``nn.TransformerEncoderLayer`` has it: on the attention weights, after the attention's output
  projection, after the GELU and after the second FFN product. The attention-weight dropout of the
  intra block is drawn once per item (it is cached), that of the cross block per pair;
* optionally ``attention="sdpa"``: each pair's queries attend to the concatenated keys of both
  modalities through ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient
  kernels on a GPU), recomputing the small intra block per pair instead of merging it.

Dense blocks of images x captions run the cross blocks as one large matrix product per head
(:func:`attend_dense`); listed pairs (reranking, hard negatives) use batched products
(:func:`attend_pairs`). Scores equal :meth:`CrossAttentionFusion.pair_scores` (the straightforward joint
unit) to float tolerance; ``tests/test_scoring.py`` and ``tests/test_cached_training.py`` check values
and gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmzoo.plugin import Fragments

#: tokens (regions + words of all pairs) per slab / tile of the float32 inference path: the FFN's hidden state
#: (tokens x ffn_dim floats) then stays in the L2/L3 cache. Measured on a 2-core AMD EPYC
#: (benchmarks/pair_scoring.py --sweep, docs/performance.md): 1,536-12,288 tokens are within the noise of each
#: other at d 64-256, whole 4,096-pair blocks (90,000 tokens) clearly slower.
CPU_TILE_TOKENS = 3072


@dataclass
class EngineOptions:
    """How the engine computes, not what: every option gives the same scores to float tolerance.

    Attributes:
        attention: ``"merge"`` (cached intra block merged by log-sum-exp), ``"sdpa"``
            (``scaled_dot_product_attention`` over the concatenated keys per pair) or ``"auto"``
            (sdpa on a GPU, merge on the CPU).
        tile_tokens: tokens per tile; None: :data:`CPU_TILE_TOKENS` on the CPU, the whole block on a GPU.
        compile: run each tile through ``torch.compile`` (static shapes: tiles are padded to one shape and
            not trimmed, so one compilation serves a whole evaluation).
        compile_mode: the ``mode`` given to ``torch.compile`` (e.g. ``"reduce-overhead"`` for CUDA graphs).
        path: ``"cached"`` (everything above) or ``"reference"``: ``forward`` and ``score_pairs_indexed`` run the
            straightforward joint unit over every expanded pair (to compare speed or results; the engine
            protocol is always cached).
    """

    attention: Literal["auto", "merge", "sdpa"] = "auto"
    tile_tokens: int | None = None
    compile: bool = False
    compile_mode: str | None = None
    path: Literal["cached", "reference"] = "cached"

    def resolved_attention(self, device: torch.device) -> str:
        if self.attention == "auto":
            return "sdpa" if device.type == "cuda" else "merge"
        return self.attention

    def resolved_tile_tokens(self, device: torch.device) -> int | None:
        if self.tile_tokens is not None:
            return max(1, int(self.tile_tokens))
        return CPU_TILE_TOKENS if device.type == "cpu" else None


@dataclass
class ModalityCache:
    """First-unit work for N images (or N captions), done once and reused for every pair.

    Attributes:
        tokens: (N, L, d) the fragments (the unit's residual input).
        mask: (N, L) bool validity.
        q, k, v: (N, h, L, e) the input projections per head; ``q`` is pre-scaled by 1/sqrt(e).
        lse: (N, h, L) float32 log-sum-exp of each token's attention logits over its own modality.
        intra: (N, h, L, e) each token's (normalised) attention output over its own modality.
    """

    tokens: Tensor
    mask: Tensor
    q: Tensor
    k: Tensor
    v: Tensor
    lse: Tensor
    intra: Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, index: slice | Tensor) -> ModalityCache:
        """Rows by a slice (views) or an integer index tensor (repeats allowed: :func:`gather_rows`)."""
        if isinstance(index, Tensor) and not index.is_floating_point() and index.dtype != torch.bool:
            return ModalityCache(*(gather_rows(getattr(self, f.name), index) for f in fields(self)))
        return ModalityCache(*(getattr(self, f.name)[index] for f in fields(self)))

    @property
    def device(self) -> torch.device:
        return self.tokens.device

    @property
    def length(self) -> int:
        return self.tokens.shape[1]

    def trimmed(self) -> ModalityCache:
        """Drop trailing token positions that are padding in every row (a block's own length)."""
        used = self.mask.any(0).nonzero()
        length = int(used.max()) + 1 if len(used) else 1
        if length == self.mask.shape[1]:
            return self
        cut = slice(None, length)
        return ModalityCache(
            self.tokens[:, cut],
            self.mask[:, cut],
            self.q[:, :, cut],
            self.k[:, :, cut],
            self.v[:, :, cut],
            self.lse[:, :, cut],
            self.intra[:, :, cut],
        )

    def padded_rows(self, rows: int) -> ModalityCache:
        """The cache with its last row repeated up to ``rows`` rows (static shapes for torch.compile)."""
        extra = rows - len(self)
        if extra <= 0:
            return self
        index = torch.cat([torch.arange(len(self)), torch.full((extra,), len(self) - 1)]).to(self.device)
        return self[index]


class _GatherRows(torch.autograd.Function):
    """``index_select`` along dim 0 whose backward makes the incoming gradient contiguous before the ``index_add``:
    the attention products hand back transposed gradients, and ``index_add`` over those (index_select's own
    backward) was slower on the CPU than a copy plus a contiguous one, and than advanced indexing's accumulating
    ``index_put`` (itself several times slower than both on contiguous gradients)."""

    @staticmethod
    def forward(ctx, table, index):
        ctx.save_for_backward(index)
        ctx.rows = table.shape[0]
        return table.index_select(0, index)

    @staticmethod
    def backward(ctx, grad):
        (index,) = ctx.saved_tensors
        grad = grad.contiguous()
        return grad.new_zeros(ctx.rows, *grad.shape[1:]).index_add_(0, index, grad), None


def gather_rows(table: Tensor, index: Tensor) -> Tensor:
    """``table[index]`` for an integer index tensor (repeats allowed), differentiable (see :class:`_GatherRows`)."""
    if table.requires_grad and torch.is_grad_enabled() and not torch.compiler.is_compiling():
        return _GatherRows.apply(table, index)
    return table.index_select(0, index)


def fast_path() -> bool:
    """True for float32 inference (no gradients, no autocast): the in-place, cache-tiled path."""
    if torch.is_grad_enabled():
        return False
    return not any(torch.is_autocast_enabled(kind) for kind in ("cpu", "cuda"))


def key_bias(mask: Tensor, static: bool = False) -> Tensor | None:
    """0 for valid keys, -inf for padding, added to attention logits (float32); None without padding.

    ``static``: always a tensor (no data-dependent branch, for torch.compile)."""
    if not static and bool(mask.all()):
        return None
    return torch.zeros(mask.shape, dtype=torch.float32, device=mask.device).masked_fill(~mask, float("-inf"))


def _view(bias: Tensor | None, *shape: int) -> Tensor | None:
    return None if bias is None else bias.view(*shape)


def prepare(unit: nn.TransformerEncoderLayer, fragments: Fragments, dropout: float = 0.0) -> ModalityCache:
    """Project one modality's fragments to Q, K, V and attend within the modality, once per item.

    Differentiable; ``dropout`` (training) drops the intra block's attention weights once per item.
    """
    attn = unit.self_attn
    x, mask = fragments.features, fragments.mask
    n, length, d = x.shape
    h = attn.num_heads
    e = d // h
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(n, length, 3, h, e).permute(2, 0, 3, 1, 4)
    q, k, v = (qkv[0] * e**-0.5).contiguous(), qkv[1].contiguous(), qkv[2].contiguous()
    logits = (q @ k.transpose(-1, -2)).float()  # (n, h, L, L)
    bias = key_bias(mask)
    if bias is not None:
        logits = logits + bias[:, None, None, :]
    lse = torch.logsumexp(logits, dim=-1)
    keep, scale = keep_mask(logits.shape, dropout, x.device)
    probs = _apply((logits - (lse - math.log(scale)).unsqueeze(-1)).exp(), keep)  # softmax * scale, dropped out
    intra = probs.to(v.dtype) @ v
    return ModalityCache(x, mask, q, k, v, lse, intra)


# -- attention --------------------------------------------------------------------------------------------
def _cross_softmax(
    logits: Tensor, bias: Tensor | None, lse_intra: Tensor, dim: int, dropout: float
) -> tuple[Tensor, Tensor]:
    """Softmax over [intra ; cross] split into what the cross block needs.

    Returns the cross block's weights (keys along ``dim``) already scaled so that their value sum *is* the
    cross share of the output: ``exp(logits - peak) * w / total`` with ``w = sigmoid(lse_cross - lse_intra)``
    (dropped out when ``dropout`` > 0, after the normaliser is taken), and the intra share ``1 - w``. With
    gradients (outside ``torch.compile``) through :class:`_CrossSoftmax`, its backward written out.
    """
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        return _CrossSoftmax.apply(logits, bias, lse_intra, dim, dropout)
    return _cross_softmax_ops(logits, bias, lse_intra, dim, dropout)


def _cross_softmax_ops(
    logits: Tensor, bias: Tensor | None, lse_intra: Tensor, dim: int, dropout: float
) -> tuple[Tensor, Tensor]:
    """:func:`_cross_softmax` as torch ops (in place without gradients; under ``torch.compile`` with them)."""
    inplace = not torch.is_grad_enabled()
    logits = logits.float()
    if bias is not None:
        logits = logits.add_(bias) if inplace else logits + bias
    peak = logits.amax(dim=dim, keepdim=True).detach()  # softmax is shift-invariant: no gradient needed
    weights = logits.sub_(peak).exp_() if inplace else (logits - peak).exp()
    total = weights.sum(dim=dim, keepdim=True)
    cross = torch.sigmoid(peak + total.log() - lse_intra.unsqueeze(dim))
    keep, scale = keep_mask(weights.shape, dropout, weights.device)
    factor = cross / total if scale == 1.0 else cross * (scale / total)
    weights = _apply(weights.mul_(factor) if inplace else weights * factor, keep)
    return weights, (1 - cross).squeeze(dim)


class _CrossSoftmax(torch.autograd.Function):
    """:func:`_cross_softmax` with gradients, its backward written out (a few passes over the logits instead of
    autograd's chain of a dozen element-wise nodes).

    With ``p`` the softmax over the cross keys, ``w = sigmoid(lse_cross - lse_intra)``, ``D`` the dropout mask
    times its scale and the returned weights ``A = p w D`` and intra share ``1 - w``: ``dw = sum_k(dA D p) -
    d(1 - w)``, ``g = dw w (1 - w)`` (through the sigmoid), ``ds = p (w dA D - w sum_k(dA D p) + g)`` (the softmax's
    backward plus ``p g`` through ``lse_cross``) and ``d lse_intra = -g``.
    """

    @staticmethod
    def forward(ctx, logits, bias, lse_intra, dim, dropout):
        logits = logits.float()
        scores = logits + bias if bias is not None else logits
        peak = scores.amax(dim=dim, keepdim=True)
        probs = scores.sub_(peak) if bias is not None else scores - peak
        probs = probs.exp_()
        total = probs.sum(dim=dim, keepdim=True)
        cross = torch.sigmoid(peak + total.log() - lse_intra.unsqueeze(dim))
        probs = probs.div_(total)
        keep, scale = keep_mask(probs.shape, dropout, probs.device)
        keep = None if keep is None else keep.to(probs.dtype)
        weights = probs * (cross if scale == 1.0 else cross * scale)
        if keep is not None:
            weights = weights.mul_(keep)
        ctx.save_for_backward(probs, cross, keep)
        ctx.dim, ctx.scale = dim, scale
        return weights, (1 - cross).squeeze(dim)

    @staticmethod
    def backward(ctx, grad_weights, grad_intra_share):
        probs, cross, keep = ctx.saved_tensors
        dim, scale = ctx.dim, ctx.scale
        grad_weights = grad_weights.contiguous()  # (the value product hands it back transposed)
        grad = grad_weights if keep is None else grad_weights * keep  # dA D / scale
        through = (grad * probs).sum(dim=dim, keepdim=True)
        if scale != 1.0:
            through = through * scale  # sum_k(dA D p)
        grad_cross = through if grad_intra_share is None else through - grad_intra_share.unsqueeze(dim)
        g = grad_cross * cross * (1 - cross)
        grad_logits = grad.mul_(cross * scale) if keep is not None else grad * (cross * scale)
        grad_logits = grad_logits.add_(g - cross * through).mul_(probs)
        return grad_logits, None, -g.squeeze(dim), None, None


def _merge(cross: Tensor, intra: Tensor, scale_intra: Tensor, out: Tensor | None) -> Tensor:
    """``cross + intra * scale_intra``, written into ``out`` (any strides) in one pass when given."""
    if out is None:
        return cross + intra * scale_intra.to(intra.dtype)
    return torch.addcmul(cross, intra, scale_intra, out=out)


def attend_dense(
    query: ModalityCache, key: ModalityCache, out: Tensor | None = None, dropout: float = 0.0, static: bool = False
) -> Tensor:
    """Attention outputs of ``query``'s tokens for every (query item, key item) pair: (nq, nk, Lq, h, e).

    Per head one (nk Lk, e) x (e, nq Lq) product gives all cross-modal logits; the value sums come out
    with the head dimension next to e, so writing them into the token layout moves whole e-runs.
    """
    nq, h, lq, e = query.q.shape
    nk, _, lk, _ = key.q.shape
    m = nq * lq
    keys = key.k.transpose(0, 1).reshape(h, nk * lk, e)
    queries = query.q.transpose(0, 1).reshape(h, m, e)
    logits = (keys @ queries.transpose(1, 2)).view(h, nk, lk, m)
    weights, scale_intra = _cross_softmax(
        logits, _view(key_bias(key.mask, static), 1, nk, lk, 1), query.lse.transpose(0, 1).reshape(h, 1, m), 2, dropout
    )
    values = key.v.transpose(0, 1)  # (h, nk, Lk, e)
    cross = (weights.to(values.dtype).transpose(2, 3) @ values).view(h, nk, nq, lq, e).permute(2, 1, 3, 0, 4)
    scale_intra = scale_intra.view(h, nk, nq, lq, 1).permute(2, 1, 3, 0, 4)
    return _merge(cross, query.intra.transpose(1, 2).unsqueeze(1), scale_intra, out)


def attend_pairs(
    query: ModalityCache, key: ModalityCache, out: Tensor | None = None, dropout: float = 0.0, static: bool = False
) -> Tensor:
    """Attention outputs for aligned pairs (query[p], key[p]): (P, Lq, h, e), batched small products."""
    p, _, lk, _ = key.q.shape
    logits = key.k @ query.q.transpose(-1, -2)  # (P, h, Lk, Lq)
    weights, scale_intra = _cross_softmax(logits, _view(key_bias(key.mask, static), p, 1, lk, 1), query.lse, 2, dropout)
    cross = (weights.to(key.v.dtype).transpose(-1, -2) @ key.v).transpose(1, 2)  # (P, Lq, h, e)
    return _merge(cross, query.intra.transpose(1, 2), scale_intra.unsqueeze(-1).transpose(1, 2), out)


def attend_sdpa(
    query: ModalityCache, key: ModalityCache, dense: bool, dropout: float = 0.0, static: bool = False
) -> Tensor:
    """Each pair's ``query`` tokens attending to the keys of both modalities, as one
    ``scaled_dot_product_attention`` call over all pairs: (*lead, Lq, h, e), lead (nq, nk) or (P,).

    The intra block is recomputed per pair (a few percent of a pair's FLOPs at the paper's sizes) in exchange
    for a fused kernel (flash or memory-efficient attention on a GPU) instead of the element-wise merge. Without
    padding (and without ``static``) no mask is passed, so that the flash kernel applies.
    """
    if dense:  # broadcast the query item's own keys over the key items and the key item's over the query items
        nq, nk = len(query), len(key)

        def pairs(own: Tensor, other: Tensor) -> Tensor:
            return torch.cat(
                [own[:, None].expand(nq, nk, *own.shape[1:]), other[None].expand(nq, nk, *other.shape[1:])], -2
            )

        keys, values, q = (
            pairs(query.k, key.k),
            pairs(query.v, key.v),
            query.q[:, None].expand(nq, nk, *query.q.shape[1:]),
        )
        mask = torch.cat([query.mask[:, None].expand(nq, nk, -1), key.mask[None].expand(nq, nk, -1)], -1)
    else:
        keys, values, q = torch.cat([query.k, key.k], -2), torch.cat([query.v, key.v], -2), query.q
        mask = torch.cat([query.mask, key.mask], -1)
    lead, (h, lq, e) = q.shape[:-3], q.shape[-3:]
    flat = (math.prod(lead), h)
    attn_mask = None if not static and bool(mask.all()) else mask.reshape(flat[0], 1, 1, -1)
    out = F.scaled_dot_product_attention(
        q.reshape(*flat, lq, e),
        keys.reshape(*flat, -1, e),
        values.reshape(*flat, -1, e),
        attn_mask=attn_mask,
        dropout_p=dropout,
        scale=1.0,  # q is pre-scaled
    )
    return out.view(*lead, h, lq, e).transpose(-2, -3)


def keep_mask(shape: tuple[int, ...], p: float, device: torch.device) -> tuple[Tensor | None, float]:
    """Dropout with rate ``p`` as a bool keep-mask and the scale ``1 / kept fraction`` (``(None, 1.0)`` for p = 0).

    Callers fold the scale into a neighbouring product or normaliser, so that applying dropout costs one
    multiplication by a bool mask forward and one backward. On a GPU the mask is ``rand >= p``; on the CPU it comes
    from 16-bit uniform draws, four per 64-bit random word of torch's generator (``torch.manual_seed`` seeds
    both): ``F.dropout``'s Bernoulli sampling draws one random number per element and was a fifth of an MMCA
    training step on the CPU. The rate is then ``p`` rounded to a multiple of 1/65536; the scale is the exact
    inverse of the kept fraction either way, so dropout stays unbiased.
    """
    if p <= 0:
        return None, 1.0
    if device.type != "cpu":
        return torch.rand(shape, device=device) >= p, 1.0 / (1.0 - p)
    cut = min(65535, round(p * 65536))
    n = math.prod(shape)
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)
    draws = words.view(torch.int16)[:n].view(shape)  # uniform on [-32768, 32767]
    return draws >= cut - 32768, 65536 / (65536 - cut)


def _apply(x: Tensor, keep: Tensor | None) -> Tensor:
    """``x`` times a keep-mask (converted first: a bool operand would be converted inside the product, slower)."""
    return x if keep is None else x * keep.to(x.dtype)


# -- everything after the attention -----------------------------------------------------------------------
@dataclass
class CnnTaps:
    """TextCNN's windows as one product: every tap's weight stacked (sum(w) C, d), each window's bias on its
    first tap, the column widths of the taps and the window sizes."""

    weight: Tensor
    bias: Tensor
    sizes: list[int]
    widths: list[int]


def cnn_taps(cnn: nn.Module) -> CnnTaps:
    taps, biases, widths = [], [], []
    for conv in cnn.convs:
        widths.append(conv.weight.shape[-1])
        for j in range(conv.weight.shape[-1]):
            taps.append(conv.weight[:, :, j])
            biases.append(conv.bias if j == 0 else torch.zeros_like(conv.bias))
    return CnnTaps(torch.cat(taps), torch.cat(biases), [t.shape[0] for t in taps], widths)


@dataclass
class InferenceWeights:
    """What the float32 inference tail derives from a unit's (and the CNN's) weights, once per block of pairs."""

    out_bias: Tensor
    ln1_bias: Tensor
    ffn_bias: Tensor
    taps: CnnTaps | None


def inference_weights(unit: nn.TransformerEncoderLayer, cnn: nn.Module | None) -> InferenceWeights:
    """LN1's bias absorbs ``linear2.bias`` and ``linear1``'s bias becomes ``b1 - W1 b2`` (see :func:`tail_inplace`)."""
    b2 = unit.linear2.bias
    return InferenceWeights(
        unit.self_attn.out_proj.bias,
        unit.norm1.bias + b2,
        torch.addmv(unit.linear1.bias, unit.linear1.weight, b2, alpha=-1),
        None if cnn is None else cnn_taps(cnn),
    )


def tail_inplace(unit: nn.TransformerEncoderLayer, attended: Tensor, z: Tensor, weights: InferenceWeights) -> Tensor:
    """Out-proj, +residual, LN, FFN, +residual, LN on tokens (T, d) in float32 inference, in few passes.

    ``z`` (T, d) holds the residual plus the output projection's bias and is overwritten. The FFN's second
    product adds into the first LayerNorm's output ``z1 + b2`` (LN1's bias absorbs ``linear2.bias``; the
    first product's bias becomes ``b1 - W1 b2`` so that it still sees ``z1``).
    """
    d = z.shape[-1]
    z.addmm_(attended, unit.self_attn.out_proj.weight.t())
    z = F.layer_norm(z, (d,), unit.norm1.weight, weights.ln1_bias, unit.norm1.eps)
    hidden = torch._C._nn.gelu_(torch.addmm(weights.ffn_bias, z, unit.linear1.weight.t()))
    z.addmm_(hidden, unit.linear2.weight.t())
    return F.layer_norm(z, (d,), unit.norm2.weight, unit.norm2.bias, unit.norm2.eps)


def tail(unit: nn.TransformerEncoderLayer, attended: Tensor, residual: Tensor) -> Tensor:
    """The rest of a post-norm GELU unit on tokens (..., d), out of place, with the unit's dropout in training.

    Dropout sits where ``nn.TransformerEncoderLayer`` has it: after the attention's output projection, after
    the GELU and after the second FFN product (``unit.training`` switches it).
    """
    d, tokens, device = attended.shape[-1], attended.shape[:-1], attended.device
    rates = (unit.dropout1.p, unit.dropout.p, unit.dropout2.p) if unit.training else (0.0, 0.0, 0.0)
    (keep1, s1), (keep2, s2), (keep3, s3) = (
        keep_mask((*tokens, width), p, device)
        for p, width in zip(rates, (d, unit.linear1.out_features, d), strict=True)
    )
    proj, w2, b2 = unit.self_attn.out_proj, unit.linear2.weight, unit.linear2.bias
    # each dropout's scale rides on the product before it (the GELU's on the product after it)
    z = residual + _apply(F.linear(attended, proj.weight * s1, proj.bias * s1) if s1 != 1.0 else proj(attended), keep1)
    z = F.layer_norm(z, (d,), unit.norm1.weight, unit.norm1.bias, unit.norm1.eps)
    hidden = _apply(F.gelu(F.linear(z, unit.linear1.weight, unit.linear1.bias)), keep2)
    out = F.linear(hidden, w2 * (s2 * s3), b2 * s3) if s2 * s3 != 1.0 else F.linear(hidden, w2, b2)
    return F.layer_norm(z + _apply(out, keep3), (d,), unit.norm2.weight, unit.norm2.bias, unit.norm2.eps)


def fast_cnn(cnn: nn.Module, tokens: Tensor, mask: Tensor | None, taps: CnnTaps | None = None) -> Tensor:
    """:class:`~mmzoo_plugins.mmca.cnn.TextCNN` on tokens (..., L, d) that are zero at padding -> (..., out_dim).

    All windows' taps are one matrix product; a window's output at t is the sum of its taps j at t + j
    (positions past the end contribute zero, as TextCNN pads with zeros). ``mask=None``: no padding.
    Without gradients the shifted sums go in place into the product's columns; with gradients the columns
    are split apart first (a split's backward concatenates, where a slice's would zero-fill a full copy each).
    """
    inplace = not torch.is_grad_enabled()
    taps = taps if taps is not None else cnn_taps(cnn)
    projected = F.linear(tokens, taps.weight, taps.bias)  # (..., L, sum(w) * C)
    length = tokens.shape[-2]
    columns = projected.split(taps.sizes, dim=-1)
    invalid = None if mask is None else ~mask.unsqueeze(-1)
    pooled, first = [], 0
    for width in taps.widths:
        acc = columns[first]  # a view: in place, the first tap's columns are not needed again
        for j in range(1, min(width, length)):
            if inplace:
                acc[..., : length - j, :] += columns[first + j][..., j:, :]
            else:
                acc = acc + F.pad(columns[first + j][..., j:, :], (0, 0, 0, j))
        first += width
        if inplace:
            acc = acc.relu_() if invalid is None else acc.relu_().masked_fill_(invalid, float("-inf"))
        else:
            acc = acc.relu() if invalid is None else acc.relu().masked_fill(invalid, float("-inf"))
        pooled.append(acc.amax(dim=-2))
    return cnn.fc(torch.cat(pooled, dim=-1))


# -- tiles ------------------------------------------------------------------------------------------------
def tile_shape(n_rows: int, n_cols: int, pairs: int) -> tuple[int, int]:
    """A near-square (rows, cols) tile of at most ``pairs`` pairs, balanced so that the tiles split both sides
    evenly (no thin leftover tiles at the edges)."""
    pairs = max(int(pairs), 1)
    rows = max(1, min(n_rows, math.isqrt(pairs)))
    cols = max(1, min(n_cols, pairs // rows))
    rows = max(1, min(n_rows, pairs // cols))
    rows = -(-n_rows // -(-n_rows // rows))  # ceil(n / number of tiles)
    cols = -(-n_cols // -(-n_cols // cols))
    return rows, cols


__all__ = [
    "CPU_TILE_TOKENS",
    "CnnTaps",
    "EngineOptions",
    "InferenceWeights",
    "ModalityCache",
    "attend_dense",
    "attend_pairs",
    "attend_sdpa",
    "cnn_taps",
    "fast_cnn",
    "fast_path",
    "gather_rows",
    "inference_weights",
    "keep_mask",
    "key_bias",
    "prepare",
    "tail",
    "tail_inplace",
    "tile_shape",
]
