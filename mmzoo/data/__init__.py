"""Datasets: precomputed region features (memory-mapped), the synthetic shapes generator, raw images.

Example:
    >>> from mmzoo.data import PrecomputedDataset, collate_pairs, make_shapes
    >>> make_shapes("data/shapes", images=200)  # doctest: +SKIP
    >>> ds = PrecomputedDataset("data/shapes", "train")  # doctest: +SKIP
    >>> pics = KarpathyImages("dataset_flickr30k.json", "flickr30k-images", "test")  # doctest: +SKIP
"""

from __future__ import annotations

from mmzoo.data.images import ImageFolder, ImageRecord, KarpathyImages, collate_images, read_karpathy
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
    "ImageFolder",
    "ImageRecord",
    "KarpathyImages",
    "PairBatch",
    "PrecomputedDataset",
    "collate_images",
    "collate_pairs",
    "load_scenes",
    "make_scenes",
    "make_shapes",
    "read_captions",
    "read_karpathy",
    "read_manifest",
]
