"""Building and growing a saved index: plan the shards, embed the ones not done, then publish a new version.

An index folder::

    build.json             the plan: model, dtype, shard size, and the segments (one per build or add)
    shards/NNNNN.npy       the cheap vectors of shard N (float16 by default), memory-mappable
    shards/NNNNN.parquet   its metadata: id, key, path, caption, size, sha256 of the item's bytes
    shards/NNNNN.done.json its progress record (written last: a shard without it is embedded again)
    ann-vV.faiss           the faiss index of version V
    manifest.json          version V: counts, settings, the sha256 of every file it uses

The plan is written before any shard, so a killed build or add resumes by running the same command: the shards
already done are checked against their records and kept, the others are embedded again, and since every shard
is a pure function of the plan the folder ends byte for byte as an uninterrupted run leaves it. ``manifest.json``
is replaced in one rename only after the files of its version are complete, so a reader opens one whole version.

Engines: ``"sequential"``; under ``torchrun`` (``WORLD_SIZE`` > 1) each rank embeds the shards ``k`` with
``k % world == rank`` and rank 0 publishes; ``"ray"`` hands the shards to Ray Data (``map_batches`` with the model
as a stateful class). None schedules anything itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mmzoo._atomic import atomic_write_json
from mmzoo.errors import InputError, StorageError
from mmzoo.serving import ann
from mmzoo.serving._deps import require
from mmzoo.serving.errors import IndexMismatchError
from mmzoo.serving.shard import (
    DTYPES,
    SHARDS,
    check_model_fits,
    embed_shard,
    file_sha256,
    model_identity,
    read_done,
    shard_name,
)
from mmzoo.serving.sources import Source, open_source

logger = logging.getLogger(__name__)
FORMAT = "mmzoo-index/1"
PLAN, MANIFEST = "build.json", "manifest.json"
Loader = Callable[[str], Any]


def _plan_shards(plan: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """Every shard of the plan: (shard number, segment, first id, count)."""
    out = []
    size = plan["shard_size"]
    for seg_no, seg in enumerate(plan["segments"]):
        for j, start in enumerate(range(0, seg["count"], size)):
            out.append((seg["first_shard"] + j, seg_no, seg["first_id"] + start, min(size, seg["count"] - start)))
    return out


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StorageError(f"Cannot read {path}: {exc}") from None


def build_index(
    model: Any,
    model_spec: str,
    source: Source,
    out: str | Path,
    *,
    dtype: str = "float16",
    shard_size: int = 4096,
    batch_size: int = 64,
    kind: str | None = None,
    nprobe: int | None = None,
    ef: int | None = None,
    engine: str = "sequential",
    loader: Loader | None = None,
    progress: bool = True,
) -> Path:
    """Embed every item of ``source`` with ``model`` into a new index folder ``out`` (or resume one).

    Example:
        >>> build_index(model, "runs/vsepp", detect_source("data/shapes", split="test"), "idx")  # doctest: +SKIP
    """
    out = Path(out)
    if dtype not in DTYPES:
        raise InputError(f"--dtype must be float16 or float32; got {dtype!r}.")
    if shard_size < 1 or batch_size < 1:
        raise InputError(f"--shard-size and --batch-size must be at least 1; got {shard_size}, {batch_size}.")
    for module in ("pyarrow", "pyarrow.parquet", "faiss"):  # before any work, not after the first shard
        require(module, "serving")
    check_model_fits(model, source.kind)
    items = source.items()
    plan = {
        "format": FORMAT,
        "model": model_identity(model, model_spec),
        "kind": source.kind,
        "dtype": dtype,
        "shard_size": shard_size,
        "batch_size": batch_size,
        "ann": {"kind": kind, "nprobe": nprobe, "ef": ef},
        "segments": [{"source": source.describe(), "first_id": 0, "first_shard": 0, "count": len(items)}],
    }
    with _process_group():
        if _rank() == 0:  # one process decides (under torchrun the others wait at the barrier, then follow it)
            _start_or_resume(out, plan)
        _barrier()
        if _read_json(out / PLAN) != plan:
            raise InputError(
                f"This process cannot see the plan {out / PLAN} or it differs: run the same command on every rank, "
                "with an --out folder they all share."
            )
        _run_shards(model, model_spec, out, plan, {0: (source, items)}, engine, loader, progress)
        _barrier()  # every rank's shards are done before rank 0 reads them all
        if _rank() == 0:
            _publish(out, plan, previous=None)
        _barrier()
    return out


def _start_or_resume(out: Path, plan: dict[str, Any]) -> None:
    """Write the plan into a new or empty folder, or accept the same plan of an interrupted build."""
    old = _read_json(out / PLAN) if (out / PLAN).is_file() else None
    if old is not None:
        if (out / MANIFEST).is_file():
            raise InputError(f"{out} already holds a finished index; add items with `mmzoo index add {out} SOURCE`.")
        if old != plan:
            raise InputError(
                f"{out} holds an interrupted build with other settings; rerun it with the same model, source and "
                "options, or choose another --out."
            )
        logger.info("resuming the build in %s", out)
        for leftover in (out / SHARDS).glob(".*.tmp*"):  # half-written files of a killed writer: never trusted
            leftover.unlink()
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not an empty folder: an index is written into a new or empty folder.")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / PLAN, plan)


def add_items(
    model: Any,
    index: str | Path,
    source: Source,
    *,
    engine: str = "sequential",
    loader: Loader | None = None,
    progress: bool = True,
) -> Path:
    """Embed the items of ``source`` into the index folder ``index`` (old items are not embedded again) and
    publish a new version; readers keep the old one until they reopen."""
    out = Path(index)
    plan = _read_json(out / PLAN)
    manifest = _read_json(out / MANIFEST)
    if plan is None or manifest is None:
        raise InputError(f"{out} is not a finished index (no {PLAN} or {MANIFEST}); build it with `mmzoo index build`.")
    identity = model_identity(model, plan["model"]["name"])
    if identity["weights_sha256"] != plan["model"]["weights_sha256"]:
        raise IndexMismatchError(
            f"{out} was built by {plan['model']['name']} (weights {plan['model']['weights_sha256'][:12]}); the "
            f"model given has other weights ({identity['weights_sha256'][:12]}): add items with the index's model."
        )
    if source.kind != plan["kind"]:
        raise InputError(f"{out} holds {plan['kind']}; the source holds {source.kind}.")
    items = source.items()
    last = plan["segments"][-1]
    resuming = len(plan["segments"]) > manifest["segments"] and last["source"] == source.describe()
    if resuming:
        logger.info("resuming the add into %s", out)
    else:
        if len(plan["segments"]) > manifest["segments"]:
            raise InputError(f"{out} has an interrupted add of another source ({last['source']}); rerun that first.")
        shards = _plan_shards(plan)
        plan["segments"].append(
            {
                "source": source.describe(),
                "first_id": manifest["count"],
                "first_shard": shards[-1][0] + 1 if shards else 0,
                "count": len(items),
            }
        )
    with _process_group():
        if not resuming and _rank() == 0:
            atomic_write_json(out / PLAN, plan)
        _barrier()
        work = {len(plan["segments"]) - 1: (source, items)}
        _run_shards(model, plan["model"]["name"], out, plan, work, engine, loader, progress)
        _barrier()  # every rank's shards are done before rank 0 reads them all
        if _rank() == 0:
            _publish(out, plan, previous=manifest)
        _barrier()
    return out


def _run_shards(
    model: Any,
    model_spec: str,
    out: Path,
    plan: dict[str, Any],
    work: dict[int, tuple[Source, list[Any]]],
    engine: str,
    loader: Loader | None,
    progress: bool,
) -> None:
    """Embed the shards of the segments in ``work`` (segment -> its source and items) not done yet."""
    rank, world = _rank(), _world()
    todo = [s for s in _plan_shards(plan) if s[1] in work and read_done(out, s[0]) is None]
    if engine == "ray":
        if world > 1:
            raise InputError("--engine ray runs on a Ray cluster; do not start it under torchrun.")
        _run_on_ray(model_spec, out, plan, todo, loader)
        return
    if engine != "sequential":
        raise InputError(f"--engine must be sequential or ray; got {engine!r}.")
    mine = [s for s in todo if s[0] % world == rank]
    from tqdm.auto import tqdm

    total = sum(s[3] for s in mine)
    with tqdm(total=total, unit="item", desc="embed", disable=not progress or rank != 0, smoothing=0.1) as bar:
        for shard, seg, first_id, count in mine:
            segment = plan["segments"][seg]
            start = first_id - segment["first_id"]
            source, seg_items = work[seg]
            chunk = seg_items[start : start + count]
            embed_shard(model, source, chunk, shard, first_id, out, plan["dtype"], plan["batch_size"], bar.update)


class _RayShardEmbedder:
    """Ray Data's stateful callable: loads the model once per actor, then embeds whole shards."""

    def __init__(self, loader: Loader, model_spec: str, out: str, plan: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(int(os.environ.get("MMZOO_NUM_THREADS", "1")))
        self.model = loader(model_spec)
        self.out, self.plan = Path(out), plan
        self.work: dict[int, tuple[Source, list[Any]]] = {}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        done = []
        for shard, seg, first_id, count in zip(
            batch["shard"], batch["segment"], batch["first_id"], batch["count"], strict=True
        ):
            segment = self.plan["segments"][int(seg)]
            if int(seg) not in self.work:
                source = open_source(segment["source"])
                self.work[int(seg)] = (source, source.items())
            source, seg_items = self.work[int(seg)]
            start = int(first_id) - segment["first_id"]
            chunk = seg_items[start : start + int(count)]
            embed_shard(
                self.model,
                source,
                chunk,
                int(shard),
                int(first_id),
                self.out,
                self.plan["dtype"],
                self.plan["batch_size"],
            )
            done.append(int(shard))
        return {"shard": np.asarray(done, dtype=np.int64)}


def _run_on_ray(model_spec: str, out: Path, plan: dict[str, Any], todo: list[Any], loader: Loader | None) -> None:
    ray = require("ray", "ray")
    require("ray.data", "ray")
    if loader is None:
        raise InputError("--engine ray needs a model loader (the CLI passes its own).")
    if not todo:
        return
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    rows = [{"shard": s, "segment": g, "first_id": f, "count": c} for s, g, f, c in todo]
    workers = max(1, min(len(rows), int(ray.available_resources().get("CPU", 1))))
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
    finished = dataset.map_batches(
        _RayShardEmbedder,
        fn_constructor_args=(loader, model_spec, str(out), plan),
        batch_size=1,
        concurrency=workers,
        num_cpus=1,
    ).take_all()
    missing = {s[0] for s in todo} - {int(r["shard"]) for r in finished}
    if missing:
        raise StorageError(f"Ray finished without shards {sorted(missing)}; rerun the same command to resume.")


def _vector_chunks(out: Path, records: list[dict[str, Any]]) -> Iterator[np.ndarray]:
    for record in records:
        yield np.load(out / SHARDS / f"{shard_name(record['shard'])}.npy", mmap_mode="r", allow_pickle=False)


def _publish(out: Path, plan: dict[str, Any], previous: dict[str, Any] | None) -> None:
    """Write the ANN index and then the manifest of the next version (one rename makes it current)."""
    shards = _plan_shards(plan)
    records = []
    for shard, *_ in shards:
        record = read_done(out, shard)
        if record is None:
            raise StorageError(f"Shard {shard_name(shard)} of {out} is missing or damaged; rerun the command.")
        records.append(record)
    count = sum(r["count"] for r in records)
    dims = {r["dim"] for r in records}
    if len(dims) != 1:
        raise StorageError(f"The shards of {out} hold vectors of several sizes {sorted(dims)}.")
    dim = dims.pop()
    version = 1 if previous is None else previous["version"] + 1
    ann_name = f"ann-v{version}.faiss"
    if previous is None:
        asked = plan["ann"]
        settings = ann.choose(count, asked["kind"], asked["nprobe"], asked["ef"])
        ann.build(settings, dim, _vector_chunks(out, records), _training_sample(out, records, settings), out / ann_name)
    else:
        settings = previous["ann"]
        new = records[len(previous["shards"]) :]
        ann.add(out / previous["ann"]["file"], _vector_chunks(out, new), out / ann_name)
        for stale in out.glob("ann-v*.faiss"):  # keep the previous version for readers that still hold it
            if stale.name not in (ann_name, previous["ann"]["file"]):
                stale.unlink()
    settings = {**settings, "file": ann_name}
    files = {rel: sha for r in records for rel, sha in r["files"].items()}
    files[ann_name] = file_sha256(out / ann_name)
    manifest = {
        "format": FORMAT,
        "version": version,
        "model": {k: plan["model"][k] for k in ("name", "config_sha256", "weights_sha256")},
        "config": plan["model"]["config"],
        "kind": plan["kind"],
        "dtype": plan["dtype"],
        "dim": dim,
        "count": count,
        "segments": len(plan["segments"]),
        "sources": [{"source": s["source"], "first_id": s["first_id"], "count": s["count"]} for s in plan["segments"]],
        "shards": [{"shard": r["shard"], "first_id": r["first_id"], "count": r["count"]} for r in records],
        "ann": settings,
        "files": files,
    }
    atomic_write_json(out / MANIFEST, manifest)


def _training_sample(out: Path, records: list[dict[str, Any]], settings: dict[str, Any]) -> np.ndarray:
    """Evenly spaced vectors for the IVF quantiser (empty when none is trained): the same on every build."""
    if settings["kind"] != "ivf":
        return np.zeros((0, records[0]["dim"]), np.float32)
    count = sum(r["count"] for r in records)
    wanted = min(count, settings["nlist"] * ann.TRAIN_PER_LIST)
    picks = np.linspace(0, count - 1, wanted).astype(np.int64)
    parts, start = [], 0
    for record, chunk in zip(records, _vector_chunks(out, records), strict=True):
        local = picks[(picks >= start) & (picks < start + record["count"])] - start
        parts.append(np.asarray(chunk[local], dtype=np.float32))
        start += record["count"]
    return np.concatenate(parts)


# -- torchrun: every rank runs the same command; only these few collective steps differ ---------------------
def _world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


@contextlib.contextmanager
def _process_group() -> Iterator[None]:
    """Join torchrun's gloo group for one build or add, and leave it on the way out, error or not (torch asks
    for ``destroy_process_group`` before exit; a group left open is torn down by the interpreter instead)."""
    if _world() == 1:
        yield
        return
    import torch.distributed as dist

    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        if joined and dist.is_initialized():
            dist.destroy_process_group()


def _barrier() -> None:
    if _world() > 1:
        import torch.distributed as dist

        dist.barrier()


__all__ = ["FORMAT", "MANIFEST", "PLAN", "add_items", "build_index"]
