"""Serving retrieval: saved indexes (sharded embeddings, Parquet metadata, a faiss ANN index, a manifest), the
shard function any engine runs (sequential, torchrun, Ray Data), and the HTTP service with its page and client.

Example:
    >>> from mmzoo.serving import SavedIndex, build_index, detect_source
    >>> build_index(model, "runs/vsepp", detect_source("data/shapes", split="test"), "idx")  # doctest: +SKIP
    >>> hits = model.search(["a red circle"], SavedIndex.open("idx"), top_k=5)  # doctest: +SKIP

The heavy optional packages (faiss, pyarrow, fastapi, uvicorn, ray) are imported when first used; a missing one is
an error naming the extra to install (``pip install 'mmzoo[serving]'``, ``'mmzoo[serve]'``, ``'mmzoo[ray]'``).
"""

from __future__ import annotations

from mmzoo.serving._deps import MissingExtraError
from mmzoo.serving.build import add_items, build_index
from mmzoo.serving.client import Client, ServiceError
from mmzoo.serving.errors import IndexCorruptError, IndexMismatchError
from mmzoo.serving.retrieve import Ranked, retrieve
from mmzoo.serving.saved import LiveIndex, SavedIndex, read_manifest
from mmzoo.serving.service import Searcher
from mmzoo.serving.sources import detect_source, open_source

__all__ = [
    "Client",
    "IndexCorruptError",
    "IndexMismatchError",
    "LiveIndex",
    "MissingExtraError",
    "Ranked",
    "SavedIndex",
    "Searcher",
    "ServiceError",
    "add_items",
    "build_index",
    "detect_source",
    "open_source",
    "read_manifest",
    "retrieve",
]
