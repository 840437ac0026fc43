"""``import_features``: scan the sources, match them to the captions, write the splits, record the manifest."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mmzoo.data.importing.captions import CaptionTable
from mmzoo.data.importing.manifest import build_manifest
from mmzoo.data.importing.matching import Plan, plan_import
from mmzoo.data.importing.records import Entry, FeatureSource
from mmzoo.data.importing.writer import ImportWriter, Layout
from mmzoo.data.manifest import DataManifest, read_manifest, write_manifest
from mmzoo.errors import DataError

logger = logging.getLogger(__name__)

#: bytes of features written between two checkpoints (fsync + progress marker).
CHECKPOINT_BYTES = 256 * 2**20


def _captions_digest(table: CaptionTable) -> str:
    """Digest of what the caption side contributes: split names, keys and captions, in order."""
    digest = hashlib.sha256()
    for split, images in table.splits.items():
        digest.update(f"\x00split {split}\x00".encode())
        for image in images:
            digest.update(json.dumps([image.key, image.captions]).encode())
    return digest.hexdigest()


def _layout(plan: Plan) -> Layout:
    entries = plan.entries
    if not entries:
        raise DataError("Nothing to import: no split has images.")
    with_boxes = {e.has_boxes for e in entries}
    if len(with_boxes) > 1:
        example = next(e for e in entries if not e.has_boxes)
        raise DataError(f"Some images have boxes and some do not ({example.where} has none); give boxes for all.")
    return Layout(
        splits={split: len(rows) for split, rows in plan.splits.items()},
        regions=max(e.regions for e in entries),
        dim=entries[0].dim,
        boxes=with_boxes == {True},
    )


def _work(plan: Plan, sequential: bool) -> list[tuple[Entry, str, int]]:
    """(entry, split, row) in reading order: the source's own for sequential sources, else output order."""
    work = [(entry, split, row) for split, rows in plan.splits.items() for row, (_image, entry) in enumerate(rows)]
    if sequential:
        work.sort(key=lambda item: item[0].order)
    return work


def _check_values(entry: Entry, features: np.ndarray, boxes: np.ndarray | None) -> None:
    if features.shape != (entry.regions, entry.dim):
        raise DataError(
            f"{entry.where}: features have shape {features.shape}; the scan found ({entry.regions}, {entry.dim})."
        )
    for name, values in (("features", features), ("boxes", boxes)):
        if values is not None and not np.isfinite(values).all():
            region = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
            raise DataError(
                f"{entry.where}: {name} hold NaN or infinite values (region {region}). Re-extract that image or "
                "leave it out of the caption file; nothing of this import is marked complete."
            )


def import_features(
    source: FeatureSource,
    captions: CaptionTable,
    out: str | Path,
    *,
    extractor: str | None = None,
    normalisation: str = "none",
    skip_extra: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    checkpoint_bytes: int = CHECKPOINT_BYTES,
) -> dict[str, Any]:
    """Import region features into the precomputed layout of ``out``; resume an interrupted import.

    Args:
        source: a :class:`~mmzoo.data.importing.TsvSource`, :class:`~mmzoo.data.importing.FolderSource`
            or :class:`~mmzoo.data.importing.Hdf5Source`.
        captions: the splits and captions (:func:`read_karpathy_captions` or :func:`read_caption_files`).
        out: the dataset folder to write.
        extractor: the extractor as you name it (``"BUTD Faster R-CNN ResNet-101 VG, 36 boxes"``),
            recorded in the manifest; models trained on the data record it and warn on other features.
        normalisation: what was done to the features before saving (``none``, ``l2``, ...).
        skip_extra: leave out feature rows of images the caption source does not know (else an error).
        overwrite: replace an existing dataset or another unfinished import in ``out``.
        progress: show a progress bar.
        checkpoint_bytes: feature bytes between two checkpoints (how much a kill can cost).

    Returns:
        The manifest written to ``out/mmzoo_data.json``, as plain data.

    Examples:
        >>> src = TsvSource(["trainval_36/trainval_resnet101_faster_rcnn_genome_36.tsv"])  # doctest: +SKIP
        >>> table = read_karpathy_captions("dataset_coco.json")  # doctest: +SKIP
        >>> import_features(src, table, "data/coco_butd36", extractor="BUTD R101 VG fixed 36")  # doctest: +SKIP
    """
    out = Path(out)
    plan = plan_import(source.scan(), captions, skip_extra=skip_extra)
    if plan.skipped_known:
        logger.info("%d feature rows belong to images in splits not imported; left out.", plan.skipped_known)
    if plan.skipped_extra:
        logger.warning(
            "%d feature rows of images the caption source does not list were left out.", len(plan.skipped_extra)
        )
    layout = _layout(plan)
    fingerprint = {
        "importer": 1,
        "source": source.fingerprint(),
        "captions": _captions_digest(captions),
        "skip_extra": skip_extra,
    }
    writer = ImportWriter(out, layout, fingerprint, overwrite=overwrite)
    facts = {"extractor": extractor, "normalisation": normalisation}
    if writer.start() == "complete":
        return _relabel(out, facts)
    try:
        if writer.stage == "writing":
            work = _work(plan, source.sequential)
            _write_rows(source, work, writer, progress=progress, checkpoint_bytes=checkpoint_bytes)
        texts = {
            split: ([c for image, _e in rows for c in image.captions], [e.key for _i, e in rows])
            for split, rows in plan.splits.items()
        }
        sha256 = writer.finish(texts)
    finally:
        writer.close()
    return writer.complete(_manifest(source, captions, plan, layout, sha256, facts)).to_json()


def _manifest(
    source: FeatureSource,
    captions: CaptionTable,
    plan: Plan,
    layout: Layout,
    sha256: dict[str, str],
    facts: dict[str, Any],
) -> DataManifest:
    return build_manifest(
        counts={split: [e.regions for _i, e in rows] for split, rows in plan.splits.items()},
        captions_per_image=captions.captions_per_image,
        regions=layout.regions,
        region_dim=layout.dim,
        boxes=layout.boxes,
        source_format=source.format_name,
        source={
            **source.describe(),
            "captions": captions.source.name,
            "dataset": captions.dataset,
            "match": captions.match,
            **captions.settings,
            "skipped_rows": plan.skipped_known + len(plan.skipped_extra),
        },
        sha256=sha256,
        name=captions.dataset,
        **facts,
    )


def _write_rows(
    source: FeatureSource,
    work: list[tuple[Entry, str, int]],
    writer: ImportWriter,
    *,
    progress: bool,
    checkpoint_bytes: int,
) -> None:
    start = writer.done
    bar = tqdm(total=len(work), initial=start, desc=f"import {writer.out.name}", unit="img", disable=not progress)
    since = 0
    try:
        done = start
        for done, (entry, features, boxes) in enumerate(source.read([w[0] for w in work[start:]]), start=start + 1):
            _entry, split, row = work[done - 1]
            _check_values(entry, features, boxes)
            writer.put(split, row, features, boxes)
            since += features.nbytes
            if since >= checkpoint_bytes:
                writer.checkpoint(done)
                since = 0
            bar.update(1)
        if done != len(work):
            raise DataError(f"The sources yielded {done} of {len(work)} images; rerun the import.")
        writer.checkpoint(done, wait=True)
    finally:
        bar.close()


def _relabel(out: Path, facts: dict[str, Any]) -> dict[str, Any]:
    """An import that is already complete: only the user-given labels may change."""
    manifest = read_manifest(out)
    changed = {k: v for k, v in facts.items() if getattr(manifest, k) != v}
    if changed:
        logger.info("%s is already imported; updating %s in its manifest.", out, ", ".join(changed))
        manifest = manifest.model_copy(update=changed)
        write_manifest(out, manifest)
    else:
        logger.info("%s is already imported from these sources; nothing to do (--overwrite to redo).", out)
    return manifest.to_json()


__all__ = ["CHECKPOINT_BYTES", "import_features"]
