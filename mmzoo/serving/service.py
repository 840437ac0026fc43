"""The search service behind the HTTP API: a live index, its model, an optional reranker, and per-stage metrics.

:meth:`Searcher.search` is what ``POST /search`` runs; it calls :func:`mmzoo.serving.retrieve.retrieve` (the
path ``model.search`` over a saved index takes too) and adds each hit's metadata, kept apart from the ANN call so
a large K costs K row lookups.
"""

from __future__ import annotations

import io
import math
import threading
import time
from typing import Any

import numpy as np

from mmzoo.errors import InputError
from mmzoo.serving.retrieve import check_index_model, check_reranker, retrieve
from mmzoo.serving.saved import LiveIndex

#: latency histogram buckets, seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: a search whose kind recently took less than this is "quick": the HTTP service runs it on its event loop, where
#: handing it to a worker thread and back would cost more than the search (two thread wake-ups: 0.2 ms on an idle
#: core, milliseconds on a loaded machine). Slower ones (image encodes, reranks, big models) go to the thread pool
#: so they do not hold up health checks, metrics and thumbnails.
QUICK_SECONDS = 0.005


class Metrics:
    """Counters and per-stage latency histograms, written in the Prometheus text format (version 0.0.4)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.stages: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def request(self, endpoint: str, status: int) -> None:
        with self._lock:
            key = (endpoint, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            if status >= 400:
                self.errors[key] = self.errors.get(key, 0) + 1

    def observe(self, stage: str, seconds: float) -> None:
        with self._lock:
            buckets = self.stages.setdefault(stage, [0] * len(BUCKETS))
            for n, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    buckets[n] += 1
            self.sums[stage] = self.sums.get(stage, 0.0) + seconds
            self.counts[stage] = self.counts.get(stage, 0) + 1

    def render(self) -> str:
        lines = [
            "# HELP mmzoo_requests_total HTTP requests by endpoint and status.",
            "# TYPE mmzoo_requests_total counter",
        ]
        with self._lock:
            for (endpoint, status), n in sorted(self.requests.items()):
                lines.append(f'mmzoo_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            lines += [
                "# HELP mmzoo_errors_total HTTP requests answered with an error.",
                "# TYPE mmzoo_errors_total counter",
            ]
            for (endpoint, status), n in sorted(self.errors.items()):
                lines.append(f'mmzoo_errors_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            lines += [
                "# HELP mmzoo_stage_seconds Latency of each search stage (encode, ann, rerank, metadata, total).",
                "# TYPE mmzoo_stage_seconds histogram",
            ]
            for stage in sorted(self.stages):
                for bound, n in zip(BUCKETS, self.stages[stage], strict=True):
                    lines.append(f'mmzoo_stage_seconds_bucket{{stage="{stage}",le="{bound}"}} {n}')
                lines.append(f'mmzoo_stage_seconds_bucket{{stage="{stage}",le="+Inf"}} {self.counts[stage]}')
                lines.append(f'mmzoo_stage_seconds_sum{{stage="{stage}"}} {self.sums[stage]:.6f}')
                lines.append(f'mmzoo_stage_seconds_count{{stage="{stage}"}} {self.counts[stage]}')
        return "\n".join(lines) + "\n"


def decode_image(data: bytes) -> Any:
    """Uploaded bytes -> an RGB PIL image, or an InputError saying the upload is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > 64_000_000:
                raise InputError(f"The uploaded image is {img.width}x{img.height}; at most 64 megapixels are accepted.")
            return img.convert("RGB")
    except UnidentifiedImageError:
        raise InputError(
            "The upload is not an image: its bytes are in no format this server reads (PNG, JPEG, ...)."
        ) from None
    except (OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"The upload is not an image this server can read: {exc}") from None


class Searcher:
    """Search one index folder with its model (and optionally rerank the shortlist with another model).

    Args:
        index: a :class:`LiveIndex` (follows ``index add``).
        model: the model that built the index (checked by its weights).
        model_name: its name, for messages.
        reranker: a model whose full score reorders the top ``rerank_k`` (None: the index model's own full score,
            when a request asks for reranking).
        reranker_name: its name, for messages.
        rerank_k: the shortlist a rerank request rescores by default.
        quick_seconds: searches of a kind that recently took less than this (seconds, a running mean) are
            "quick" (:meth:`quick`): the HTTP service runs them on its event loop.
    """

    def __init__(
        self,
        index: LiveIndex,
        model: Any,
        model_name: str,
        reranker: Any | None = None,
        reranker_name: str | None = None,
        rerank_k: int = 50,
        quick_seconds: float = QUICK_SECONDS,
    ) -> None:
        current = index.current()
        check_index_model(current, model, model_name)
        if reranker is not None:
            check_reranker(current, reranker, reranker_name or "the reranker")
        self.index, self.model, self.reranker, self.rerank_k = index, model, reranker, rerank_k
        self.reranker_name = reranker_name
        self.metrics = Metrics()
        self._lock = threading.Lock()  # torch modules are shared: one encode/rerank at a time
        self.quick_seconds = quick_seconds
        self._typical: dict[tuple[str, bool, bool], float] = {}  # recent seconds per _key

    def search(
        self,
        text: str | None = None,
        image: Any | None = None,
        embedding: Any | None = None,
        k: int = 10,
        rerank: bool | int | None = None,
    ) -> dict[str, Any]:
        """One query (exactly one of text, image, embedding) -> ``{"results": [...], "timings": {...}}``."""
        answer = self._search(text, image, embedding, k, rerank, wait=True)
        assert answer is not None  # a waiting search always runs
        return answer

    def search_now(
        self,
        text: str | None = None,
        image: Any | None = None,
        embedding: Any | None = None,
        k: int = 10,
        rerank: bool | int | None = None,
    ) -> dict[str, Any] | None:
        """:meth:`search`, or None at once when the model is busy with another query (the caller then runs
        :meth:`search` where waiting is harmless: the HTTP service never blocks its event loop on the lock)."""
        return self._search(text, image, embedding, k, rerank, wait=False)

    def quick(
        self,
        text: str | None = None,
        image: Any | None = None,
        embedding: Any | None = None,
        k: int = 10,
        rerank: bool | int | None = None,
    ) -> bool:
        """Whether the last searches of this query's kind (text, image or embedding; reranked or not; k above
        100 or not) took less than ``quick_seconds`` (a running mean): a kind not searched yet is not quick."""
        typical = self._typical.get(_key(text, image, embedding, k, bool(rerank)))
        return typical is not None and typical < self.quick_seconds

    def _search(
        self, text: Any, image: Any, embedding: Any, k: int, rerank: bool | int | None, wait: bool
    ) -> dict[str, Any] | None:
        given = [x is not None for x in (text, image, embedding)]
        if sum(given) != 1:
            raise InputError('Give exactly one of "text", "image" or "embedding".')
        if text is not None and not isinstance(text, str):
            raise InputError('"text" must be a string.')
        rerank_k = None
        if rerank:
            rerank_k = self.rerank_k if rerank is True else rerank
            rerank_k = max(rerank_k, k) if isinstance(rerank_k, int) and not isinstance(rerank_k, bool) else rerank_k
            if embedding is not None:
                raise InputError("Reranking needs the query itself (text or image), not an embedding.")
        if not self._lock.acquire(blocking=wait):
            return None
        try:
            index = self.index.current()
            start = time.perf_counter()
            queries = [text] if text is not None else ([image] if image is not None else None)
            ranked = retrieve(
                index,
                self.model,
                queries,
                k=k,
                embeddings=None if embedding is None else np.asarray(embedding, dtype=np.float64),
                reranker=self.reranker,
                rerank=rerank_k,
            )
        finally:
            self._lock.release()
        t = time.perf_counter()
        results = []
        ids, scores = ranked.ids[0], ranked.scores[0]
        keep = ids >= 0
        for row, score in zip(index.items(ids[keep].tolist()), scores[keep].tolist(), strict=True):
            row["score"] = None if math.isnan(score) else float(score)
            results.append(row)
        timings = dict(ranked.timings)
        timings["metadata"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - start
        for stage, seconds in timings.items():
            self.metrics.observe(stage, seconds)
        key = _key(text, image, embedding, k, rerank_k is not None)
        previous = self._typical.get(key)
        self._typical[key] = timings["total"] if previous is None else 0.8 * previous + 0.2 * timings["total"]
        return {
            "results": results,
            "timings": {k_: round(v * 1000, 3) for k_, v in timings.items()},
            "index_version": index.version,
            "count": index.count,
            "reranked": rerank_k is not None,
        }

    def info(self) -> dict[str, Any]:
        index = self.index.current()
        return {
            "model": index.model["name"],
            "kind": index.kind,
            "count": index.count,
            "dim": index.dim,
            "version": index.version,
            "ann": index.manifest["ann"],
            "rerank_model": self.reranker_name if self.reranker is not None else index.model["name"],
            "rerank_k": self.rerank_k,
        }


def _key(text: Any, image: Any, embedding: Any, k: Any, reranked: bool) -> tuple[str, bool, bool]:
    """What a search's time depends on: the query's kind, reranking, and many results (their metadata)."""
    kind = "text" if text is not None else ("image" if image is not None else "embedding")
    return kind, reranked, isinstance(k, int) and k > 100


__all__ = ["QUICK_SECONDS", "Metrics", "Searcher", "decode_image"]
