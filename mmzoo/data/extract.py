"""Run a visual backbone over an image dataset once and write the precomputed-feature layout.

Output, per split, in ``out_dir``: ``{split}_ims.npy`` (N, k, D) float32 written through a memory map
(``np.lib.format.open_memmap``, so a split larger than memory is fine) and ``{split}_caps.txt`` (the
same number of captions per image, image order), and ``{split}_images.txt`` (the image file of each row). While a split is being written, ``{split}_ims.progress.json`` records
how many images are done; after an interruption the same call continues from there. The caption file
is written last and the marker then removed, so a split without a marker is complete.

Examples:
    >>> ds = KarpathyImages("dataset_flickr30k.json", "flickr30k-images", "test")  # doctest: +SKIP
    >>> extract_split(model.visual, ds, "f30k_lite0", "test")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from mmzoo._atomic import atomic_write_json, atomic_write_text, create_npy
from mmzoo.data.images import KarpathyImages, collate_images
from mmzoo.data.layout import PRECOMP
from mmzoo.data.manifest import DataManifest, read_manifest, write_manifest
from mmzoo.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


#: ``{split}_images.txt``: the image file of each row of ``{split}_ims.npy``, one absolute path a line.
IMAGES_SUFFIX = "_images.txt"

#: the visual settings that decide the extracted regions (the head's settings do not).
SOURCE_KEYS = ("name", "backbone", "weights", "grid", "preprocess")


def visual_source(section: dict[str, Any]) -> dict[str, Any]:
    """What to record about the extractor: the region-deciding part of a visual config section."""
    return {"visual": {k: section[k] for k in SOURCE_KEYS if k in section}}


def check_extractor(encoder: Any) -> None:
    """The encoder must turn pixels into regions: ``regions(pixels)`` and ``transform(train)``."""
    if not (getattr(encoder, "takes_pixels", False) and hasattr(encoder, "regions") and hasattr(encoder, "transform")):
        raise ConfigError(
            f"{type(encoder).__name__} cannot extract features: it needs regions(pixels) and transform(), "
            "as the timm-grid visual encoder has."
        )


def extract_split(
    encoder: Any,
    dataset: KarpathyImages,
    out_dir: str | Path,
    split: str,
    *,
    batch_size: int = 32,
    workers: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    source: dict[str, Any] | None = None,
) -> Path:
    """Write ``{split}_ims.npy`` and ``{split}_caps.txt`` for ``dataset``; resume an interrupted run.

    Args:
        encoder: a pixel visual encoder (``timm-grid``): its eval transform and ``regions`` are used.
        dataset: the split's images and captions (the same number per image).
        out_dir: the features folder (created).
        split: the name in the file names.
        batch_size: images per backbone call.
        workers: DataLoader worker processes for reading and resizing images.
        overwrite: start again even when the split is complete or was begun with other settings.
        progress: show a tqdm bar.
        source: what produced the features (backbone, weights, preprocessing), recorded in the marker and
            the manifest; a resumed run must have the same.

    Returns:
        The path of ``{split}_ims.npy``.
    """
    check_extractor(encoder)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ims, caps = PRECOMP.path(out, split, "ims"), PRECOMP.path(out, split, "caps")
    marker = ims.with_name(f"{split}_ims.progress.json")
    n = len(dataset.records)
    source = source or {}
    if overwrite:
        for path in (ims, caps, marker):
            path.unlink(missing_ok=True)
    done = _resume_point(ims, caps, marker, n, source)
    if done is None:
        logger.info("%s is complete; pass overwrite=True (--overwrite) to extract it again.", ims)
        return ims
    was_training = encoder.training
    encoder.eval()
    try:
        shape = _extract(encoder, dataset, ims, marker, done, batch_size, workers, progress, source, split)
    finally:
        encoder.train(was_training)
    captions = [c for i in range(n) for c in dataset.image_captions(i)]
    PRECOMP.write_captions(out, split, captions)
    # which picture each row came from: contact sheets of retrievals (``mmzoo eval --sheet``) show them
    paths = [str(Path(r.path).resolve()) for r in dataset.records]
    atomic_write_text(PRECOMP.path(out, split, "images"), "\n".join(paths) + "\n")
    marker.unlink(missing_ok=True)
    _update_manifest(out, split, shape, len(captions) // n, source)
    return ims


def _resume_point(ims: Path, caps: Path, marker: Path, n: int, source: dict[str, Any]) -> int | None:
    """Images already written by an interrupted run (0 for a fresh one), or None when the split is complete."""
    if ims.is_symlink():  # mmzoo writes into files it created; a link there is refused, never followed
        raise DataError(f"{ims} is a link, not a file mmzoo wrote; remove it or use --overwrite.")
    state = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None
    if state is None and ims.is_file():
        if caps.is_file():
            return None
        raise DataError(f"{ims} exists without captions or a progress marker; remove it or use --overwrite.")
    if state is not None and (state.get("images") != n or state.get("source") != source or not ims.is_file()):
        raise DataError(
            f"{marker} belongs to another run ({state.get('images')} images, source {state.get('source')}); "
            "use --overwrite to start again."
        )
    return int(state["done"]) if state else 0


def _extract(
    encoder: Any,
    dataset: KarpathyImages,
    ims: Path,
    marker: Path,
    done: int,
    batch_size: int,
    workers: int,
    progress: bool,
    source: dict[str, Any],
    split: str,
) -> tuple[int, ...]:
    """Run the backbone over images ``done..n`` into the memory-mapped file, recording progress per batch."""
    n = len(dataset.records)
    images = dataset.images()
    images.transform = encoder.transform(train=False)
    loader = DataLoader(
        Subset(images, range(done, n)), batch_size=batch_size, num_workers=workers, collate_fn=collate_images
    )
    features = np.lib.format.open_memmap(ims, mode="r+") if done else None
    device = next(encoder.parameters()).device
    with tqdm(total=n, initial=done, desc=f"extract {split}", unit="img", disable=not progress) as bar:
        for pixels, index in loader:
            with torch.inference_mode():
                regions = encoder.regions(pixels.to(device)).float().cpu().numpy()
            if features is None:  # the first batch tells the shape (k, D)
                create_npy(ims, np.float32, (n, *regions.shape[1:]))  # fresh: never through a link at the name
                features = np.lib.format.open_memmap(ims, mode="r+")
            if regions.shape[1:] != features.shape[1:]:
                raise DataError(f"The backbone gave regions {regions.shape[1:]}, the file holds {features.shape[1:]}.")
            features[index[0] : index[-1] + 1] = regions
            features.flush()
            state = {"images": n, "done": index[-1] + 1, "shape": list(features.shape), "source": source}
            atomic_write_json(marker, state, indent=1)
            bar.update(len(index))
    if features is None:
        features = np.load(ims, mmap_mode="r")
    return tuple(features.shape)


def _update_manifest(out: Path, split: str, shape: tuple[int, ...], per_image: int, source: dict[str, Any]) -> None:
    """Record the split in ``mmzoo_data.json`` (the precomputed layout's manifest) with how it was made."""
    manifest = read_manifest(out) or DataManifest()
    update: dict[str, Any] = {
        "format": "precomp",
        "generator": "mmzoo extract-features",
        "regions": int(shape[1]),
        "region_dim": int(shape[2]),
        "region_policy": f"grid-{int(shape[1])}",
        "captions_per_image": per_image,
        "source": source,
        "extractor": source.get("visual") or None,
    }
    if source.get("visual"):
        # train the same pixel encoder on these regions: the trained model then also runs on images
        update["model_overrides"] = {f"visual.{k}": v for k, v in source["visual"].items()}
    data = {**manifest.to_json(), **{k: v for k, v in update.items() if v is not None}}
    data.setdefault("splits", {})[split] = {"images": int(shape[0]), "captions": int(shape[0]) * per_image}
    write_manifest(out, DataManifest.model_validate(data))


__all__ = ["IMAGES_SUFFIX", "SOURCE_KEYS", "check_extractor", "extract_split", "visual_source"]
