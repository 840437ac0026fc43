"""Importing the region features users hold into mmzoo's memory-mapped precomputed layout.

Sources: bottom-up-attention TSV shards (:class:`TsvSource`), folders of per-image ``.npy`` / ``.npz``
files (:class:`FolderSource`) and HDF5 files (:class:`Hdf5Source`). Captions and splits: a Karpathy
split file (:func:`read_karpathy_captions`), per-split caption files (:func:`read_caption_files`) or a CSV / JSON
Lines table of (image, caption[, split]) rows (:func:`read_caption_table`).
:func:`import_features` writes the splits streaming and resumably, with a manifest recording the
extractor, region policy, dimensions, normalisation, counts and file digests; :mod:`mmzoo.data.guard` compares a
trained model's feature facts with a dataset's manifest. The command is ``mmzoo import-features``
(docs/features.md).

Examples:
    >>> from mmzoo.data.importing import TsvSource, import_features, read_karpathy_captions
    >>> import_features(TsvSource(["trainval_36"]), read_karpathy_captions("dataset_coco.json"),
    ...                 "data/coco_butd36", extractor="BUTD R101 VG, 36 boxes")  # doctest: +SKIP
"""

from __future__ import annotations

from mmzoo.data.guard import (
    FeatureDifference,
    FeatureMismatchWarning,
    check_feature_facts,
    feature_differences,
    feature_facts,
)
from mmzoo.data.importing.captions import (
    CaptionTable,
    read_caption_files,
    read_caption_table,
    read_karpathy_captions,
)
from mmzoo.data.importing.folder import FolderSource
from mmzoo.data.importing.hdf5 import Hdf5Source
from mmzoo.data.importing.id_index import read_id_index
from mmzoo.data.importing.manifest import FEATURE_FACTS, region_policy
from mmzoo.data.importing.pipeline import import_features
from mmzoo.data.importing.records import Entry, FeatureSource
from mmzoo.data.importing.tsv import TsvSource

__all__ = [
    "FEATURE_FACTS",
    "CaptionTable",
    "Entry",
    "FeatureDifference",
    "FeatureMismatchWarning",
    "FeatureSource",
    "FolderSource",
    "Hdf5Source",
    "TsvSource",
    "check_feature_facts",
    "feature_differences",
    "feature_facts",
    "import_features",
    "read_caption_files",
    "read_caption_table",
    "read_id_index",
    "read_karpathy_captions",
    "region_policy",
]
