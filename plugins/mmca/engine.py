"""The fast path of MMCA's cross-attention fusion: pay per pair only what depends on the pair.

In the first transformer unit over ``Y = [R ; X]`` a region's query attends to the image's own regions
(intra block) and to the caption's words (cross block). Softmax over the concatenation is the
log-sum-exp merge of the two blocks: with ``lse_a``, ``o_a`` the log-normaliser and normalised output of
block a, ``out = (1 - w) o_intra + w o_cross`` with ``w = sigmoid(lse_cross - lse_intra)``. So the
per-image and per-caption work is cached once (:func:`prepare`: the Q, K, V projections of every
region and word, and each token's attention over its own modality), and each pair pays for:

* the two cross-modal logit blocks and their weighted value sums (``8 k L d`` FLOPs),
* the output projection, residual + LayerNorm, FFN, LayerNorm on its ``k + L`` valid tokens,
* pooling: the mean of the regions and the text 1D-CNN (one matrix product for all windows, then
  shifted sums), or the mean, and the dot product.

Dense blocks of images x captions run the cross blocks as one large matrix product per head
(:func:`cross_dense`); listed pairs (reranking) use batched products (:func:`cross_pairs`). Padded
tokens are dropped before the token-wise products. Further units (``layers > 1``) run the ordinary
way on the pair tensors. Scores equal :meth:`CrossAttentionFusion.pair_scores` in eval mode (dropout
off) to float tolerance; ``tests/test_scoring.py`` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import mmzoo


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
        return ModalityCache(*(getattr(self, f.name)[index] for f in fields(self)))

    @property
    def device(self) -> torch.device:
        return self.tokens.device

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


def key_bias(mask: Tensor) -> Tensor | None:
    """0 for valid keys, -inf for padding, added to attention logits (float32); None without padding."""
    if bool(mask.all()):
        return None
    return torch.zeros(mask.shape, dtype=torch.float32, device=mask.device).masked_fill(~mask, float("-inf"))


def _view(bias: Tensor | None, *shape: int) -> Tensor | None:
    return None if bias is None else bias.view(*shape)


def prepare(unit: nn.TransformerEncoderLayer, fragments: mmzoo.Fragments) -> ModalityCache:
    """Project one modality's fragments to Q, K, V and attend within the modality, once per item."""
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
    intra = (logits - lse.unsqueeze(-1)).exp_().to(v.dtype) @ v
    return ModalityCache(x, mask, q, k, v, lse, intra)


def merge_cross(logits: Tensor, bias: Tensor | None, values_t: Tensor, lse_intra: Tensor, intra_t: Tensor) -> Tensor:
    """Softmax over [intra ; cross] from the cached intra block and a fresh cross block.

    Args:
        logits: (B..., K, M) cross logits, keys along dim -2, queries along dim -1.
        bias: broadcastable to ``logits``: 0 / -inf for valid / padded keys (None: no padding).
        values_t: (B..., e, K) the keys' values, transposed.
        lse_intra: broadcastable to (B..., M): the queries' intra-block log-sum-exp.
        intra_t: broadcastable to (B..., e, M): the queries' intra-block outputs, transposed.

    Returns:
        (B..., e, M) the attention output of every query over the concatenation, transposed.
    """
    logits = logits.float()
    if bias is not None:
        logits = logits.add_(bias)
    peak = logits.amax(dim=-2, keepdim=True)
    weights = logits.sub_(peak).exp_()
    total = weights.sum(dim=-2)  # (B..., M)
    out = values_t @ weights.to(values_t.dtype)  # (B..., e, M), unnormalised
    cross = torch.sigmoid(peak.squeeze(-2) + total.log() - lse_intra)  # weight of the cross block
    return out.mul_((cross / total).unsqueeze(-2).to(out.dtype)).addcmul_(intra_t, (1 - cross).unsqueeze(-2))


def _attend_across(query: ModalityCache, key: ModalityCache) -> Tensor:
    """Attention outputs of ``query``'s tokens for every (query item, key item) pair: (nq, nk, Lq, h, e).

    Per head one (nk Lk, e) x (e, nq Lq) product gives the cross-modal logits, merged with the cached
    intra-modality block of each query token.
    """
    nq, h, lq, e = query.q.shape
    nk, _, lk, _ = key.q.shape
    logits = (key.k.transpose(0, 1).reshape(h, nk * lk, e) @ query.q.permute(1, 3, 0, 2).reshape(h, e, nq * lq)).view(
        h, nk, lk, nq * lq
    )
    out = merge_cross(
        logits,
        _view(key_bias(key.mask), 1, nk, lk, 1),
        key.v.permute(1, 0, 3, 2),
        query.lse.transpose(0, 1).reshape(h, 1, nq * lq),
        query.intra.permute(1, 3, 0, 2).reshape(h, 1, e, nq * lq),
    )  # (h, nk, e, nq Lq)
    return out.view(h, nk, e, nq, lq).permute(3, 1, 4, 0, 2)


def cross_dense(img: ModalityCache, txt: ModalityCache) -> tuple[Tensor, Tensor]:
    """Attention outputs for every pair of a block: regions (ni, nt, k, h, e) and words (ni, nt, L, h, e)."""
    return _attend_across(img, txt), _attend_across(txt, img).transpose(0, 1)


def cross_pairs(img: ModalityCache, txt: ModalityCache, img_idx: Tensor, txt_idx: Tensor) -> tuple[Tensor, Tensor]:
    """Attention outputs for listed pairs: regions (P, k, h, e) and words (P, L, h, e)."""
    p = len(img_idx)
    qi, ki, vi, mi = img.q[img_idx], img.k[img_idx], img.v[img_idx], img.mask[img_idx]
    qt, kt, vt, mt = txt.q[txt_idx], txt.k[txt_idx], txt.v[txt_idx], txt.mask[txt_idx]
    regions = merge_cross(
        kt @ qi.transpose(-1, -2),  # (P, h, L, k)
        _view(key_bias(mt), p, 1, -1, 1),
        vt.transpose(-1, -2),
        img.lse[img_idx],
        img.intra[img_idx].transpose(-1, -2),
    ).permute(0, 3, 1, 2)
    words = merge_cross(
        ki @ qt.transpose(-1, -2),  # (P, h, k, L)
        _view(key_bias(mi), p, 1, -1, 1),
        vi.transpose(-1, -2),
        txt.lse[txt_idx],
        txt.intra[txt_idx].transpose(-1, -2),
    ).permute(0, 3, 1, 2)
    return regions, words


def unit_tail(unit: nn.TransformerEncoderLayer, attended: Tensor, residual: Tensor) -> Tensor:
    """The rest of a post-norm GELU unit on tokens (..., d): out-proj, +res, LN, FFN, +res, LN.

    ``residual`` only needs to broadcast to ``attended`` (e.g. an image's regions shared by its pairs).
    """
    d = attended.shape[-1]
    proj = unit.self_attn.out_proj
    z = F.linear(attended, proj.weight, proj.bias).add_(residual)
    z = F.layer_norm(z, (d,), unit.norm1.weight, unit.norm1.bias, unit.norm1.eps)
    hidden = F.gelu(F.linear(z, unit.linear1.weight, unit.linear1.bias))
    out = F.linear(hidden, unit.linear2.weight, unit.linear2.bias).add_(z)
    return F.layer_norm(out, (d,), unit.norm2.weight, unit.norm2.bias, unit.norm2.eps)


def scatter(packed: Tensor, mask: Tensor) -> Tensor:
    """Packed valid tokens (T, c) back to the padded layout (*mask.shape, c), zeros elsewhere."""
    out = packed.new_zeros(*mask.shape, packed.shape[-1])
    out[mask] = packed
    return out


def fast_cnn(cnn: nn.Module, tokens: Tensor, mask: Tensor | None) -> Tensor:
    """:class:`~mmzoo_plugins.mmca.cnn.TextCNN` on tokens (..., L, d) that are zero at padding -> (..., out_dim).

    All windows' taps are one matrix product; a window's output at t is the sum of its taps j at t + j
    (positions past the end contribute zero, as TextCNN pads with zeros). ``mask=None``: no padding.
    """
    taps, biases = [], []
    for conv in cnn.convs:
        for j in range(conv.weight.shape[-1]):
            taps.append(conv.weight[:, :, j])
            biases.append(conv.bias if j == 0 else torch.zeros_like(conv.bias))
    # (..., L, sum(w) * C); each window's bias rides on its first tap
    projected = F.linear(tokens, torch.cat(taps), torch.cat(biases))
    length = tokens.shape[-2]
    pooled, col = [], 0
    for conv in cnn.convs:
        channels, _, width = conv.weight.shape
        acc = projected[..., col : col + channels]  # a view: the first tap's columns are not needed again
        for j in range(1, min(width, length)):
            acc[..., : length - j, :] += projected[..., j:, col + j * channels : col + (j + 1) * channels]
        col += width * channels
        acc = acc.relu_()
        if mask is not None:
            acc = acc.masked_fill_(~mask.unsqueeze(-1), float("-inf"))
        pooled.append(acc.amax(dim=-2))
    return cnn.fc(torch.cat(pooled, dim=-1))
