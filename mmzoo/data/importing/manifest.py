"""The facts an import records in ``mmzoo_data.json``: what the features are and where they came from.

A model trained on these features records the feature facts (``FEATURE_FACTS``); the extractor guard
(:mod:`mmzoo.data.guard`) compares them with the manifest of the data it is later evaluated or fine-tuned on.
The region policy is measured, never assumed: ``fixed-36`` when every image has 36 regions,
``adaptive-10-100`` when counts range from 10 to 100.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from mmzoo.data.guard import FEATURE_FACTS
from mmzoo.data.layout import PRECOMP
from mmzoo.data.manifest import DataManifest


def region_policy(counts: Iterable[int]) -> str:
    """``fixed-K`` when every image has K regions, else ``adaptive-MIN-MAX``.

    Examples:
        >>> region_policy([36, 36]), region_policy([10, 57, 100])
        ('fixed-36', 'adaptive-10-100')
    """
    values = np.fromiter(counts, dtype=np.int64)
    if not len(values):
        raise ValueError("region_policy needs at least one count")
    low, high = int(values.min()), int(values.max())
    return f"fixed-{low}" if low == high else f"adaptive-{low}-{high}"


def build_manifest(
    *,
    counts: dict[str, list[int]],
    captions_per_image: int,
    regions: int,
    region_dim: int,
    boxes: bool,
    extractor: str | None,
    normalisation: str,
    source_format: str,
    source: dict[str, Any],
    sha256: dict[str, str],
    name: str | None = None,
) -> DataManifest:
    """The ``mmzoo_data.json`` of an imported dataset.

    Args:
        counts: split -> regions of each image, in row order.
        captions_per_image: caption lines per image.
        regions: k_max, the padded number of regions.
        region_dim: D.
        boxes: whether ``{split}_boxes.npy`` files were written.
        extractor: the extractor as the user names it (None: not given).
        normalisation: what was done to the features before they were saved (``none``, ``l2``, ...).
        source_format: ``butd-tsv``, ``lxmert-tsv``, ``npy-folder``, ``npz-folder``, ``hdf5``.
        source: the source files and settings (names, not paths).
        sha256: file name -> digest for every file written (recorded with its split).
        name: the dataset's name (the Karpathy file's ``dataset``: coco, flickr30k).
    """
    every = [c for split_counts in counts.values() for c in split_counts]
    splits = {}
    for split, values in counts.items():
        array = np.asarray(values, dtype=np.int64)
        splits[split] = {
            "images": len(values),
            "captions": len(values) * captions_per_image,
            "regions_min": int(array.min()),
            "regions_max": int(array.max()),
            "regions_mean": round(float(array.mean()), 3),
            "files": {f: digest for f, digest in sorted(sha256.items()) if (PRECOMP.kind_of(f) or ("",))[0] == split},
        }
    return DataManifest.model_validate(
        {
            "format": "precomp",
            "name": name,
            "generator": "mmzoo import-features",
            "captions_per_image": captions_per_image,
            "regions": regions,
            "region_dim": region_dim,
            "region_policy": region_policy(every),
            "extractor": extractor,
            "normalisation": normalisation,
            "source_format": source_format,
            "boxes": boxes,
            "counts": True,
            "splits": splits,
            "source": source,
        }
    )


__all__ = ["FEATURE_FACTS", "build_manifest", "region_policy"]
