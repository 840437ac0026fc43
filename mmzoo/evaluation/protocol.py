"""Evaluating a model on a dataset split: encode every image once and every caption, score, rank.

One batched encoding loop (:func:`encode_images`, :func:`encode_captions`) serves evaluation, the sharded dev
evaluation of training and search. Scoring goes block by block (:func:`score_matrix`), so only one block of
fragments is on the device at a time; the float32 result is on the host.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmzoo.contracts import Split
from mmzoo.data.guard import check_feature_facts
from mmzoo.errors import InputError, MMZooWarning
from mmzoo.evaluation.metrics import (
    METRIC_KEYS,
    RECALL_KEYS,
    average_folds,
    binding_by_type,
    binding_probe,
    captions_permute,
    fold_bounds,
    recall_metrics,
)
from mmzoo.model import Ensemble, MatchingModel
from mmzoo.scoring import Precision, rerank_rankings, shortlist_recall

logger = logging.getLogger(__name__)

Model = MatchingModel | Ensemble


def _cat(parts: list[Any]) -> Any:
    return type(parts[0]).cat(parts)


@torch.inference_mode()
def encode_images(
    model: Model, split: Split, indices: Sequence[int] | None = None, *, batch_size: int = 128, progress: bool = False
) -> Any:
    """Encode the split's images (all, or ``indices``) in batches -> their fragments on the CPU, compacted."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1; got {batch_size}.")
    indices = np.arange(split.num_images) if indices is None else np.asarray(indices, dtype=np.int64)
    device, parts = model.device, []
    for a in tqdm(range(0, len(indices), batch_size), desc="encode images", disable=not progress, unit="batch"):
        if split.pixels:  # raw images (mmzoo.data.open_image_split): the model preprocesses them itself
            frags = model.encode_images(split.load_images(indices[a : a + batch_size]))
        else:
            features, mask = split.image_features(indices[a : a + batch_size])
            frags = model.encode_images(torch.from_numpy(features).to(device), torch.from_numpy(mask).to(device))
        parts.append(model.compact(frags).to("cpu"))
    if not parts:
        raise InputError("encode_images got no images to encode.")
    return _cat(parts)


@torch.inference_mode()
def encode_captions(
    model: Model,
    captions: Sequence[str],
    *,
    batch_size: int = 128,
    progress: bool = False,
    keep_on_device: bool = False,
) -> Any:
    """Encode captions in batches -> their fragments, compacted: on the CPU (evaluation scores them block by block,
    moving one block at a time to the device), or with ``keep_on_device`` on the model's device, beside the images
    ``model.encode_images`` returns there (search scores them all at once)."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1; got {batch_size}.")
    parts = []
    for a in tqdm(range(0, len(captions), batch_size), desc="encode captions", disable=not progress, unit="batch"):
        frags = model.compact(model.encode_texts(list(captions[a : a + batch_size])))
        parts.append(frags if keep_on_device else frags.to("cpu"))
    if not parts:
        raise InputError("encode_captions got no captions to encode.")
    return _cat(parts)


@torch.no_grad()
def encode_folder(model: Model, paths: Sequence[str | Path], batch_size: int = 32) -> Any:
    """Image files -> their fragments on the model's device, a batch at a time, read and preprocessed with the
    model's own settings (its visual encoder must take pixels): what ``mmzoo search`` and a server encode.

    Example:
        >>> images = encode_folder(model, mmzoo.data.ImageFolder("photos").paths)  # doctest: +SKIP
    """
    from torch.utils.data import DataLoader

    from mmzoo.data.images import ImageFolder, collate_images

    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1; got {batch_size}.")
    if not paths:
        raise InputError("encode_folder got no image files to encode.")
    folder = ImageFolder([Path(p) for p in paths], transform=model.visual.transform())
    loader = DataLoader(folder, batch_size, collate_fn=collate_images)
    return _cat([model.encode_images(pixels) for pixels, _ in loader])


def encode_split(
    model: Model,
    split: Split,
    *,
    batch_size: int = 128,
    device: torch.device | str | None = None,
    progress: bool = True,
    strict_features: bool = False,
) -> tuple[Any, Any]:
    """Encode each image of ``split`` once and every caption: (image fragments, caption fragments), on the CPU.

    The split's features are checked against those the model was trained on (:func:`check_features`).

    Examples:
        >>> images, texts = encode_split(model, mmzoo.data.open_split("data/shapes", "test"))  # doctest: +SKIP
    """
    check_dims(model, split)
    check_features(model, split, strict=strict_features)
    if device is not None:
        model.to(device)
    model.eval()
    images = encode_images(model, split, batch_size=batch_size, progress=progress)
    return images, encode_captions(model, split.captions, batch_size=batch_size, progress=progress)


@torch.inference_mode()
def score_matrix(
    model: Model,
    images: Any,
    texts: Any,
    *,
    block_size: int = 1024,
    progress: bool = False,
    shard: bool = False,
    precision: Precision = "auto",
) -> Tensor:
    """The (N_images, N_texts) score matrix on the CPU, one (block_size x block_size) block at a time.

    Only one block of fragments is on the model's device at once, so scoring 5,000 x 25,000 pairs needs
    the memory of a block (plus the float32 result on the host). With ``shard`` inside a process group of
    several processes (``torchrun``), each process scores its contiguous share of the image rows and the rows
    are gathered, so every process returns the whole matrix and the fused work is split N ways; every process
    of the group must then call it with the same items.
    """
    from tqdm.auto import tqdm

    device = model.device
    rank, world = _group() if shard else (0, 1)
    share = -(-len(images) // world)  # rows per process (the last may hold fewer)
    start, stop = min(rank * share, len(images)), min((rank + 1) * share, len(images))
    out = torch.zeros(stop - start, len(texts), dtype=torch.float32)
    blocks = [(i, j) for i in range(start, stop, block_size) for j in range(0, len(texts), block_size)]
    for i, j in tqdm(blocks, desc="score", disable=not progress, unit="block"):
        img = images[i : min(i + block_size, stop)].to(device)
        txt = texts[j : j + block_size].to(device)
        out[i - start : i - start + len(img), j : j + block_size] = (
            model.similarity(img, txt, precision=precision).float().cpu()
        )
    return out if world == 1 else _gather_rows(out, share, device)[: len(images)]


def _group() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _gather_rows(rows: Tensor, share: int, device: torch.device) -> Tensor:
    """Every process's rows, padded to ``share``, concatenated in rank order (on the CPU)."""
    padded = torch.zeros(share, rows.shape[1], dtype=rows.dtype, device=device)
    padded[: len(rows)] = rows.to(device)
    parts = [torch.empty_like(padded) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, padded)
    return torch.cat(parts).cpu()


def warn_if_constant(sims: Tensor, what: str = "score matrix") -> None:
    """Warn when the scores cannot tell the images (or the captions) apart: a collapsed model or constant features.

    Tied candidates rank last (pessimistic ties), so such a model's recalls are those of ranking nothing.
    """
    if sims.shape[0] < 2 or sims.shape[1] < 2:
        return
    scale = 1e-6 * max(1.0, float(sims.abs().max()))
    images_tied = float((sims.max(0).values - sims.min(0).values).max()) <= scale
    captions_tied = float((sims.max(1).values - sims.min(1).values).max()) <= scale
    if not (images_tied or captions_tied):
        return
    if images_tied and captions_tied:
        problem = f"Every entry of the {what} is the same ({float(sims.flatten()[0]):.6g})"
    elif images_tied:
        problem = f"Every image gets the same score against each caption in the {what}"
    else:
        problem = f"Every caption gets the same score against each image in the {what}"
    warnings.warn(
        f"{problem}: the model has collapsed or the features are constant, so it cannot rank them (ties rank "
        "last). Check the data and the training run's warnings.",
        MMZooWarning,
        stacklevel=3,
    )


def check_features(model: Model, split: Split, *, strict: bool = False, name: str = "The model") -> None:
    """The extractor guard: warn (or, ``strict``, raise a DataError) when the split's features are not those the
    model (each member of an ensemble) was trained on, by its recorded feature facts and the split's manifest."""
    members = model.members if isinstance(model, Ensemble) else [model]
    for member in members:
        trained = member.extra_config.get("features")
        if trained:
            check_feature_facts(trained, split.manifest, strict=strict, model=name, dataset=f"the {split.name} split")


def check_dims(model: Model, split: Split) -> None:
    expected = model.input_dim
    if split.pixels:
        members = model.members if isinstance(model, Ensemble) else [model]
        if not all(m.visual.takes_pixels for m in members):
            raise InputError(
                f"The model takes region features, but the {split.name} split holds images: evaluate a model that "
                "reads pixels, or extract features first (`mmzoo extract-features`)."
            )
        return
    if expected is not None and expected != split.region_dim:
        raise InputError(
            f"The model expects region features of size {expected} (visual.in_dim) but the {split.name} split holds "
            f"size {split.region_dim}: evaluate on data of the kind the model was trained on."
        )


@torch.inference_mode()
def twin_scores(
    model: Model, images: Any, texts: Any, twins: np.ndarray, cpi: int, precision: Precision = "auto"
) -> Tensor:
    """A score matrix filled only where :func:`binding_probe` reads it (image/twin x their captions); NaN-free.

    Used with ``fold5`` or reranking, when no full score matrix exists.
    """
    out = torch.zeros(len(images), len(texts), dtype=torch.float32)
    device = model.device
    for i in np.flatnonzero(twins >= 0):
        t = int(twins[i])
        if t < i:
            continue
        idx = torch.tensor([i, t])
        caps = torch.cat([torch.arange(i * cpi, (i + 1) * cpi), torch.arange(t * cpi, (t + 1) * cpi)])
        block = model.similarity(images[idx].to(device), texts[caps].to(device), precision=precision).float().cpu()
        out[idx[:, None], caps[None, :]] = block
    return out


def split_twins(split: Split) -> np.ndarray | None:
    """The split's twin table when at least one image has a twin, else None: the binding probe needs a twin.

    A split without a table has none, and ``max_images`` can cut off every image's twin (its entry becomes -1);
    every evaluation path skips the probe then, rather than fail in :func:`binding_probe`.
    """
    twins = split.twins
    return twins if twins is not None and bool((twins >= 0).any()) else None


def evaluate(
    model: Model,
    split: Split,
    *,
    fold5: bool = False,
    rerank: int | None = None,
    shortlist: Model | None = None,
    probe: bool | str = True,
    batch_size: int = 128,
    device: torch.device | str | None = None,
    progress: bool = True,
    block_size: int = 1024,
    strict_features: bool = False,
    shard: bool = False,
    precision: Precision = "auto",
) -> dict[str, Any]:
    """Encode ``split``, score it, and return the recall metrics: the one evaluation of ``mmzoo eval``, the
    trainer's dev evaluation and the benchmarks.

    Args:
        model: a MatchingModel or an Ensemble.
        split: the split to evaluate (``mmzoo.data.open_split``).
        fold5: COCO 1K: the metrics of 5 folds of N/5 images, averaged (rsum from the averaged recalls).
        rerank: shortlist-and-rerank retrieval: the cheap ``<i0, c0>`` score keeps ``rerank`` candidates per
            query and only those get the full score; adds the shortlist recall (:func:`rerank_metrics`).
            None scores every pair.
        shortlist: with ``rerank``, another model (a dual encoder, say) whose cheap score shortlists.
        probe: add the binding probe when the split has twins (``bind_t2i``, and ``bind_i2t`` where the twins'
            captions are word permutations of each other); ``"by_type"``: also per twin type
            (``bind_t2i_position``, ...) when the split records what each twin pair differs in; False: none.
        shard: inside a ``torchrun`` group, split the exhaustive scoring across the processes
            (:func:`score_matrix`); every process gets the same metrics. Reranking runs whole in each.
        precision: the engine's (``"auto"``: bfloat16 on a GPU; ``"fp32"`` reproduces float32 numbers).

    Examples:
        >>> metrics = evaluate(model, mmzoo.data.open_split("data/shapes", "test"))  # doctest: +SKIP
        >>> metrics["rsum"], metrics["bind_t2i"]  # doctest: +SKIP
        >>> evaluate(model, coco_testall, rerank=50, fold5=True)["t2i_shortlist"]  # doctest: +SKIP
    """
    if rerank is not None and (isinstance(rerank, bool) or not isinstance(rerank, int) or rerank < 1):
        raise InputError(f"rerank must be a number of candidates >= 1; got {rerank!r}.")
    if shortlist is not None and rerank is None:
        raise InputError("A shortlist model picks rerank candidates: give rerank=K (K >= 1) too.")
    if probe not in (True, False, "by_type"):
        raise InputError(f"probe must be True, False or 'by_type'; got {probe!r}.")
    cpi = split.captions_per_image
    bounds = fold_bounds(split.num_images) if fold5 else [(0, split.num_images)]  # fail before the (long) encoding
    twins = split_twins(split) if probe else None
    encoding = {"batch_size": batch_size, "device": device, "progress": progress, "strict_features": strict_features}
    images, texts = encode_split(model, split, **encoding)
    if shortlist is not None:
        s_images, s_texts = encode_split(shortlist, split, **encoding)
    if fold5:
        logger.info("5-fold evaluation: 5 folds of %d images", split.num_images // 5)
    folds, full = [], None
    for a, b in bounds:
        fold_images, fold_texts = images[a:b], texts[a * cpi : b * cpi]
        if rerank is not None:
            other = {}
            if shortlist is not None:
                other = {
                    "shortlist": shortlist,
                    "shortlist_images": s_images[a:b].to(shortlist.device),
                    "shortlist_texts": s_texts[a * cpi : b * cpi].to(shortlist.device),
                }
            device_of = model.device
            folds.append(
                rerank_metrics(
                    model, fold_images.to(device_of), fold_texts.to(device_of), rerank, cpi, precision, **other
                )
            )
            continue
        sims = score_matrix(
            model, fold_images, fold_texts, block_size=block_size, progress=progress, shard=shard, precision=precision
        )
        warn_if_constant(sims, f"score matrix of fold {len(folds) + 1}" if fold5 else "score matrix")
        folds.append(recall_metrics(sims, cpi))
        full = None if fold5 else sims
    metrics: dict[str, Any] = average_folds(folds) if fold5 else folds[0]
    if twins is not None:
        scores = full if full is not None else twin_scores(model, images, texts, twins, cpi, precision)
        metrics.update(probe_metrics(scores, split, twins, by_type=probe == "by_type"))
    return metrics


def probe_metrics(sims: Tensor, split: Split, twins: np.ndarray, *, by_type: bool = False) -> dict[str, float]:
    """The binding probe of ``split`` from a score matrix filled at least where the twins are: ``bind_t2i``
    always, ``bind_i2t`` only where its assumption holds (:func:`~mmzoo.evaluation.metrics.captions_permute`),
    and with ``by_type`` both per twin type when the split records what each pair differs in (``split.twin_types``)."""
    cpi = split.captions_per_image
    i2t = captions_permute(split.captions, twins, cpi)
    probe = binding_probe(sims, twins, cpi)
    if not i2t:
        logger.info(
            "bind_i2t left out: caption k of a twin is not a word permutation of caption k of its image, so an "
            "image->text twin win can come from words alone"
        )
        del probe["bind_i2t"]
    types = getattr(split, "twin_types", None)
    if by_type and types is not None:
        probe.update(binding_by_type(sims, twins, list(types), cpi, i2t=i2t))
    return probe


def rerank_metrics(
    model: Model,
    images: Any,
    texts: Any,
    rerank: int,
    captions_per_image: int = 5,
    precision: Precision = "auto",
    shortlist: Any | None = None,
    shortlist_images: Any | None = None,
    shortlist_texts: Any | None = None,
) -> dict[str, float]:
    """Recall metrics of shortlist-and-rerank retrieval, plus the shortlist recall of each direction.

    The shortlist comes from ``model``'s own ``<i0, c0>``, or from another model's cheap score (``shortlist``, with
    its encodings ``shortlist_images`` and ``shortlist_texts`` of the same items); ``model``'s full score reranks
    it. Either may be an Ensemble. Returns the keys of :func:`recall_metrics` and ``i2t_shortlist`` (percentage of
    images with at least one of their captions in their shortlist: the ceiling of every i2t R@K),
    ``t2i_shortlist`` (percentage of captions whose image made their shortlist), ``rerank`` and ``pairs_scored``.
    A recall below exhaustive scoring with a shortlist recall below 100 is a shortlist miss, not a model error.

    Examples:
        >>> m = rerank_metrics(model, images, texts, rerank=50)  # doctest: +SKIP
        >>> m["rsum"], m["t2i_shortlist"]  # doctest: +SKIP
    """
    cpi = captions_per_image
    if len(texts) != cpi * len(images):
        raise InputError(f"Need {cpi} captions per image: got {len(texts)} captions for {len(images)} images.")
    ranking = rerank_rankings(
        model,
        images,
        texts,
        rerank,
        precision,
        shortlist=shortlist,
        shortlist_images=shortlist_images,
        shortlist_texts=shortlist_texts,
    )
    i2t, t2i = recall_metrics(ranking.i2t.cpu(), cpi), recall_metrics(ranking.t2i.cpu(), cpi)
    out = {k: (i2t if k.startswith("i2t") else t2i)[k] for k in METRIC_KEYS if k != "rsum"}
    out["rsum"] = sum(out[k] for k in RECALL_KEYS)
    out["i2t_shortlist"], out["t2i_shortlist"] = shortlist_recall(ranking, cpi)
    out["rerank"] = float(rerank)
    out["pairs_scored"] = float(ranking.pairs_scored)
    return out


__all__ = [
    "check_dims",
    "check_features",
    "encode_captions",
    "encode_folder",
    "encode_images",
    "encode_split",
    "evaluate",
    "probe_metrics",
    "rerank_metrics",
    "score_matrix",
    "split_twins",
    "twin_scores",
    "warn_if_constant",
]
