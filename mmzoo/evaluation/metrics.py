"""Retrieval evaluation by the protocol every image-text matching paper shares, plus a binding probe.

Protocol (VSE++/SCAN): the score matrix ``sims`` is (N_images, N_captions) with the captions of image
``i`` at columns ``i*cpi .. i*cpi + cpi - 1``.

* image -> text: the rank of image ``i`` is the best rank among its ``cpi`` captions;
* text -> image: the rank of caption ``j`` is the rank of image ``j // cpi``;
* R@K = percentage of queries with (0-based) rank < K; medr = floor(median rank) + 1;
  meanr = mean rank + 1 (both 1-based); rsum = the sum of the six recalls.

Ties: a query's rank (0-based) is the number of *wrong* candidates that score at least as high as the
best right one. This is deterministic and pessimistic: a model that gives every candidate the same
score ranks every query last instead of first (the reference code's ``argsort`` breaks ties by array
order, which can reward such a model). Without ties it equals the reference's rank.

COCO 1K (``fold5=True``) averages every metric over 5 folds of N/5 images with their captions and
computes rsum from the averaged recalls (the reference code prints 6 x the mean image->text recall as
its 5-fold rsum, a known bug not copied here).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import Tensor

from mmzoo.errors import InputError

logger = logging.getLogger(__name__)

RECALL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")
METRIC_KEYS = (
    "i2t_r1",
    "i2t_r5",
    "i2t_r10",
    "i2t_medr",
    "i2t_meanr",
    "t2i_r1",
    "t2i_r5",
    "t2i_r10",
    "t2i_medr",
    "t2i_meanr",
    "rsum",
)
BINDING_KEYS = ("bind_i2t", "bind_t2i")
#: score-matrix entries compared per step when ranking: bounds the temporary memory (~9 bytes per entry).
_ENTRIES_PER_STEP = 2**20


def _as_tensor(sims: Tensor | np.ndarray) -> Tensor:
    sims = torch.as_tensor(sims)
    if sims.dim() != 2:
        raise InputError(f"The score matrix must be 2-D (N_images, N_captions); got shape {tuple(sims.shape)}.")
    if not sims.is_floating_point():
        sims = sims.double()
    return sims


def _check_no_nan(block: Tensor) -> None:
    """NaN compares false with everything and would silently rank first; checked block by block (no full copy)."""
    if torch.isnan(block).any():
        raise InputError("The score matrix contains NaN; scores must be comparable numbers.")


def ranks(sims: Tensor | np.ndarray, captions_per_image: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """0-based ranks: (image->text ranks (N_images,), text->image ranks (N_captions,)), pessimistic on ties."""
    sims = _as_tensor(sims)
    n_img, n_cap = sims.shape
    cpi = captions_per_image
    if cpi < 1 or n_img == 0 or n_cap != n_img * cpi:
        raise InputError(
            f"A score matrix of {n_img} images needs {n_img} x {cpi} = {n_img * cpi} caption columns; got {n_cap}."
        )
    i2t = torch.empty(n_img, dtype=torch.long)
    rows = max(1, _ENTRIES_PER_STEP // n_cap)
    for a in range(0, n_img, rows):
        block = sims[a : a + rows]  # (b, n_cap)
        _check_no_nan(block)
        b = block.shape[0]
        rows_here, images_here = torch.arange(b, device=sims.device), torch.arange(a, a + b, device=sims.device)
        positives = block.reshape(b, -1, cpi)[rows_here, images_here]  # (b, cpi)
        best = positives.max(dim=1).values[:, None]
        i2t[a : a + b] = torch.count_nonzero(block >= best, dim=1) - torch.count_nonzero(positives >= best, dim=1)
    t2i = torch.empty(n_cap, dtype=torch.long)
    cols = max(1, _ENTRIES_PER_STEP // n_img)
    for a in range(0, n_cap, cols):
        block = sims[:, a : a + cols]  # (n_img, b)
        index = torch.arange(a, a + block.shape[1], device=sims.device)
        right = block[index // cpi, index - a]
        t2i[a : a + block.shape[1]] = torch.count_nonzero(block >= right[None, :], dim=0) - 1
    return i2t.numpy(), t2i.numpy()


def _summary(rank: np.ndarray, prefix: str) -> dict[str, float]:
    out = {f"{prefix}_r{k}": 100.0 * float((rank < k).mean()) for k in (1, 5, 10)}
    out[f"{prefix}_medr"] = float(math.floor(np.median(rank)) + 1)
    out[f"{prefix}_meanr"] = float(rank.mean() + 1)
    return out


def recall_metrics(sims: Tensor | np.ndarray, captions_per_image: int = 5) -> dict[str, float]:
    """R@1/5/10, median and mean rank both ways, and rsum, from an (N_images, N_captions) score matrix.

    Examples:
        >>> sims = torch.eye(2).repeat_interleave(5, dim=1)  # image i scores its 5 captions 1, others 0
        >>> recall_metrics(sims)["rsum"]
        600.0
    """
    i2t, t2i = ranks(sims, captions_per_image)
    out = {**_summary(i2t, "i2t"), **_summary(t2i, "t2i")}
    out["rsum"] = sum(out[k] for k in RECALL_KEYS)
    return {k: out[k] for k in METRIC_KEYS}


def average_folds(folds: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over folds; rsum recomputed from the averaged recalls."""
    if not folds:
        raise InputError("average_folds needs at least one fold.")
    out = {k: float(np.mean([f[k] for f in folds])) for k in folds[0] if k != "rsum"}
    out["rsum"] = sum(out[k] for k in RECALL_KEYS)
    return {**{k: out[k] for k in METRIC_KEYS}, **{k: v for k, v in out.items() if k not in METRIC_KEYS}}


def fold_bounds(num_images: int, folds: int = 5) -> list[tuple[int, int]]:
    """Image ranges of the folds: 5 x 1,000 on COCO's 5,000 test images."""
    if num_images % folds:
        raise InputError(f"5-fold evaluation needs a number of images divisible by {folds}; got {num_images}.")
    size = num_images // folds
    return [(f * size, (f + 1) * size) for f in range(folds)]


def recall_metrics_fold5(sims: Tensor | np.ndarray, captions_per_image: int = 5) -> dict[str, float]:
    """COCO 1K: :func:`recall_metrics` on each of 5 diagonal blocks, averaged (rsum from averaged recalls)."""
    sims = _as_tensor(sims)
    cpi = captions_per_image
    return average_folds([recall_metrics(sims[a:b, a * cpi : b * cpi], cpi) for a, b in fold_bounds(sims.shape[0])])


# -- binding probe -----------------------------------------------------------------------------------
def _wins(own: Tensor, other: Tensor) -> Tensor:
    """1 where own > other, 1/2 on an exact tie, 0 otherwise: chance is 50% and a bag of words scores 50%."""
    return (own > other).double() + 0.5 * (own == other).double()


def binding_probe(sims: Tensor | np.ndarray, twins: np.ndarray, captions_per_image: int = 5) -> dict[str, float]:
    """How often the right scene beats its swapped twin, in percent (50 = chance).

    ``twins[i]`` is the image whose scene has the same objects as image ``i`` with attributes or a
    relation swapped (-1 for none); caption ``k`` of the twin has the same bag of words as caption ``k``
    of ``i``. ``bind_t2i``: fraction of captions scoring higher with their own image than with its twin.
    ``bind_i2t``: fraction of (image, k) with ``s(image, own caption k) > s(image, twin's caption k)``.
    Exact ties count one half.

    Examples:
        >>> sims = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # 2 twin images, 1 caption each
        >>> binding_probe(sims, np.array([1, 0]), captions_per_image=1)
        {'bind_i2t': 100.0, 'bind_t2i': 100.0}
    """
    sims = _as_tensor(sims)
    cpi = captions_per_image
    twins = np.asarray(twins, dtype=np.int64)
    if twins.shape != (sims.shape[0],) or sims.shape[1] != sims.shape[0] * cpi:
        raise InputError(f"binding_probe needs one twin per image ({sims.shape[0]}) and {cpi} captions per image.")
    images = torch.from_numpy(np.flatnonzero(twins >= 0))
    if len(images) == 0:
        raise InputError("binding_probe: no image has a twin.")
    others = torch.from_numpy(twins)[images]
    offsets = torch.arange(cpi)
    own_caps = images[:, None] * cpi + offsets  # (n, cpi)
    twin_caps = others[:, None] * cpi + offsets
    own, other_image, other_caption = (
        sims[images[:, None], own_caps],
        sims[others[:, None], own_caps],
        sims[images[:, None], twin_caps],
    )
    for part in (own, other_image, other_caption):
        _check_no_nan(part)
    t2i = _wins(own, other_image)
    i2t = _wins(own, other_caption)
    return {"bind_i2t": 100.0 * float(i2t.mean()), "bind_t2i": 100.0 * float(t2i.mean())}


def binding_by_type(
    sims: Tensor | np.ndarray, twins: np.ndarray, types: list[str], captions_per_image: int = 5, *, i2t: bool = True
) -> dict[str, float]:
    """:func:`binding_probe` of each kind of twin pair: ``bind_t2i_{type}`` (and ``bind_i2t_{type}``) per type.

    ``types[i]`` says what image ``i`` and its twin differ in (``colour``, ``size``, ``position``, ...); a model
    may bind colours and miss positions, which the overall number hides. ``i2t=False`` leaves the image->text
    numbers out (where the twins' captions are not word permutations of each other, :func:`captions_permute`).

    Example:
        >>> sims = torch.tensor([[1.0, 0.0, 0, 0], [0.0, 1.0, 0, 0], [0, 0, 0.0, 1.0], [0, 0, 1.0, 0.0]])
        >>> binding_by_type(sims, np.array([1, 0, 3, 2]), ["colour"] * 2 + ["position"] * 2, 1)
        {'bind_i2t_colour': 100.0, 'bind_t2i_colour': 100.0, 'bind_i2t_position': 0.0, 'bind_t2i_position': 0.0}
    """
    twins = np.asarray(twins, dtype=np.int64)
    if len(types) != len(twins):
        raise InputError(f"binding_by_type needs one type per image ({len(twins)}); got {len(types)}.")
    out: dict[str, float] = {}
    kinds = np.asarray(types, dtype=object)
    for kind in sorted({t for t, twin in zip(types, twins.tolist(), strict=True) if twin >= 0}):
        these = np.where((kinds == kind) & (twins >= 0), twins, -1)
        probe = binding_probe(sims, these, captions_per_image)
        for key in ("bind_i2t", "bind_t2i") if i2t else ("bind_t2i",):
            out[f"{key}_{kind}"] = probe[key]
    return out


def captions_permute(captions: list[str], twins: np.ndarray, captions_per_image: int = 5) -> bool:
    """True when caption ``k`` of every image's twin is a word permutation of the image's caption ``k``: the
    assumption that makes ``bind_i2t`` a binding probe (a bag-of-words model then scores 50%). Elsewhere an
    image->text "twin win" can come from words alone, and ``bind_i2t`` measures no binding.

    Example:
        >>> captions_permute(["a red circle", "a circle red"], np.array([1, 0]), 1)
        True
        >>> captions_permute(["a red circle", "a blue circle"], np.array([1, 0]), 1)
        False
    """
    cpi = captions_per_image
    for i in np.flatnonzero(np.asarray(twins) >= 0).tolist():
        t = int(twins[i])
        for k in range(cpi):
            if sorted(captions[i * cpi + k].split()) != sorted(captions[t * cpi + k].split()):
                return False
    return True


__all__ = [
    "BINDING_KEYS",
    "METRIC_KEYS",
    "RECALL_KEYS",
    "average_folds",
    "binding_by_type",
    "binding_probe",
    "captions_permute",
    "fold_bounds",
    "ranks",
    "recall_metrics",
    "recall_metrics_fold5",
]
