"""Serving benchmarks (docs/serving.md): ANN recall and latency at 1M x 512, resident memory of a served index,
HTTP overhead and loopback load, build throughput against encoding alone.

    nice python benchmarks/serving.py ann --n 1000000 --out /tmp/bench-1m      # recall@10, ms/query, memory
    python benchmarks/serving.py http  --work /tmp/bench-http                   # overhead, floor, p50/p99, qps
    python benchmarks/serving.py http-app --work /tmp/bench-http                # the app vs its earlier forms
    python benchmarks/serving.py build --work /tmp/bench-build --images 2048    # build vs encode alone

Each prints one JSON object (and the machine's load, from ``uptime``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def synthetic(n: int, dim: int, clustered: bool, seed: int = 0) -> np.ndarray:
    """Unit vectors, float16: gaussian blobs around 4,096 random centres (clustered; the centres are the same for
    every ``seed``, so queries come from the data's clusters) or uniform on the sphere."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float16)
    centres = np.random.default_rng(12345).standard_normal((4096, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for start in range(0, n, 65536):
        m = min(65536, n - start)
        x = rng.standard_normal((m, dim), dtype=np.float32)
        if clustered:
            x = centres[rng.integers(0, len(centres), m)] + 0.6 / np.sqrt(dim) * x
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start : start + m] = x
    return out


def write_index(folder: Path, vectors: np.ndarray, shard_size: int = 65536) -> None:
    """An index folder of ``vectors`` through the real shard writer and publisher (items are named, not files)."""
    from mmzoo.serving.build import PLAN, _publish
    from mmzoo.serving.shard import write_shard
    from mmzoo.serving.sources import Item

    folder.mkdir(parents=True, exist_ok=True)
    n = len(vectors)
    plan = {
        "format": "mmzoo-index/1",
        "model": {"name": "synthetic", "config": {}, "config_sha256": "-", "weights_sha256": "-"},
        "kind": "images",
        "dtype": "float16",
        "shard_size": shard_size,
        "batch_size": 1,
        "ann": {"kind": None, "nprobe": None, "ef": None},
        "segments": [{"source": {"type": "synthetic"}, "first_id": 0, "first_shard": 0, "count": n}],
    }
    (folder / PLAN).write_text(json.dumps(plan))
    for shard, start in enumerate(range(0, n, shard_size)):
        chunk = vectors[start : start + shard_size]
        items = [Item(key=f"v{start + i}") for i in range(len(chunk))]
        write_shard(folder, shard, start, chunk, items, [(0, "")] * len(chunk))
    _publish(folder, plan, previous=None)


def rss_mb() -> dict[str, float]:
    """Resident memory (MB): all, anonymous (the process's own), and file-backed (mapped index pages)."""
    fields = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1000
    return fields


def ann_bench(args: argparse.Namespace) -> dict:
    import faiss

    from mmzoo.serving import SavedIndex

    faiss.omp_set_num_threads(1)
    result = {"n": args.n, "dim": args.dim, "load_before": uptime()}
    for layout in ("clustered", "random"):
        folder = Path(args.out) / layout
        t0 = time.perf_counter()
        vectors = synthetic(args.n, args.dim, layout == "clustered")
        queries = synthetic(args.queries, args.dim, layout == "clustered", seed=1).astype(np.float32)
        built = not (folder / "manifest.json").is_file()
        if built:
            write_index(folder, vectors)
        build_s = time.perf_counter() - t0 if built else None
        exact = faiss.IndexFlatIP(args.dim)
        for start in range(0, args.n, 65536):
            exact.add(vectors[start : start + 65536].astype(np.float32))
        _, truth = exact.search(queries, 10)
        del exact
        index = SavedIndex.open(folder, verify=False)
        rows = []
        for nprobe in args.nprobe:
            index.manifest["ann"]["nprobe"] = nprobe
            from mmzoo.serving import ann

            ann.tune(index._ann, index.manifest["ann"], nprobe)
            passes = []
            for _ in range(2):  # the first pass pages the probed lists in (cold), the second finds them mapped
                times, hits = [], 0
                for q in range(len(queries)):
                    t = time.perf_counter()
                    _, ids = index.search(queries[q : q + 1], 10)
                    times.append(time.perf_counter() - t)
                    hits += len(set(ids[0].tolist()) & set(truth[q].tolist()))
                passes.append(1000 * statistics.median(times))
            rows.append(
                {
                    "nprobe": nprobe,
                    "recall@10": hits / (10 * len(queries)),
                    "median_ms_cold": passes[0],
                    "median_ms_warm": passes[1],
                }
            )
        size = sum((folder / rel).stat().st_size for rel in index.manifest["files"]) / 1e6
        result[layout] = {
            "build_s": build_s and round(build_s, 1),
            "index_mb": round(size, 1),
            "ann": index.manifest["ann"],
            "sweep": rows,
        }
        del vectors
    result["memory"] = memory_probe(Path(args.out) / "clustered", args.queries)
    result["load_after"] = uptime()
    return result


def memory_probe(folder: Path, queries: int) -> dict:
    """In a fresh process: resident memory before opening the index, after opening it and after queries."""
    code = f"""
import json, numpy as np, faiss
from benchmarks.serving import rss_mb, synthetic
faiss.omp_set_num_threads(1)
from mmzoo.serving import SavedIndex
q = synthetic({queries}, 512, True, seed=2).astype(np.float32)
before = rss_mb()
index = SavedIndex.open({str(folder)!r}, verify=True)
opened = rss_mb()
for i in range(len(q)):
    index.search(q[i:i+1], 10)
    index.items([int(i)])
print(json.dumps({{"rss_before_mb": before, "rss_opened_mb": opened, "rss_after_queries_mb": rss_mb()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    if out.returncode:
        return {"error": out.stderr[-2000:]}
    data = json.loads(out.stdout.strip().splitlines()[-1])
    from mmzoo.serving import read_manifest

    size = sum((folder / rel).stat().st_size for rel in read_manifest(folder)["files"]) / 1e6
    data["index_mb"] = round(size, 1)
    before, after = data["rss_before_mb"], data["rss_after_queries_mb"]
    data["anon_growth_fraction"] = round((after["RssAnon"] - before["RssAnon"]) / size, 4)
    data["file_pages_fraction"] = round((after["RssFile"] - before["RssFile"]) / size, 4)
    return data


def echo_app(answer: bytes) -> object:
    """The floor of an HTTP search: a bare Starlette route on the same uvicorn that reads the request and answers
    with the bytes of a real search answer, searching nothing."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def search(request: object) -> Response:
        await request.body()
        return Response(answer, media_type="application/json")

    return Starlette(routes=[Route("/search", search, methods=["POST"]), Route("/healthz", lambda r: Response(b"{}"))])


def echo_main(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(echo_app(Path(args.answer).read_bytes()), host="127.0.0.1", port=args.port, log_level="warning")


def start_server(args: argparse.Namespace, command: list[str], app: object, port: int, env: dict | None = None):
    """Serve on 127.0.0.1:port in its own process (``command``, with ``env``) or in a thread of this one
    (``app``); once it answers, returns a function that stops it and one that reads its CPU seconds (None in a
    thread: the client's work would be counted too)."""
    from mmzoo.serving import Client

    if args.server == "process":  # the server in its own process (as `mmzoo serve` runs), the load from this one
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        stop = process.terminate

        def cpu() -> float | None:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    else:  # uvicorn in a thread of this process: no second process to schedule on a loaded machine
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        process = None

        def stop() -> None:
            server.should_exit = True
            thread.join(timeout=10)

        def cpu() -> float | None:
            return None

    deadline = time.monotonic() + 120
    while True:
        try:
            Client(f"http://127.0.0.1:{port}", timeout=2).health()
            return stop, cpu
        except Exception:
            if time.monotonic() > deadline or (process is not None and process.poll() is not None):
                raise RuntimeError(f"the server {command} did not start") from None
            time.sleep(0.2)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_connection_search(port: int, query: str) -> dict:
    """``POST /search`` on a connection of its own (what ``urllib.request.urlopen`` does, and the client did)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        body = json.dumps({"k": 10, "rerank": False, "text": query}).encode()
        conn.request("POST", "/search", body=body, headers={"Content-Type": "application/json"})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def urllib_search(port: int, query: str) -> dict:
    """``POST /search`` with ``urllib.request.urlopen``, as ``Client`` did before it kept its connection."""
    import urllib.request

    body = json.dumps({"k": 10, "rerank": False, "text": query}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/search", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def http_bench(args: argparse.Namespace) -> dict:
    """A tiny real index served by uvicorn on loopback: in-process vs HTTP latency against a bare echo server's
    floor (all in one run, in turns), then load at concurrency 1/8/32."""
    import torch

    import mmzoo
    from mmzoo.data import make_shapes, read_captions
    from mmzoo.serving import Client, LiveIndex, Searcher, build_index, detect_source
    from mmzoo.serving.app import create_app

    torch.set_num_threads(1)
    before = uptime()
    work = Path(args.work)
    if not (work / "idx" / "manifest.json").is_file():
        make_shapes(work / "shapes", images=100, test_images=500, regions=8, region_dim=24)
        torch.manual_seed(0)
        model = mmzoo.create_model("vsepp", **{"embed_dim": 32, "visual.in_dim": 24})
        model.text.fit(read_captions(work / "shapes" / "train_caps.txt"))
        model.save_pretrained(work / "vse")
        build_index(
            model.eval(), str(work / "vse"), detect_source(work / "shapes", "test"), work / "idx", progress=False
        )
    from mmzoo.model import load_folder

    model = load_folder(work / "vse").eval()
    searcher = Searcher(LiveIndex(work / "idx"), model, str(work / "vse"))
    queries = read_captions(work / "shapes" / "test_caps.txt")[:200]
    answer = json.dumps(searcher.search(text=queries[0], k=10), ensure_ascii=False, separators=(",", ":")).encode()
    (work / "answer.json").write_bytes(answer)
    port, echo_port = free_port(), free_port()
    served = [
        start_server(
            args,
            [sys.executable, "-m", "mmzoo", "serve", str(work / "idx"), "--port", str(port)],
            create_app(searcher),
            port,
        ),
        start_server(
            args,
            [sys.executable, __file__, "echo", "--port", str(echo_port), "--answer", str(work / "answer.json")],
            echo_app(answer),
            echo_port,
        ),
    ]
    stops, cpus = [stop for stop, _ in served], {"load": served[0][1], "echo_load": served[1][1]}
    client, echo = Client(f"http://127.0.0.1:{port}"), Client(f"http://127.0.0.1:{echo_port}")
    paths = {
        "inprocess": lambda q: searcher.search(text=q, k=10),
        "echo": lambda q: echo.search(q, k=10),
        "http": lambda q: client.search(q, k=10),
        "http_new_connection": lambda q: new_connection_search(port, q),
        "http_urllib": lambda q: urllib_search(port, q),
    }
    if args.baseline:  # the same index served by another mmzoo (an older checkout) in the same turns
        if args.server != "process":
            raise SystemExit("--baseline needs --server process (the other mmzoo runs in its own process)")
        base_port = free_port()
        env = {**os.environ, "PYTHONPATH": str(Path(args.baseline).absolute())}
        command = [sys.executable, "-m", "mmzoo", "serve", str(work / "idx"), "--port", str(base_port)]
        stop, cpus["baseline_load"] = start_server(args, command, None, base_port, env)
        stops.append(stop)
        baseline = Client(f"http://127.0.0.1:{base_port}")
        paths["baseline_http"] = lambda q: baseline.search(q, k=10)
        paths["baseline_http_new_connection"] = lambda q: new_connection_search(base_port, q)
    for q in queries[:50]:  # warm every path up (first requests import and cache)
        for run in paths.values():
            run(q)
    times: dict[str, list[float]] = {name: [] for name in paths}
    server_total: list[float] = []
    for _ in range(args.passes):
        for q in queries:  # every path in turn on each query: the machine's load weighs on all alike
            for name, run in paths.items():
                t = time.perf_counter()
                out = run(q)
                times[name].append(time.perf_counter() - t)
                if name == "http":
                    server_total.append(out["timings"]["total"] / 1000)
    median = {name: 1000 * statistics.median(v) for name, v in times.items()}
    result = {
        "uptime_before": before,
        "uptime_after_turns": uptime(),
        "inprocess_median_ms": median["inprocess"],
        "echo_floor_median_ms": median["echo"],
        "http_median_ms": median["http"],
        "http_new_connection_median_ms": median["http_new_connection"],
        "http_urllib_median_ms": median["http_urllib"],
        "server_search_total_median_ms": 1000 * statistics.median(server_total),
        "overhead_median_ms": median["http"] - median["inprocess"],
        "overhead_above_floor_ms": median["http"] - median["inprocess"] - median["echo"],
        "answer_bytes": len(answer),
        **{f"{name}_median_ms": median[name] for name in median if name.startswith("baseline")},
    }
    targets = {"load": client, "echo_load": echo}  # the floor again, back to back: its server stays hot
    if args.baseline:
        targets["baseline_load"] = baseline
    for concurrency in (1, 8, 32):
        for target, service in targets.items():
            latencies: list[float] = []
            lock = threading.Lock()

            def one(
                i: int, latencies: list[float] = latencies, lock: threading.Lock = lock, service: Client = service
            ) -> None:
                t = time.perf_counter()
                service.search(queries[i % len(queries)], k=10)
                with lock:
                    latencies.append(time.perf_counter() - t)

            total = 400
            t0, cpu0 = time.perf_counter(), cpus[target]()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(one, range(total)))
            wall, cpu1 = time.perf_counter() - t0, cpus[target]()
            lat = np.array(latencies) * 1000
            result.setdefault(target, []).append(
                {
                    "concurrency": concurrency,
                    "requests": total,
                    "p50_ms": float(np.percentile(lat, 50)),
                    "p99_ms": float(np.percentile(lat, 99)),
                    "qps": total / wall,
                    "server_cpu_ms_per_request": None if cpu0 is None else 1000 * (cpu1 - cpu0) / total,
                }
            )
    for stop in stops:
        stop()
    result["server"] = args.server
    result["uptime"] = uptime()
    return result


def app_bench(args: argparse.Namespace) -> dict:
    """The service's own cost, in one process and one run (uvicorn threads, the keep-alive client, every path in
    turn on each query): the app as it is; with every search in the thread pool (``quick_seconds=0``); with
    Starlette's ``BaseHTTPMiddleware`` counting requests, as before; and the bare echo floor. Needs the index
    ``http`` built in ``--work``."""
    import contextlib

    import torch

    from mmzoo.data import read_captions
    from mmzoo.model import load_folder
    from mmzoo.serving import Client, LiveIndex, Searcher
    from mmzoo.serving.app import create_app

    torch.set_num_threads(1)
    before = uptime()
    work = Path(args.work)
    model = load_folder(work / "vse").eval()
    now, pool, old = (
        Searcher(LiveIndex(work / "idx"), model, str(work / "vse"), quick_seconds=q) for q in (0.005, 0.0, 0.0)
    )
    old_app = create_app(old)
    old_app.user_middleware = [m for m in old_app.user_middleware if m.cls.__name__ != "_Count"]

    @old_app.middleware("http")
    async def count(request: object, call_next: object) -> object:  # the middleware the service had before
        start = time.perf_counter()
        response = await call_next(request)
        old.metrics.request(request.scope["route"].path, response.status_code)
        old.metrics.observe("http", time.perf_counter() - start)
        return response

    apps = {"app": create_app(now), "app_thread_pool": create_app(pool), "app_base_middleware": old_app}
    apps["echo"] = echo_app((work / "answer.json").read_bytes())
    queries = read_captions(work / "shapes" / "test_caps.txt")[:200]
    with contextlib.ExitStack() as stack:
        paths = {"inprocess": lambda q: now.search(text=q, k=10)}
        for name, app in apps.items():
            port = free_port()
            stack.callback(start_server(argparse.Namespace(server="thread"), [], app, port)[0])
            client = Client(f"http://127.0.0.1:{port}")
            paths[name] = lambda q, c=client: c.search(q, k=10)
        for q in queries[:30]:
            for run in paths.values():
                run(q)
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.passes):
            for q in queries:
                for name, run in paths.items():
                    t = time.perf_counter()
                    run(q)
                    times[name].append(time.perf_counter() - t)
    return {
        **{f"{name}_median_ms": 1000 * statistics.median(v) for name, v in times.items()},
        "uptime_before": before,
        "uptime": uptime(),
    }


def build_stages(build: object) -> dict[str, float]:
    """Where one more build spends its time on the model's thread (cProfile, cumulative seconds of the parts
    encoding alone does not have; the reader thread's reading and hashing overlap them and are not counted)."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    t0 = time.perf_counter()
    build()
    total = time.perf_counter() - t0
    profile.disable()
    wanted = {
        "encode_inputs": "encode (the model, on batches the reader thread read ahead)",
        "result": "waiting for the reader thread",
        "write_shard": "shard files (.npy, Parquet, progress record, fsync)",
        "model_identity": "hashing the model's weights",
        "items": "listing the source",
        "_publish": "ANN index and manifest",
        "fsync": "fsync, of every file written (also counted in the rows above)",
    }
    out = {"total (profiled, slower)": round(total, 3)}
    for (_file, _line, name), row in pstats.Stats(profile).stats.items():
        key = "fsync" if "posix.fsync" in name else name
        if key in wanted:
            out[wanted[key]] = round(out.get(wanted[key], 0.0) + row[3], 3)
    return out


def build_bench(args: argparse.Namespace) -> dict:
    """A pixel model over rendered shapes: full ``build_index`` against encoding the same images alone, in turns.

    "encode alone" reads, hashes, decodes, preprocesses and encodes the images batch by batch on one thread and
    writes nothing (what a plain loop over ``model.encode_images`` does); "forward only" runs the model on pixels
    preprocessed beforehand (the model's own ceiling). One untimed round of each first: imports (pyarrow, faiss),
    the page cache and lazily built transforms are not charged to either.
    """
    import shutil

    import torch

    import mmzoo
    from mmzoo.data.render import render_shapes
    from mmzoo.serving import build_index, detect_source
    from mmzoo.serving.shard import encode_inputs

    torch.set_num_threads(1)
    before = uptime()
    work = Path(args.work)
    if not (work / "png" / "images" / "train").is_dir():
        render_shapes(work / "png", images=args.images, dev_images=10, test_images=10, size=128)
    torch.manual_seed(0)
    settings = {"embed_dim": 64, "visual.weights": "none", "visual.preprocess.image_size": 64}
    model = mmzoo.create_model("pixels-lite0", **settings).eval()
    model.text.fit(["a red circle"])
    source = detect_source(work / "png" / "images" / "train")
    items = source.items()
    batches = [items[start : start + 64] for start in range(0, len(items), 64)]

    def encode_alone() -> None:
        for batch in batches:
            inputs, _ = source.read(batch)
            encode_inputs(model, source.kind, inputs)

    def forward_only(pixels: list) -> None:
        for batch in pixels:
            encode_inputs(model, source.kind, batch)

    def build() -> None:
        shutil.rmtree(work / "idx", ignore_errors=True)
        build_index(model, "pixels-lite0", source, work / "idx", batch_size=64, shard_size=256, progress=False)

    pixels = [model.preprocess(source.read(batch)[0]) for batch in batches]
    encode_alone(), forward_only(pixels), build()  # the untimed round
    rounds = []
    for _ in range(args.rounds):  # the three in turn, so the shared machine's load weighs on all alike
        seconds, cpu = {}, {}
        for name, run in (("encode", encode_alone), ("forward", lambda: forward_only(pixels)), ("build", build)):
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            seconds[name], cpu[name] = time.perf_counter() - t0, time.process_time() - c0
        rounds.append(
            {
                "encode_alone_items_per_s": len(items) / seconds["encode"],
                "forward_only_items_per_s": len(items) / seconds["forward"],
                "build_items_per_s": len(items) / seconds["build"],
                "build_over_encode": seconds["encode"] / seconds["build"],
                "build_over_forward": seconds["forward"] / seconds["build"],
                "cpu_encode_over_build": cpu["encode"] / cpu["build"],
            }
        )
    return {
        "images": len(items),
        "rounds": rounds,
        "median_build_over_encode": statistics.median(r["build_over_encode"] for r in rounds),
        "median_build_over_forward": statistics.median(r["build_over_forward"] for r in rounds),
        "median_cpu_encode_over_build": statistics.median(r["cpu_encode_over_build"] for r in rounds),
        "build_stages_s": build_stages(build),
        "uptime_before": before,
        "uptime": uptime(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    a = sub.add_parser("ann")
    a.add_argument("--n", type=int, default=1_000_000)
    a.add_argument("--dim", type=int, default=512)
    a.add_argument("--queries", type=int, default=200)
    a.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64, 128])
    a.add_argument("--out", default="/tmp/mmzoo-bench-ann")
    h = sub.add_parser("http")
    h.add_argument("--work", default="/tmp/mmzoo-bench-http")
    h.add_argument("--server", choices=["process", "thread"], default="process")
    h.add_argument("--passes", type=int, default=2, help="passes over the 200 queries, every path in turn")
    h.add_argument(
        "--baseline",
        help="a folder holding another mmzoo package (git archive REV mmzoo | tar -x -C DIR): its server is "
        "measured in the same turns (--server process)",
    )
    e = sub.add_parser("echo", help="the floor server http runs (a bare Starlette route answering fixed bytes)")
    e.add_argument("--port", type=int, required=True)
    e.add_argument("--answer", required=True)
    a2 = sub.add_parser("http-app", help="the app's own cost against its earlier forms, in one process")
    a2.add_argument("--work", default="/tmp/mmzoo-bench-http")
    a2.add_argument("--passes", type=int, default=2)
    b = sub.add_parser("build")
    b.add_argument("--work", default="/tmp/mmzoo-bench-build")
    b.add_argument("--images", type=int, default=2048)
    b.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.what == "echo":
        echo_main(args)
        return
    run = {"ann": ann_bench, "http": http_bench, "http-app": app_bench, "build": build_bench}[args.what]
    print(json.dumps(run(args), indent=1))


if __name__ == "__main__":
    main()
