"""Stacked cross attention, the math of SCAN's ``func_attention`` and ``xattn_score_t2i`` / ``_i2t``.

One *query* item (a caption's words for t2i, an image's regions for i2t) attends over one *context*
item (the image's regions for t2i, the caption's words for i2t):

1. logits ``s[c, q] = <context_c, query_q>``;
2. ``raw_feature_norm`` normalises them over the **query** fragments (for each context fragment):
   ``softmax``; ``l2norm`` / ``l1norm`` (divide by the norm plus 1e-8); ``clipped_l2norm`` /
   ``clipped_l1norm`` (LeakyReLU(0.1) first); ``clipped`` (LeakyReLU only); ``no_norm``;
3. ``a = softmax over the context fragments of lambda_softmax * normalised logits``;
4. each query fragment's attended context ``v_q = sum_c a[c, q] context_c`` and its relevance
   ``cos(query_q, v_q)`` (``<x, y> / max(|x| |y|, 1e-8)``);
5. ``agg_func`` pools the relevances over the query fragments: ``LogSumExp``
   (``log(sum exp(lambda_lse r)) / lambda_lse``), ``Max``, ``Sum`` or ``Mean``.

:func:`explicit_scores` is that computation as written (the attended vectors are formed), on any
broadcastable batch of (query, context) pairs. :func:`block_scores` is the scoring engine's version for
a block of many context items x many query items: the logits of the whole block are one matrix
product, and the attended vectors are never formed, because the cosine needs only
``<query_q, v_q> = sum_c a[c, q] s[c, q]`` and ``|v_q|^2 = a_q^T G a_q`` with ``G`` the context item's
Gram matrix (computed once per item). Padding (``mask == False``) takes part in nothing; SCAN itself
never pads regions (36 per image) and cuts each caption to its length.

Where SCAN's code and this differ: ``l1norm`` and ``clipped_l1norm`` call ``l1norm_d``, which
``model.py`` never defines (a ``NameError`` at the first step); here they divide by the L1 norm plus
1e-8, like SCAN's own ``l1norm`` helper. ``LogSumExp`` is computed stably (``torch.logsumexp``), equal
to SCAN's ``log(sum(exp(.)))`` wherever that one does not overflow.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

RawFeatureNorm = Literal["softmax", "l2norm", "clipped_l2norm", "l1norm", "clipped_l1norm", "clipped", "no_norm"]
AggFunc = Literal["LogSumExp", "Max", "Sum", "Mean"]

#: SCAN's epsilons: added to the L1/L2 norms of ``l1norm`` / ``l2norm``, and the floor of the cosine's
#: denominator in ``cosine_similarity``.
NORM_EPS = 1e-8
COSINE_EPS = 1e-8


def normalise_logits(logits: Tensor, valid: Tensor, dim: int, kind: RawFeatureNorm, inplace: bool = False) -> Tensor:
    """``raw_feature_norm`` over ``dim`` (the query fragments); invalid entries end as 0.

    ``valid`` is a bool tensor broadcastable to ``logits``. Returns a new tensor; ``inplace`` lets it
    reuse its own intermediate buffers (no autograd).
    """
    if kind == "softmax":
        return torch.softmax(logits.masked_fill(~valid, float("-inf")), dim=dim)
    x = F.leaky_relu(logits, 0.1) if kind.startswith("clipped") else logits
    x = x.masked_fill(~valid, 0.0)
    if kind.endswith("l2norm"):
        norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True) + NORM_EPS  # zero-safe gradient
    elif kind.endswith("l1norm"):
        norm = x.abs().sum(dim, keepdim=True) + NORM_EPS
    elif kind in ("clipped", "no_norm"):
        return x
    else:
        raise ValueError(f"unknown raw_feature_norm {kind!r}")
    return x.div_(norm) if inplace else x / norm


def aggregate(relevance: Tensor, valid: Tensor, kind: AggFunc, lambda_lse: float) -> Tensor:
    """``agg_func`` over the last dimension (query fragments), counting valid ones only."""
    if kind == "LogSumExp":
        return torch.logsumexp(relevance.mul(lambda_lse).masked_fill(~valid, float("-inf")), dim=-1) / lambda_lse
    if kind == "Max":
        return relevance.masked_fill(~valid, float("-inf")).amax(dim=-1)
    total = relevance.masked_fill(~valid, 0.0).sum(dim=-1)
    if kind == "Sum":
        return total
    if kind == "Mean":
        return total / valid.sum(-1).to(total.dtype)
    raise ValueError(f"unknown agg_func {kind!r}")


def explicit_scores(
    query: Tensor,
    query_mask: Tensor,
    context: Tensor,
    context_mask: Tensor,
    raw_feature_norm: RawFeatureNorm,
    agg_func: AggFunc,
    lambda_softmax: float,
    lambda_lse: float,
) -> Tensor:
    """SCAN's score with the attended vectors formed: query (..., Lq, d), context (..., Lc, d) -> (...).

    Leading dimensions broadcast (images x captions, or aligned pairs). Fragments must be zero where
    their mask is False.
    """
    logits = context @ query.transpose(-1, -2)  # (..., Lc, Lq)
    x = normalise_logits(logits, query_mask.unsqueeze(-2), -1, raw_feature_norm)
    x = (x * lambda_softmax).masked_fill(~context_mask.unsqueeze(-1), float("-inf"))
    attn = torch.softmax(x, dim=-2)  # over the context fragments
    attended = attn.transpose(-1, -2) @ context  # (..., Lq, d)
    dot = (query * attended).sum(-1)
    norms = query.norm(dim=-1) * attended.norm(dim=-1)
    relevance = dot / norms.clamp(min=COSINE_EPS)
    return aggregate(relevance, query_mask.expand_as(relevance), agg_func, lambda_lse)


def block_scores(
    logits: Tensor,
    query_mask: Tensor,
    query_norms: Tensor,
    context_mask: Tensor,
    context_gram: Tensor,
    raw_feature_norm: RawFeatureNorm,
    agg_func: AggFunc,
    lambda_softmax: float,
    lambda_lse: float,
) -> Tensor:
    """The engine's score from precomputed logits, without forming attended vectors.

    Args:
        logits: (B, Lc, nq, Lq) float32: context item b's fragment c against query item j's fragment q.
            Dense blocks have one row per context item and nq query items; listed pairs have B pairs, nq = 1.
        query_mask: (Bq, nq, Lq) bool, Bq in {1, B}.
        query_norms: (Bq, nq, Lq) L2 norms of the query fragments.
        context_mask: (B, Lc) bool.
        context_gram: (B, Lc, Lc) the context items' Gram matrices ``<context_c, context_c'>``.

    Returns:
        (B, nq) scores. ``logits`` is overwritten.
    """
    b, lc, nq, lq = logits.shape
    q_valid = query_mask.unsqueeze(1)  # (Bq, 1, nq, Lq)
    x = normalise_logits(logits, q_valid, -1, raw_feature_norm, inplace=True)
    x = x.mul_(lambda_softmax).masked_fill_(~context_mask[:, :, None, None], float("-inf"))
    attn = torch.softmax(x, dim=1)  # over the context fragments
    del x
    dot = logits.mul_(attn).sum(1)  # <query_q, attended_q>: (B, nq, Lq)
    flat = attn.view(b, lc, nq * lq)
    spread = torch.bmm(context_gram, flat).mul_(flat).sum(1)  # |attended_q|^2 = a^T G a
    norms = query_norms * spread.clamp_min_(0.0).sqrt_().view(b, nq, lq)
    relevance = dot.div_(norms.clamp_(min=COSINE_EPS))
    return aggregate(relevance, query_mask.expand_as(relevance), agg_func, lambda_lse)


__all__ = [
    "COSINE_EPS",
    "NORM_EPS",
    "AggFunc",
    "RawFeatureNorm",
    "aggregate",
    "block_scores",
    "explicit_scores",
    "normalise_logits",
]
