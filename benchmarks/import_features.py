"""Import speed: ``import_features`` against the I/O floor (reading and decoding the same bytes, writing nothing).

    python benchmarks/import_features.py                      # 10,000 images x 36 x 2048, TSV and .npy folder
    python benchmarks/import_features.py --images 500 --out /tmp/x.json   # a quick run

For each source format it writes the input once (TSV: two shuffled shards as generate_tsv.py writes
them; folder: one ``{id}.npy`` per image), then, ``--repeats`` times, back to back: the floor (read every
row and decode it to a float32 array: base64 for TSV, ``np.load`` for the folder) and the full import
(scan, decode, checks, padded writes, fsync'ed checkpoints, sha256 of every output file, manifest). The
ratio import / floor is taken within each repeat, so page-cache state and machine load hit both alike;
the median over repeats is reported. A second reference, the *copy floor*, also writes the decoded
rows to one file (fsync'ed every 256 MiB, as the import's checkpoints), so the cost of the disk itself
shows apart from mmzoo's own work. Reported too: the phases of the import (scan, hashing) timed on their own
and the peak anonymous memory the import added. Input and output are deleted as soon as they are
measured (10,000 x 36 x 2048 float32 is 2.9 GB per copy, the TSV 3.9 GB).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import platform
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mmzoo.data.importing import FolderSource, TsvSource, import_features, read_karpathy_captions
from mmzoo.data.importing.writer import sha256_file

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    names = [x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name")]
    return {
        "cpu": names[0].split(":", 1)[1].strip() if names else platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakMemory:
    """Peak growth of this process's anonymous memory while the block runs (sampled every 5 ms)."""

    def __enter__(self) -> PeakMemory:
        self.before = self.peak = rss_anon_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon_mb())
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.grew_mb = self.peak - self.before


# -- inputs -------------------------------------------------------------------------------------------
def image_arrays(pool: list[np.ndarray], boxes: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
    return pool[i % len(pool)] + np.float32(i), boxes + np.float32(i % 97)


def write_tsv(folder: Path, ids: list[int], regions: int, dim: int) -> list[Path]:
    """Two shards in generate_tsv.py's row format (random order, as its GPUs split the ids)."""
    rng = np.random.default_rng(0)
    pool = [rng.standard_normal((regions, dim), dtype=np.float32) for _ in range(16)]
    boxes = rng.uniform(0, 500, size=(regions, 4)).astype(np.float32)
    order = rng.permutation(ids).tolist()
    shards = [folder / "feats.tsv.0", folder / "feats.tsv.1"]
    for shard, part in zip(shards, (order[: len(order) // 2], order[len(order) // 2 :]), strict=True):
        with open(shard, "wb") as handle:
            for i in part:
                f, b = image_arrays(pool, boxes, i)
                b64b, b64f = base64.b64encode(b.tobytes()), base64.b64encode(f.tobytes())
                handle.write(b"%d\t640\t480\t%d\t%s\t%s\r\n" % (i, regions, b64b, b64f))
    return shards


def write_folder(folder: Path, ids: list[int], regions: int, dim: int) -> list[Path]:
    rng = np.random.default_rng(0)
    pool = [rng.standard_normal((regions, dim), dtype=np.float32) for _ in range(16)]
    boxes = np.zeros((regions, 4), np.float32)
    target = folder / "feats"
    target.mkdir()
    for i in ids:
        np.save(target / f"{i}.npy", image_arrays(pool, boxes, i)[0])
    return [target]


def write_karpathy(path: Path, ids: list[int]) -> Path:
    n = len(ids)
    split_of = ["train"] * (n - n // 5) + ["val"] * (n // 10) + ["test"] * (n // 5 - n // 10)
    images = [
        {
            "cocoid": i,
            "filename": f"COCO_val2014_{i:012d}.jpg",
            "split": split,
            "sentences": [{"raw": f"a photo numbered {i}, caption {c}"} for c in range(5)],
        }
        for i, split in zip(ids, split_of, strict=True)
    ]
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


# -- the floor ----------------------------------------------------------------------------------------
def floor_tsv(shards: list[Path], dim: int) -> int:
    """Read every row and decode its boxes and features to float32 arrays; nothing is written."""
    total = 0
    for shard in shards:
        with open(shard, "rb") as handle:
            for line in handle:
                fields = line.rstrip(b"\r\n").split(b"\t")
                boxes = np.frombuffer(binascii.a2b_base64(fields[4]), dtype=np.float32).reshape(-1, 4)
                feats = np.frombuffer(binascii.a2b_base64(fields[5]), dtype=np.float32).reshape(-1, dim)
                total += len(feats) + len(boxes) * 0
    return total


def floor_folder(folders: list[Path], dim: int) -> int:
    total = 0
    for folder in folders:
        for entry in os.scandir(folder):
            total += len(np.load(entry.path, allow_pickle=False))
    return total


def decoded_rows(kind: str, sources: list[Path], dim: int) -> Iterator[np.ndarray]:
    if kind == "tsv":
        for shard in sources:
            with open(shard, "rb") as handle:
                for line in handle:
                    yield np.frombuffer(binascii.a2b_base64(line.rstrip(b"\r\n").split(b"\t")[5]), np.float32)
    else:
        for folder in sources:
            for entry in os.scandir(folder):
                yield np.load(entry.path, allow_pickle=False)


def floor_copy(kind: str, sources: list[Path], dim: int, target: Path) -> int:
    """The floor plus writing: decoded rows appended to one file, fsync'ed every 256 MiB and at the end."""
    written = since = 0
    with open(target, "wb") as out:
        for row in decoded_rows(kind, sources, dim):
            out.write(row)
            written += row.nbytes
            since += row.nbytes
            if since >= 256 * 2**20:
                out.flush()
                os.fsync(out.fileno())
                since = 0
        out.flush()
        os.fsync(out.fileno())
    target.unlink()
    return written


# -- one format -----------------------------------------------------------------------------------------
def measure(kind: str, work: Path, ids: list[int], regions: int, dim: int, repeats: int) -> dict[str, Any]:
    inputs = work / f"{kind}-input"
    inputs.mkdir(parents=True)
    start = time.perf_counter()
    sources = (write_tsv if kind == "tsv" else write_folder)(inputs, ids, regions, dim)
    written_s = time.perf_counter() - start
    input_bytes = sum(p.stat().st_size for s in sources for p in ([s] if s.is_file() else s.iterdir()))
    karpathy = write_karpathy(inputs / "dataset_coco.json", ids)
    table = read_karpathy_captions(karpathy)

    def source() -> Any:
        return TsvSource(sources) if kind == "tsv" else FolderSource(sources)

    rows = []
    for repeat in range(repeats):
        out = work / f"{kind}-out"
        start = time.perf_counter()
        regions_read = (floor_tsv if kind == "tsv" else floor_folder)(sources, dim)
        floor_s = time.perf_counter() - start
        assert regions_read == len(ids) * regions
        start = time.perf_counter()
        floor_copy(kind, sources, dim, work / "copy.bin")
        copy_s = time.perf_counter() - start
        start = time.perf_counter()
        source().scan()
        scan_s = time.perf_counter() - start
        with PeakMemory() as memory:
            start = time.perf_counter()
            manifest = import_features(source(), table, out, extractor="benchmark", progress=False)
            import_s = time.perf_counter() - start
        start = time.perf_counter()
        for split in manifest["splits"].values():
            for name in split["files"]:
                sha256_file(out / name)
        hash_s = time.perf_counter() - start
        output_bytes = sum(p.stat().st_size for p in out.iterdir())
        shutil.rmtree(out)
        rows.append(
            {
                "repeat": repeat,
                "floor_s": round(floor_s, 2),
                "import_s": round(import_s, 2),
                "ratio": round(import_s / floor_s, 3),
                "copy_s": round(copy_s, 2),
                "ratio_to_copy": round(import_s / copy_s, 3),
                "scan_s": round(scan_s, 2),
                "hash_s": round(hash_s, 2),
                "import_peak_anon_mb": round(memory.grew_mb, 1),
                "load_average": round(os.getloadavg()[0], 2),
            }
        )
        print(f"{kind} repeat {repeat}: {rows[-1]}", flush=True)
    shutil.rmtree(inputs)
    return {
        "images": len(ids),
        "regions": regions,
        "dim": dim,
        "input_bytes": input_bytes,
        "output_bytes": output_bytes,
        "input_written_s": round(written_s, 1),
        "ratio_median": round(statistics.median(r["ratio"] for r in rows), 3),
        "ratio_to_copy_median": round(statistics.median(r["ratio_to_copy"] for r in rows), 3),
        "floor_mb_per_s": round(input_bytes / 2**20 / statistics.median(r["floor_s"] for r in rows), 1),
        "import_mb_per_s": round(input_bytes / 2**20 / statistics.median(r["import_s"] for r in rows), 1),
        "repeats": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--regions", type=int, default=36)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--formats", nargs="+", default=["tsv", "npy-folder"], choices=["tsv", "npy-folder"])
    parser.add_argument("--work", default="/tmp/mmzoo-import-benchmark", help="scratch folder (deleted after)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "import_features.json"))
    args = parser.parse_args(argv)
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    ids = list(range(1, args.images + 1))
    results: dict[str, Any] = {
        "command": "python benchmarks/import_features.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "load_average_before": round(os.getloadavg()[0], 2),
        "formats": {},
    }
    try:
        for kind in args.formats:
            results["formats"][kind] = measure(kind, work, ids, args.regions, args.dim, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_average_after"] = round(os.getloadavg()[0], 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: [v["ratio_median"], v["ratio_to_copy_median"]] for k, v in results["formats"].items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
