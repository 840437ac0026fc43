"""The one unit of embedding work: a shard of a source's items -> its embeddings and metadata files.

:func:`embed_shard` is a pure function of (model, source, shard number, options): the same inputs write the same
bytes, whoever runs it: the sequential loop, one ``torchrun`` rank among several, or a Ray Data actor. A shard is
done when its three files exist: ``NNNNN.npy`` (the model's cheap vectors, float16 or float32),
``NNNNN.parquet`` (id, key, path, caption, size, sha256 of the item's bytes) and last ``NNNNN.done.json`` (the
progress record: the shard's range and the sha256 of both files), each written to a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmzoo._atomic import atomic_write_bytes, atomic_write_json
from mmzoo.errors import InputError
from mmzoo.scoring import cheap_vectors
from mmzoo.serving._deps import require
from mmzoo.serving.sources import Item, Source

SHARDS = "shards"
DTYPES = {"float16": np.float16, "float32": np.float32}


def shard_name(shard: int) -> str:
    return f"{shard:05d}"


def shard_range(shard: int, shard_size: int, count: int) -> tuple[int, int]:
    start = shard * shard_size
    return start, min(start + shard_size, count)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_identity(model: Any, spec: str) -> dict[str, Any]:
    """What names the model an index was built with: the name given, its config and a hash of its weights."""
    members = getattr(model, "members", None)
    config = (
        {"ensemble": [m.config.to_dict() for m in members], "weights": list(model.weights)}
        if members is not None
        else model.config.to_dict()
    )
    config_text = json.dumps(config, sort_keys=True, default=str)
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy())  # no copy
    return {
        "name": spec,
        "config": config,
        "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
        "weights_sha256": digest.hexdigest(),
    }


def model_reads(model: Any) -> str:
    """What the model's image side reads: ``"images"`` (pixels) or ``"regions"``."""
    members = getattr(model, "members", None) or [model]
    return "images" if all(m.visual.takes_pixels for m in members) else "regions"


@torch.inference_mode()
def encode_inputs(model: Any, kind: str, inputs: Any) -> np.ndarray:
    """Model inputs of one batch (what :meth:`Source.read` returns) -> its cheap vectors, float32 (n, D)."""
    if kind == "texts":
        fragments = model.encode_texts(list(inputs))
    elif kind == "regions":
        features, mask = inputs
        fragments = model.encode_images(features, mask)
    else:
        fragments = model.encode_images(inputs)
    return cheap_vectors(model, fragments).float().cpu().numpy()


def check_model_fits(model: Any, kind: str, what: str = "The model") -> None:
    """Refuse a model that cannot read the source's items (pixels for a region model, or back)."""
    if kind == "texts":
        return
    reads = model_reads(model)
    if reads != kind:
        raise InputError(
            f"{what} reads {'images' if reads == 'images' else 'region features'} but the source holds "
            f"{'images' if kind == 'images' else 'region features'}: use a "
            f"{'pixel' if kind == 'images' else 'region-feature'} model for it."
        )


def embed_shard(
    model: Any,
    source: Source,
    items: Sequence[Item],
    shard: int,
    first_id: int,
    out: Path,
    dtype: str = "float16",
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Embed ``items`` (shard ``shard``, ids from ``first_id``) and write its files under ``out/shards``.

    Reading runs one batch ahead of the model in a thread (a bounded buffer of one batch), so the model is not
    idle while files are read and decoded. Returns the shard's progress record.
    """
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    vectors, stats = [], []
    with ThreadPoolExecutor(1) as reader:
        pending = reader.submit(source.read, batches[0]) if batches else None
        for b in range(len(batches)):
            inputs, batch_stats = pending.result()
            pending = reader.submit(source.read, batches[b + 1]) if b + 1 < len(batches) else None
            vectors.append(encode_inputs(model, source.kind, inputs))
            stats.extend(batch_stats)
            if progress is not None:
                progress(len(batches[b]))
    return write_shard(out, shard, first_id, np.concatenate(vectors).astype(DTYPES[dtype]), items, stats)


def write_shard(
    out: Path, shard: int, first_id: int, matrix: np.ndarray, items: Sequence[Item], stats: Sequence[tuple[int, str]]
) -> dict[str, Any]:
    """Write one shard's vectors, metadata and (last) its progress record; returns the record."""
    pa = require("pyarrow", "serving")
    pq = require("pyarrow.parquet", "serving")
    folder = out / SHARDS
    folder.mkdir(parents=True, exist_ok=True)
    name = shard_name(shard)
    buffer = io.BytesIO()
    np.save(buffer, matrix, allow_pickle=False)
    vectors = buffer.getvalue()
    atomic_write_bytes(folder / f"{name}.npy", vectors)
    table = pa.table(
        {
            "id": pa.array(range(first_id, first_id + len(items)), pa.int64()),
            "key": [i.key for i in items],
            "path": [i.path for i in items],
            "caption": [i.caption for i in items],
            "size": pa.array([s for s, _ in stats], pa.int64()),
            "sha256": [h for _, h in stats],
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=1024, compression="zstd", write_statistics=False)
    metadata = sink.getvalue().to_pybytes()
    atomic_write_bytes(folder / f"{name}.parquet", metadata)
    record = {  # the hashes of the bytes just written (fsync'ed), not of the files read back
        "shard": shard,
        "first_id": first_id,
        "count": len(items),
        "dim": int(matrix.shape[1]),
        "files": {
            f"{SHARDS}/{name}.npy": hashlib.sha256(vectors).hexdigest(),
            f"{SHARDS}/{name}.parquet": hashlib.sha256(metadata).hexdigest(),
        },
    }
    atomic_write_json(folder / f"{name}.done.json", record)
    return record


def read_done(out: Path, shard: int) -> dict[str, Any] | None:
    """The shard's progress record when the shard is complete and intact, else None (it is embedded again)."""
    path = out / SHARDS / f"{shard_name(shard)}.done.json"
    try:
        record = json.loads(path.read_text())
        for rel, sha in record["files"].items():
            if file_sha256(out / rel) != sha:
                return None
        return record
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


__all__ = [
    "DTYPES",
    "check_model_fits",
    "embed_shard",
    "encode_inputs",
    "model_identity",
    "model_reads",
    "read_done",
    "shard_name",
    "shard_range",
    "write_shard",
]
