"""Data: the one door to dataset folders (:func:`open_split`), the manifest schema, the ``precomp`` format,
the synthetic shapes generator, raw-image datasets and feature extraction.

Examples:
    >>> from mmzoo.data import make_shapes, open_split
    >>> make_shapes("data/shapes", images=200)  # doctest: +SKIP
    >>> train = open_split("data/shapes", "train")  # doctest: +SKIP
    >>> pics = KarpathyImages("dataset_flickr30k.json", "flickr30k-images", "test")  # doctest: +SKIP
"""

from __future__ import annotations

from mmzoo.data.door import open_split
from mmzoo.data.images import ImageFolder, ImageRecord, KarpathyImages, collate_images, read_karpathy
from mmzoo.data.karpathy_images import ImageSplit, open_image_split
from mmzoo.data.manifest import MANIFEST_NAME, DataManifest, SplitInfo, read_manifest, write_manifest
from mmzoo.data.precomputed import (
    PairBatch,
    PrecomputedDataset,
    PrecomputedFormat,
    collate_pairs,
    read_captions,
)
from mmzoo.data.shapes import load_scenes, make_scenes, make_shapes

__all__ = [
    "MANIFEST_NAME",
    "DataManifest",
    "ImageFolder",
    "ImageRecord",
    "ImageSplit",
    "KarpathyImages",
    "PairBatch",
    "PrecomputedDataset",
    "PrecomputedFormat",
    "SplitInfo",
    "collate_images",
    "collate_pairs",
    "load_scenes",
    "make_scenes",
    "make_shapes",
    "open_image_split",
    "open_split",
    "read_captions",
    "read_karpathy",
    "read_manifest",
    "write_manifest",
]
