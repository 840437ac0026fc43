"""The approximate nearest-neighbour index of a saved index, on faiss (inner product, the models' cheap score).

Up to :data:`FLAT_LIMIT` items an exact ``IndexFlatIP``; above it an inverted-file index (``IVF{nlist},SQfp16``:
``nlist`` about the square root of the count, vectors stored in float16) that serving memory-maps so only the
probed lists are paged in; or, on request, HNSW. ``nprobe`` (IVF) and ``ef`` (HNSW) trade recall for time at
query time and are saved in the manifest as the defaults.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmzoo.errors import InputError
from mmzoo.serving._deps import require

AnnKind = Literal["flat", "ivf", "hnsw"]
#: the largest index built exact by default.
FLAT_LIMIT = 100_000
#: points the IVF coarse quantiser trains on, per list.
TRAIN_PER_LIST = 64


def faiss() -> Any:
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its INFO lines name every CPU build it tries
    return require("faiss", "serving")


def choose(count: int, kind: str | None, nprobe: int | None, ef: int | None) -> dict[str, Any]:
    """The ANN settings for ``count`` vectors: ``kind`` (default by size), ``nlist``, ``nprobe``, ``ef``."""
    if kind is None:
        kind = "flat" if count <= FLAT_LIMIT else "ivf"
    if kind not in ("flat", "ivf", "hnsw"):
        raise InputError(f"--kind must be flat, ivf or hnsw; got {kind!r}.")
    for name, value in (("nprobe", nprobe), ("ef", ef)):
        if value is not None and value < 1:
            raise InputError(f"--{name} must be at least 1; got {value}.")
    settings: dict[str, Any] = {"kind": kind, "metric": "inner_product"}
    if kind == "ivf":
        nlist = max(1, min(2 ** round(math.log2(max(math.sqrt(count), 1))), count // 39 or 1))
        settings.update(nlist=nlist, nprobe=nprobe or max(1, min(nlist, nlist // 16 or 1)))
    elif kind == "hnsw":
        settings.update(m=32, ef_construction=80, ef=ef or 128)
    return settings


def build(settings: dict[str, Any], dim: int, chunks: Iterator[np.ndarray], sample: np.ndarray, out: Path) -> None:
    """Write the ANN index of the vectors ``chunks`` yields (float32, in index order) to ``out``, atomically.

    ``sample`` trains the IVF quantiser (a fixed, evenly spaced subset: the same index every build)."""
    fa = faiss()
    kind = settings["kind"]
    if kind == "flat":
        index = fa.IndexFlatIP(dim)
    elif kind == "ivf":
        index = fa.index_factory(dim, f"IVF{settings['nlist']},SQfp16", fa.METRIC_INNER_PRODUCT)
        clustering_seed = 1234
        index.cp.seed = clustering_seed
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    else:
        index = fa.IndexHNSWFlat(dim, settings["m"], fa.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings["ef_construction"]
    for chunk in chunks:
        index.add(np.ascontiguousarray(chunk, dtype=np.float32))
    write(index, out)


def write(index: Any, out: Path) -> None:
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        faiss().write_index(index, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def read(path: Path, mmap: bool = True) -> Any:
    """The saved index, memory-mapped (read-only) by default."""
    fa = faiss()
    flags = (fa.IO_FLAG_MMAP_IFC | fa.IO_FLAG_READ_ONLY) if mmap else 0
    return fa.read_index(str(path), flags)


def tune(index: Any, settings: dict[str, Any], nprobe: int | None = None, ef: int | None = None) -> None:
    """Set the query-time knobs (the saved defaults unless given)."""
    fa = faiss()
    if settings["kind"] == "ivf":
        fa.extract_index_ivf(index).nprobe = int(nprobe or settings["nprobe"])
    elif settings["kind"] == "hnsw":
        index.hnsw.efSearch = int(ef or settings["ef"])


def add(path: Path, chunks: Iterator[np.ndarray], out: Path) -> None:
    """A copy of the index at ``path`` with more vectors (the IVF quantiser is kept), written to ``out``."""
    index = read(path, mmap=False)
    for chunk in chunks:
        index.add(np.ascontiguousarray(chunk, dtype=np.float32))
    write(index, out)


__all__ = ["FLAT_LIMIT", "AnnKind", "add", "build", "choose", "read", "tune", "write"]
