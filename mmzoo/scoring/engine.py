"""The pair-scoring engine: a fusion block's scores over many images x captions, in bounded memory.

A fusion block scores image-caption *pairs*; evaluating N images against M captions costs N x M of
its forward passes. This module is the model-agnostic part of making that affordable:

* **caching**: it asks the block to ``prepare_images`` / ``prepare_texts`` once (per-image and
  per-caption work, e.g. projections and intra-modality attention) and then calls
  ``score_prepared`` on blocks of the caches (see :class:`mmzoo.plugin.FusionBlock`);
* **bounded memory**: blocks hold at most ``fusion.pairs_per_block`` pairs, and caches are built one
  outer block at a time, so scoring 5,000 x 25,000 pairs never holds more than one block of pair
  activations;
* **precision**: everything runs under ``torch.inference_mode``, in bfloat16 autocast on a GPU and in
  float32 on the CPU (``precision=``);
* **less padding**: rows are sorted by their number of valid fragments, so a block's padded length
  is close to its real length.

Retrieval on top of it (shortlist and rerank) is :mod:`mmzoo.scoring.search`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor

from mmzoo.contracts import Fragments, FusionBlock, FusionCache
from mmzoo.devices import DTYPES, precision_name
from mmzoo.errors import InputError

#: the one precision vocabulary (mmzoo.devices.PRECISIONS); training's old "off" is accepted as fp32.
Precision = Literal["auto", "fp32", "bf16", "fp16"]


def compute_dtype(device: torch.device | str, precision: Precision = "auto") -> torch.dtype:
    """The dtype the engine computes in: bfloat16 on a GPU and float32 on the CPU for ``"auto"``."""
    precision = precision_name(precision, "precision", InputError)
    if precision == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    return DTYPES[precision]


@contextlib.contextmanager
def scoring_mode(device: torch.device | str, precision: Precision = "auto") -> Iterator[None]:
    """``torch.inference_mode`` plus autocast to the engine's dtype (nothing extra for float32)."""
    dtype = compute_dtype(device, precision)
    device_type = torch.device(device).type
    with torch.inference_mode():
        if dtype == torch.float32:
            yield
        else:
            with torch.autocast(device_type, dtype=dtype):
                yield


def _length_order(fragments: Fragments) -> Tensor:
    """Row order by number of valid fragments, so each block's padded length is close to its real one."""
    return torch.argsort(fragments.mask.sum(1), stable=True)


def _block_shape(n_images: int, n_texts: int, pairs: int) -> tuple[int, int]:
    """A near-square block of at most ``pairs`` pairs (images x texts) that fits the two sides."""
    pairs = max(int(pairs), 1)
    rows = max(1, min(n_images, math.isqrt(pairs)))
    cols = max(1, min(n_texts, pairs // rows))
    rows = max(1, min(n_images, pairs // cols))
    return rows, cols


def score_caches(
    fusion: FusionBlock,
    image_cache: FusionCache,
    text_cache: FusionCache,
    pairs_per_block: int | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """Fused scores (n_images, n_texts) of two prepared caches, one bounded block of pairs at a time.

    Must run inside :func:`scoring_mode` (or any no-grad context); ``out`` receives the scores in place.
    """
    n_img, n_txt = len(image_cache), len(text_cache)
    rows, cols = _block_shape(n_img, n_txt, pairs_per_block or fusion.pairs_per_block)
    if out is None:
        out = torch.empty(n_img, n_txt, dtype=torch.float32, device=image_cache.device)
    for i in range(0, n_img, rows):
        img = image_cache[i : i + rows]
        for j in range(0, n_txt, cols):
            out[i : i + rows, j : j + cols] = fusion.score_prepared(img, text_cache[j : j + cols])
    return out


def fused_matrix(
    fusion: FusionBlock,
    images: Fragments,
    texts: Fragments,
    block_size: int = 256,
    pairs_per_block: int | None = None,
    precision: Precision = "auto",
) -> Tensor:
    """The fusion block's full (N_images, N_texts) score matrix through the engine, float32.

    Caches are prepared one outer block (``block_size`` images, ``block_size`` captions) at a time, and
    each outer block is scored in inner blocks of at most ``pairs_per_block`` pairs (default: the
    block's own ``pairs_per_block``), so memory is bounded whatever N and M are.

    Examples:
        >>> fused = fused_matrix(model.fusion, images, texts)  # doctest: +SKIP
    """
    if block_size < 1:
        raise InputError(f"block_size must be at least 1; got {block_size}.")
    device = images.features.device
    img_order, txt_order = _length_order(images), _length_order(texts)
    images, texts = images[img_order], texts[txt_order]
    out = torch.empty(len(images), len(texts), dtype=torch.float32, device=device)
    with scoring_mode(device, precision):
        for i in range(0, len(images), block_size):
            image_cache = fusion.prepare_images(images[i : i + block_size])
            for j in range(0, len(texts), block_size):
                text_cache = fusion.prepare_texts(texts[j : j + block_size])
                view = out[i : i + block_size, j : j + block_size]
                score_caches(fusion, image_cache, text_cache, pairs_per_block, out=view)
    result = torch.empty_like(out)
    result[img_order[:, None], txt_order[None, :]] = out
    return result


def score_pairs(
    fusion: FusionBlock,
    image_cache: FusionCache,
    text_cache: FusionCache,
    image_idx: Tensor,
    text_idx: Tensor,
    pairs_per_block: int | None = None,
) -> Tensor:
    """Fused scores (P,) of the listed pairs of two prepared caches, a bounded block at a time."""
    step = pairs_per_block or fusion.pairs_per_block
    parts = [
        fusion.score_prepared_pairs(image_cache, text_cache, image_idx[s : s + step], text_idx[s : s + step]).float()
        for s in range(0, len(image_idx), step)
    ]
    return torch.cat(parts) if parts else torch.empty(0, device=image_idx.device)


__all__ = [
    "Precision",
    "compute_dtype",
    "fused_matrix",
    "score_caches",
    "score_pairs",
    "scoring_mode",
]
