"""A saved index opened for search: the manifest checked, the vectors and the faiss index memory-mapped.

Opening verifies the sha256 of every file the manifest lists (a damaged or swapped shard is an
:class:`~mmzoo.serving.errors.IndexCorruptError` at start-up, not a wrong answer later); nothing is unpickled
(``np.load(allow_pickle=False)``, Parquet, faiss's own format). Metadata is read by id a Parquet row group at a
time with a small cache, so large K costs K lookups, not a scan. :class:`LiveIndex` follows ``manifest.json``: a
reader sees one whole version, and the next request after an ``index add`` sees the next one.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmzoo.serving import ann
from mmzoo.serving._deps import require
from mmzoo.serving.build import FORMAT, MANIFEST
from mmzoo.serving.errors import IndexCorruptError
from mmzoo.serving.shard import SHARDS, file_sha256, shard_name
from mmzoo.serving.sources import Item, Source, open_source

ROW_GROUP = 1024


def read_manifest(path: str | Path) -> dict[str, Any]:
    folder = Path(path)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise IndexCorruptError(
            f"{folder} is not a saved index (no {MANIFEST}); build one with `mmzoo index build`, or finish an "
            "interrupted build by running the same command again."
        ) from None
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{folder / MANIFEST} is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexCorruptError(f"{folder / MANIFEST} is not an mmzoo index manifest (format {FORMAT}).")
    return manifest


class SavedIndex:
    """One version of an index folder, ready to search.

    Example:
        >>> index = SavedIndex.open("idx")  # doctest: +SKIP
        >>> scores, ids = index.search(query_vectors, k=10)  # doctest: +SKIP
        >>> index.items(ids[0])  # doctest: +SKIP
    """

    def __init__(self, path: Path, manifest: dict[str, Any], nprobe: int | None = None, ef: int | None = None):
        self.path, self.manifest = path, manifest
        self.version: int = manifest["version"]
        self.count: int = manifest["count"]
        self.dim: int = manifest["dim"]
        self.kind: str = manifest["kind"]
        self.model: dict[str, Any] = manifest["model"]
        self._first_ids = [s["first_id"] for s in manifest["shards"]]
        self._vectors = [
            np.load(path / SHARDS / f"{shard_name(s['shard'])}.npy", mmap_mode="r", allow_pickle=False)
            for s in manifest["shards"]
        ]
        for s, v in zip(manifest["shards"], self._vectors, strict=True):
            if v.shape != (s["count"], self.dim):
                raise IndexCorruptError(f"Shard {shard_name(s['shard'])} of {path} holds {v.shape}, not {s['count']}.")
        self._ann = ann.read(path / manifest["ann"]["file"])
        if self._ann.ntotal != self.count:
            raise IndexCorruptError(f"{manifest['ann']['file']} holds {self._ann.ntotal} vectors, not {self.count}.")
        ann.tune(self._ann, manifest["ann"], nprobe, ef)
        self._groups: OrderedDict[tuple[int, int], list[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self._sources: dict[int, Source] = {}
        self._checked: set[int] = set()

    @classmethod
    def open(
        cls,
        path: str | Path,
        verify: bool = True,
        nprobe: int | None = None,
        ef: int | None = None,
        verified: dict[str, str] | None = None,
    ) -> SavedIndex:
        """Open the current version of the index folder ``path``; ``verify`` checks every file's sha256
        (those in ``verified``, already checked with the same hash, are skipped)."""
        folder = Path(path)
        manifest = read_manifest(folder)
        if verify:
            for rel, sha in manifest["files"].items():
                if verified is not None and verified.get(rel) == sha:
                    continue
                try:
                    actual = file_sha256(folder / rel)
                except OSError as exc:
                    raise IndexCorruptError(f"{folder / rel} of the index is missing or unreadable: {exc}") from None
                if actual != sha:
                    raise IndexCorruptError(
                        f"{folder / rel} is damaged: its sha256 is {actual[:16]}..., the manifest says "
                        f"{sha[:16]}...; rebuild the index (or restore the file)."
                    )
        return cls(folder, manifest, nprobe, ef)

    # -- search ------------------------------------------------------------------------------------
    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best ids (Q, k) int64 and their inner products (Q, k) float32 per query vector (Q, dim);
        an id of -1 marks a slot the ANN could not fill."""
        q = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim))
        scores, ids = self._ann.search(q, min(k, self.count))
        return scores, ids

    def _locate(self, item_id: int) -> tuple[int, int]:
        if not 0 <= item_id < self.count:
            raise KeyError(item_id)
        s = bisect.bisect_right(self._first_ids, item_id) - 1
        return s, item_id - self._first_ids[s]

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of ``ids`` as float32 (n, dim)."""
        out = np.empty((len(ids), self.dim), np.float32)
        for n, item_id in enumerate(ids):
            s, local = self._locate(int(item_id))
            out[n] = self._vectors[s][local]
        return out

    def items(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """The metadata rows of ``ids`` (id, key, path, caption, size, sha256); KeyError for an unknown id."""
        return [self._row(int(i)) for i in ids]

    def _row(self, item_id: int) -> dict[str, Any]:
        s, local = self._locate(item_id)
        group = self._group(s, local // ROW_GROUP)
        return dict(group[local % ROW_GROUP])

    def _group(self, s: int, g: int) -> list[dict[str, Any]]:
        key = (s, g)
        with self._lock:
            if key in self._groups:
                self._groups.move_to_end(key)
                return self._groups[key]
        pq = require("pyarrow.parquet", "serving")
        shard = self.manifest["shards"][s]["shard"]
        rows = pq.ParquetFile(self.path / SHARDS / f"{shard_name(shard)}.parquet").read_row_group(g).to_pylist()
        with self._lock:
            self._groups[key] = rows
            while len(self._groups) > 256:
                self._groups.popitem(last=False)
        return rows

    def search_with(
        self, model: Any, queries: Any, top_k: int = 10, rerank: int | None = None, shortlist: Any | None = None
    ) -> Any:
        """What ``model.search(queries, saved_index, ...)`` runs: the service's own path
        (:func:`mmzoo.serving.retrieve.retrieve`). ``model`` is the index's model, or with ``shortlist=`` the
        index's model it is the reranker of the ANN's top ``rerank``. Returns a :class:`mmzoo.scoring.SearchResult`
        whose ``indices`` are the items' ids."""
        import torch

        from mmzoo.scoring import SearchResult
        from mmzoo.serving.retrieve import check_index_model, retrieve

        index_model = shortlist if shortlist is not None else model
        if id(index_model) not in self._checked:  # hashing the weights once per model object, not per query
            check_index_model(self, index_model, "the model given")
            self._checked.add(id(index_model))
        reranker = model if shortlist is not None else None
        ranked = retrieve(self, index_model, queries, k=top_k, reranker=reranker, rerank=rerank)
        shortlisted = None if ranked.shortlist is None else torch.from_numpy(ranked.shortlist)
        return SearchResult(torch.from_numpy(ranked.scores), torch.from_numpy(ranked.ids), shortlisted)

    # -- the items' sources (rerank, thumbnails) -------------------------------------------------------
    def source_of(self, item_id: int) -> Source:
        """The source an item was read from (opened once per segment)."""
        for n, seg in enumerate(self.manifest["sources"]):
            if seg["first_id"] <= item_id < seg["first_id"] + seg["count"]:
                with self._lock:
                    if n not in self._sources:
                        self._sources[n] = open_source(seg["source"])
                    return self._sources[n]
        raise KeyError(item_id)

    def read_items(self, ids: Sequence[int]) -> tuple[Source, Any]:
        """The model inputs of ``ids`` read again from their source (all from one source kind)."""
        rows = self.items(ids)
        sources = [self.source_of(int(i)) for i in ids]
        groups: dict[int, list[int]] = {}
        for n, src in enumerate(sources):
            groups.setdefault(id(src), []).append(n)
        if len(groups) == 1:
            inputs, _ = sources[0].read([Item(r["key"], r["path"], r["caption"]) for r in rows])
            return sources[0], inputs
        # items from several segments: read each and put them back in order
        parts: list[Any] = [None] * len(ids)
        for members in groups.values():
            src = sources[members[0]]
            inputs, _ = src.read([Item(rows[n]["key"], rows[n]["path"], rows[n]["caption"]) for n in members])
            for n, value in zip(members, _split(src.kind, inputs), strict=True):
                parts[n] = value
        return sources[0], _join(sources[0].kind, parts)

    def image_file(self, item_id: int) -> Path | None:
        """The item's picture, only when it lies inside its source's root (else None)."""
        row = self._row(item_id)
        return self.source_of(item_id).file(row["path"])

    @property
    def files(self) -> dict[str, str]:
        return dict(self.manifest["files"])


def _split(kind: str, inputs: Any) -> list[Any]:
    if kind == "regions":
        features, mask = inputs
        return list(zip(features, mask, strict=True))
    return list(inputs)


def _join(kind: str, parts: list[Any]) -> Any:
    if kind == "regions":
        import torch

        return torch.stack([f for f, _ in parts]), torch.stack([m for _, m in parts])
    return parts


class LiveIndex:
    """The current version of an index folder: reopened (checking only new files) when ``manifest.json`` changes.

    ``current()`` returns a whole :class:`SavedIndex`; a request keeps the one it got to the end.
    """

    def __init__(self, path: str | Path, verify: bool = True, nprobe: int | None = None, ef: int | None = None):
        self.path, self._verify, self._nprobe, self._ef = Path(path), verify, nprobe, ef
        self._lock = threading.Lock()
        self._stamp = self._manifest_stamp()
        self._index = SavedIndex.open(self.path, verify, nprobe, ef)

    def _manifest_stamp(self) -> tuple[int, int]:
        try:
            st = (self.path / MANIFEST).stat()
        except OSError:
            return (0, 0)
        return (st.st_ino, st.st_mtime_ns)

    def current(self) -> SavedIndex:
        stamp = self._manifest_stamp()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    old = self._index
                    self._index = SavedIndex.open(self.path, self._verify, self._nprobe, self._ef, verified=old.files)
                    self._stamp = stamp
        return self._index


__all__ = ["LiveIndex", "SavedIndex", "read_manifest"]
