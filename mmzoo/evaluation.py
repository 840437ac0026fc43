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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from mmzoo.contracts import Fragments
from mmzoo.errors import InputError

if TYPE_CHECKING:
    from mmzoo.data.precomputed import PrecomputedDataset
    from mmzoo.model import MatchingModel

logger = logging.getLogger("mmzoo.evaluation")

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

    Example:
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

    Example:
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


# -- models ------------------------------------------------------------------------------------------
def _device(model: MatchingModel, device: torch.device | str | None) -> torch.device:
    if device is not None:
        model.to(device)
    return model.device


def _pooled_only(frags: Fragments) -> Fragments:
    """The pooled vectors as one-fragment Fragments: what a model without fused term scores with."""
    pooled = frags.pooled
    return Fragments(pooled[:, None, :], torch.ones(len(pooled), 1, dtype=torch.bool, device=pooled.device), pooled)


@torch.inference_mode()
def encode_dataset(
    model: MatchingModel,
    dataset: PrecomputedDataset,
    *,
    batch_size: int = 128,
    device: torch.device | str | None = None,
    progress: bool = True,
    keep_fragments: bool | None = None,
) -> tuple[Fragments, Fragments]:
    """Encode each unique image once and every caption: (image Fragments, caption Fragments), on the CPU.

    ``keep_fragments`` (default: only when the model has a fused term) keeps the per-region and per-word
    features; otherwise each Fragments keeps just its pooled vector (as a single fragment), which is all a
    cosine-only model scores with: COCO 5K's caption fragments alone would take 3.3 GB at d = 1024.

    Example:
        >>> images, texts = encode_dataset(model, PrecomputedDataset("data/shapes", "test"))  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1; got {batch_size}.")
    _check_dims(model, dataset)
    device = _device(model, device)
    model.eval()
    keep = model.uses_fusion if keep_fragments is None else keep_fragments
    shrink = (lambda f: f) if keep else _pooled_only
    image_parts, text_parts = [], []
    n_img = dataset.num_images
    for a in tqdm(range(0, n_img, batch_size), desc="encode images", disable=not progress, unit="batch"):
        feats = torch.from_numpy(dataset.image_features(np.arange(a, min(a + batch_size, n_img))))
        image_parts.append(shrink(model.encode_images(feats.to(device))).to("cpu"))
    caps = dataset.captions
    for a in tqdm(range(0, len(caps), batch_size), desc="encode captions", disable=not progress, unit="batch"):
        text_parts.append(shrink(model.encode_texts(caps[a : a + batch_size])).to("cpu"))
    return Fragments.cat(image_parts), Fragments.cat(text_parts)


@torch.inference_mode()
def score_matrix(
    model: MatchingModel,
    images: Fragments,
    texts: Fragments,
    *,
    block_size: int = 1024,
    progress: bool = False,
) -> Tensor:
    """The (N_images, N_texts) score matrix on the CPU, one (block_size x block_size) block at a time.

    Only one block of fragments is on the model's device at once, so scoring 5,000 x 25,000 pairs needs
    the memory of a block (plus the float32 result on the host).
    """
    from tqdm.auto import tqdm

    device = model.device
    out = torch.empty(len(images), len(texts), dtype=torch.float32)
    blocks = [(i, j) for i in range(0, len(images), block_size) for j in range(0, len(texts), block_size)]
    for i, j in tqdm(blocks, desc="score", disable=not progress, unit="block"):
        img = images[i : i + block_size].to(device)
        txt = texts[j : j + block_size].to(device)
        out[i : i + block_size, j : j + block_size] = model.similarity(img, txt).float().cpu()
    return out


def _check_dims(model: MatchingModel, dataset: PrecomputedDataset) -> None:
    expected = getattr(model.visual, "input_dim", None)
    if expected is not None and expected != dataset.region_dim:
        raise InputError(
            f"The model expects region features of size {expected} (visual.in_dim) but {dataset.features_path} "
            f"holds size {dataset.region_dim}: evaluate on data of the kind the model was trained on."
        )


@torch.inference_mode()
def twin_scores(model: MatchingModel, images: Fragments, texts: Fragments, twins: np.ndarray, cpi: int) -> Tensor:
    """A score matrix filled only where :func:`binding_probe` reads it (image/twin x their captions); NaN-free.

    Used with ``fold5``, when no full score matrix exists.
    """
    out = torch.zeros(len(images), len(texts), dtype=torch.float32)
    device = model.device
    for i in np.flatnonzero(twins >= 0):
        t = int(twins[i])
        if t < i:
            continue
        idx = torch.tensor([i, t])
        caps = torch.cat([torch.arange(i * cpi, (i + 1) * cpi), torch.arange(t * cpi, (t + 1) * cpi)])
        block = model.similarity(images[idx].to(device), texts[caps].to(device)).float().cpu()
        out[idx[:, None], caps[None, :]] = block
    return out


def evaluate(
    model: MatchingModel,
    dataset: PrecomputedDataset,
    *,
    fold5: bool = False,
    batch_size: int = 128,
    device: torch.device | str | None = None,
    progress: bool = True,
    block_size: int = 1024,
) -> dict[str, Any]:
    """Encode ``dataset``, score every image against every caption, and return the recall metrics.

    With ``fold5`` (COCO 1K) only the 5 diagonal blocks are scored and the metrics are averaged over
    them. When the split has twins (the shapes test split), ``bind_i2t`` and ``bind_t2i`` are added.

    Example:
        >>> metrics = evaluate(model, PrecomputedDataset("data/shapes", "test"))  # doctest: +SKIP
        >>> metrics["rsum"], metrics["bind_t2i"]  # doctest: +SKIP
    """
    bounds = fold_bounds(dataset.num_images) if fold5 else []  # fail before the (long) encoding
    twins = dataset.twins if dataset.twins is not None and (dataset.twins >= 0).any() else None
    images, texts = encode_dataset(model, dataset, batch_size=batch_size, device=device, progress=progress)
    cpi = dataset.captions_per_image
    if fold5:
        logger.info("5-fold evaluation: 5 folds of %d images", dataset.num_images // 5)
        folds = []
        for a, b in bounds:
            sims = score_matrix(model, images[a:b], texts[a * cpi : b * cpi], block_size=block_size, progress=progress)
            folds.append(recall_metrics(sims, cpi))
        metrics: dict[str, Any] = average_folds(folds)
        full = twin_scores(model, images, texts, twins, cpi) if twins is not None else None
    else:
        full = score_matrix(model, images, texts, block_size=block_size, progress=progress)
        metrics = recall_metrics(full, cpi)
    if twins is not None:
        metrics.update(binding_probe(full, twins, cpi))
    return metrics


__all__ = [
    "BINDING_KEYS",
    "METRIC_KEYS",
    "RECALL_KEYS",
    "average_folds",
    "binding_probe",
    "encode_dataset",
    "evaluate",
    "fold_bounds",
    "ranks",
    "recall_metrics",
    "recall_metrics_fold5",
    "score_matrix",
    "twin_scores",
]
