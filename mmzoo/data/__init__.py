"""Datasets: precomputed region features (memory-mapped) and the synthetic shapes generator.

Example:
    >>> from mmzoo.data import PrecomputedDataset, collate_pairs, make_shapes
    >>> make_shapes("data/shapes", images=200)  # doctest: +SKIP
    >>> ds = PrecomputedDataset("data/shapes", "train")  # doctest: +SKIP
"""

from __future__ import annotations

from mmzoo.data.precomputed import (
    MANIFEST_NAME,
    PairBatch,
    PrecomputedDataset,
    collate_pairs,
    read_captions,
    read_manifest,
)
from mmzoo.data.shapes import load_scenes, make_scenes, make_shapes

__all__ = [
    "MANIFEST_NAME",
    "PairBatch",
    "PrecomputedDataset",
    "collate_pairs",
    "load_scenes",
    "make_scenes",
    "make_shapes",
    "read_captions",
    "read_manifest",
]
