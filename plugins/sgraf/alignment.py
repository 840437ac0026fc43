"""The similarity representation of SGRAF, for a whole block of images x captions at once.

Their ``EncoderSimilarity.forward`` loops over captions in Python; for caption c with words W_c (n_c, d) and
every image's regions V_i (k, d) it computes:

* **local alignments** (one per word): SCAN-style text-to-image attention
  ``A = l2norm_over_words(LeakyReLU_0.1(V_i W_c^T))``, ``a_w = softmax_over_regions(9 A[:, w])``, the attended
  region vector ``v_w = l2norm(sum_r a_w[r] V_i[r])``, then ``l2norm(FC_loc((v_w - w)^2))``;
* **the global alignment**: ``l2norm(FC_glo((g_i - g_c)^2))`` from the self-attention-pooled image and
  caption vectors;
* the nodes ``[global; local_1 .. local_n]`` (n + 1, s) that SGR or SAF reduce to one vector.

Here the word-region products of a block are one matrix product per image (``(k, d) x (d, m L)`` for m
captions of padded length L), the attention and the squared-difference maps run on (images, captions, words)
tensors, and padded words and regions are masked exactly where their loop slices them away. The same code
serves aligned pairs (image p with caption p): then "m captions" is one caption per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmzoo_plugins.sgraf.ops import EPS, l2norm


def attend_regions(
    regions: Tensor, region_mask: Tensor, logits: Tensor, word_mask: Tensor, smooth: float, fast: bool = False
) -> Tensor:
    """Attended region vector of every word, L2-normalised.

    Args:
        regions: (n, k, d) the images' regions (zero at padding).
        region_mask: (n, k) bool.
        logits: (n, k, m, L) region-word products of image i with the words of its m captions.
        word_mask: broadcastable to (n, 1, m, L) bool.
        smooth: the softmax temperature (their 9.0).
        fast: normalise through the image's Gram matrix: ``|sum_r a_r v_r|^2 = a^T (V V^T) a`` costs k^2 per
            word instead of d, and the attention weights are scaled before the product, so the (m L, d)
            result is never traversed again (no autograd needed: the scoring engine).

    Returns:
        (n, m * L, d) the attended vector of each word of each of the m captions.
    """
    n, k, m, length = logits.shape
    attn = F.leaky_relu(logits, 0.1).masked_fill(~word_mask, 0.0)
    attn = l2norm(attn, dim=-1)  # over a caption's words, per region
    attn = attn.masked_fill(~region_mask[:, :, None, None], float("-inf"))
    weights = torch.softmax(attn * smooth, dim=1).reshape(n, k, m * length).transpose(1, 2)  # (n, m L, k)
    if not fast:
        return l2norm(weights @ regions)  # (n, m L, d)
    gram = regions @ regions.transpose(1, 2)  # (n, k, k)
    norm = ((weights @ gram) * weights).sum(-1, keepdim=True).clamp_min(0).sqrt_()
    return (weights / norm.add_(EPS)) @ regions


def local_nodes(
    fc: nn.Linear,
    regions: Tensor,
    region_mask: Tensor,
    words: Tensor,
    word_mask: Tensor,
    smooth: float,
    dense: bool,
    fast: bool = False,
) -> Tensor:
    """Local alignment vectors, ``l2norm(FC((attended - word)^2))``.

    Args:
        fc: their ``sim_tranloc_w``.
        regions, region_mask: (n, k, d), (n, k) the images.
        words, word_mask: (m, L, d), (m, L) the captions; with ``dense=False`` m == n and caption p pairs
            with image p only.
        smooth: the attention temperature.
        dense: every image with every caption (True) or aligned pairs (False).
        fast: the engine's arithmetic (see :func:`attend_regions`), in place where autograd is not needed.

    Returns:
        (n, m, L, s) for a dense block, (n, 1, L, s) for pairs.
    """
    m, length, d = words.shape
    if dense:
        logits = (regions @ words.reshape(m * length, d).t()).view(-1, regions.shape[1], m, length)
        attended = attend_regions(regions, region_mask, logits, word_mask[None, None], smooth, fast)
        attended = attended.view(-1, m, length, d)
        diff = attended.sub_(words) if fast else attended - words
    else:
        logits = (regions @ words.transpose(1, 2)).unsqueeze(2)  # (P, k, 1, L)
        attended = attend_regions(regions, region_mask, logits, word_mask[:, None, None], smooth, fast)
        diff = (attended.sub_(words) if fast else attended - words).unsqueeze(1)
    return l2norm(fc(diff.pow_(2) if fast else diff.pow(2)))


def global_node(fc: nn.Linear, image_glo: Tensor, caption_glo: Tensor, dense: bool) -> Tensor:
    """``l2norm(FC((g_image - g_caption)^2))``: (n, m, s) dense, (P, 1, s) for pairs."""
    diff = image_glo[:, None] - caption_glo[None] if dense else (image_glo - caption_glo).unsqueeze(1)
    return l2norm(fc(diff.pow(2)))


def similarity_nodes(
    tranloc: nn.Linear,
    tranglo: nn.Linear,
    regions: Tensor,
    region_mask: Tensor,
    image_glo: Tensor,
    words: Tensor,
    word_mask: Tensor,
    caption_glo: Tensor,
    smooth: float,
    dense: bool,
    fast: bool = False,
) -> tuple[Tensor, Tensor]:
    """The nodes ``[global; locals]`` (n, m, 1 + L, s) and their mask (1 or n, m, 1 + L)."""
    loc = local_nodes(tranloc, regions, region_mask, words, word_mask, smooth, dense, fast)
    glo = global_node(tranglo, image_glo, caption_glo, dense)
    nodes = torch.cat([glo.unsqueeze(-2), loc], dim=-2)
    first = word_mask.new_ones(word_mask.shape[0], 1)
    node_mask = torch.cat([first, word_mask], dim=-1)
    return nodes, node_mask[None] if dense else node_mask[:, None]
