"""The training score matrix, with all in-batch pairs fused or only the cheap-ranked hard candidates.

A fused model scores a pair as ``S = dual_weight * <i0, c0> + alpha * fused``; the fused term is a forward pass per
pair, so mining among all B x B pairs costs B^2 passes. With ``hard_negatives = h`` the fused term is
computed only for the *candidate* pairs:

* every positive (the diagonal);
* for each image anchor (row) the h captions with the highest cheap score ``<i0, c0>`` (the cheap score is the
  cosine of the pooled embeddings whatever ``dual_weight`` is);
* for each caption anchor (column) the h images with the highest cheap score.

The candidates of all anchors form one set; a candidate is a negative for both its image and its caption.
Every other pair gets the score ``-inf``: its hinge ``[margin + S_neg - S_pos]_+`` is exactly 0, so it is
never a hardest negative and adds nothing to a sum of hinges (warm-up epochs sum only over candidates).
With ``h >= B - 1`` every pair is a candidate and the matrix equals the ``"all"`` one.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from mmzoo.contracts import Fragments
from mmzoo.model import MatchingModel


def candidate_mask(cheap: Tensor, h: int, diagonal_offset: int = 0) -> Tensor:
    """Bool (N_img, N_txt): positives plus each row's and each column's top-h negatives by ``cheap``.

    ``cheap`` is the full (global) score matrix; positive n sits at (n, n + diagonal_offset) for
    square matrices (offset 0).
    """
    n_img, n_txt = cheap.shape
    eye = torch.zeros_like(cheap, dtype=torch.bool)
    idx = torch.arange(min(n_img, n_txt), device=cheap.device)
    eye[idx, idx + diagonal_offset] = True
    ranked = cheap.detach().masked_fill(eye, float("-inf"))
    mask = eye.clone()
    h_row, h_col = min(h, n_txt - 1), min(h, n_img - 1)
    if h_row > 0:
        mask.scatter_(1, ranked.topk(h_row, dim=1).indices, True)
    if h_col > 0:
        mask.scatter_(0, ranked.topk(h_col, dim=0).indices, True)
    return mask


def fused_pairs(model: MatchingModel, images: Fragments, texts: Fragments, img_idx: Tensor, txt_idx: Tensor) -> Tensor:
    """Fused scores of the pairs (images[img_idx[p]], texts[txt_idx[p]]), differentiable: the fusion block's
    declared ``score_pairs_indexed`` (chunks of ``score_pairs`` unless the block prepares each item once)."""
    return model.fusion.score_pairs_indexed(images, texts, img_idx, txt_idx)


def score_rows(
    model: MatchingModel,
    images: Fragments,
    texts: Fragments,
    hard_negatives: Literal["all"] | int = "all",
    candidates: Tensor | None = None,
) -> Tensor:
    """Training scores of ``images`` (rows) against ``texts`` (columns).

    Args:
        model: the matching model (its fusion block and alpha).
        images: the row images (all of the batch, or one process's share of a global batch).
        texts: the column captions.
        hard_negatives: ``"all"`` or h; with h, pairs outside ``candidates`` score ``-inf``.
        candidates: bool (rows, columns) mask of the pairs to fuse; computed from the cheap scores of
            these rows when omitted (single process, square batch).

    Returns:
        (len(images), len(texts)) float scores.
    """
    cheap = images.pooled @ texts.pooled.t()
    if not model.uses_fusion:
        return cheap
    dual = cheap if model.dual_weight == 1.0 else model.dual_weight * cheap
    if hard_negatives == "all":
        return dual + model.alpha * model.fusion(images, texts)
    if candidates is None:
        candidates = candidate_mask(cheap, int(hard_negatives))
    if bool(candidates.all()):  # every pair is a candidate (h >= B - 1): the dense path, exactly the "all" scores
        return dual + model.alpha * model.fusion(images, texts)
    img_idx, txt_idx = candidates.nonzero(as_tuple=True)  # row-major, the order fusion.forward uses
    fused = fused_pairs(model, images, texts, img_idx, txt_idx)
    fused_full = cheap.new_zeros(cheap.shape).index_put((img_idx, txt_idx), fused.to(cheap.dtype))
    return (dual + model.alpha * fused_full).masked_fill(~candidates, float("-inf"))


__all__ = ["candidate_mask", "fused_pairs", "score_rows"]
