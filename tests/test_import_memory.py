"""Peak memory of an import stays flat as the input grows: one row in memory, not the features."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests._import_sources import write_generate_tsv, write_karpathy

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, threading, time
from pathlib import Path
from mmzoo.data.importing import FolderSource, TsvSource, import_features, read_karpathy_captions

def rss_anon_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no RssAnon")

results = []
for kind, out, karpathy, sources in json.loads(sys.argv[1]):
    source = TsvSource(sources) if kind == "tsv" else FolderSource(sources)
    table = read_karpathy_captions(karpathy)
    peak, stop = [rss_anon_mb()], threading.Event()
    before = peak[0]

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_anon_mb())
            time.sleep(0.002)

    thread = threading.Thread(target=watch)
    thread.start()
    manifest = import_features(source, table, out, progress=False)
    stop.set()
    thread.join()
    results.append({"grew_mb": peak[0] - before, "images": manifest["splits"]["train"]["images"]})
print(json.dumps(results))
"""


def write_inputs(folder: Path, images: int, kind: str) -> tuple[list[Path], Path]:
    folder.mkdir()
    rng = np.random.default_rng(images)
    ids = list(range(1, images + 1))
    if kind == "tsv":
        shard = folder / "feats.tsv"
        for start in range(0, images, 100):  # written in pieces: the test itself stays small too
            chunk = {
                i: (rng.standard_normal((36, 512), dtype=np.float32), np.ones((36, 4), np.float32))
                for i in ids[start : start + 100]
            }
            write_generate_tsv(shard, chunk)
        sources = [shard]
    else:
        feats = folder / "feats"
        feats.mkdir()
        for i in ids:
            np.save(feats / f"{i}.npy", rng.standard_normal((36, 512), dtype=np.float32))
        sources = [feats]
    karpathy = write_karpathy(folder / "dataset_coco.json", {"train": ids[:-10], "val": ids[-10:-5], "test": ids[-5:]})
    return sources, karpathy


def import_growth(tmp_path: Path, sizes: list[int], kind: str) -> list[float]:
    """Peak anonymous-memory growth of importing each size, one after the other in one fresh process."""
    jobs = []
    for images in sizes:
        sources, karpathy = write_inputs(tmp_path / f"in{images}", images, kind)
        jobs.append([kind, str(tmp_path / f"out{images}"), str(karpathy), [str(p) for p in sources]])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", CHILD, json.dumps(jobs)]
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["images"] for r in results] == [n - 10 for n in sizes]
    return [r["grew_mb"] for r in results]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tsv", "npy-folder"])
def test_peak_memory_is_flat_as_the_input_grows(tmp_path, kind):
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs /proc/self/status (Linux)")
    # 14 and 70 MiB of features; holding the larger would add 70 MiB
    small, large = import_growth(tmp_path, [200, 1000], kind)
    print(f"{kind}: anonymous memory grew {small:.1f} MiB (200 images), {large:.1f} MiB (1,000 images)")
    assert large < 25, f"anonymous memory grew by {large:.1f} MiB importing 70 MiB of features"
    assert large - small < 10, f"{small:.1f} MiB for 200 images, {large:.1f} MiB for 1,000"
