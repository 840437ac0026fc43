"""``mmzoo serve INDEX [--rerank MODEL --k 50] [--host 127.0.0.1 --port 8080]``: search an index over HTTP.

Opens the index (checking every file's sha256), loads the model that built it, and serves the search page at
``/`` and the JSON API (``POST /search``, ``GET /items/{id}``, ``/items/{id}/image``, ``/healthz``, ``/metrics``).
``--rerank MODEL`` rescores the top ``--k`` of every query asking for it with MODEL's full score; only those K
items are read and prepared. Binds 127.0.0.1 (this machine only) unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse

from mmzoo.cli._load import load_model, resolve_device
from mmzoo.errors import InputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve an index: a search page and a JSON API")
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("index", help="index folder (mmzoo index build)")
    p.add_argument("--rerank", default=None, help="a model that reranks the shortlist (default: the index's model)")
    p.add_argument("--k", type=int, default=50, help="shortlist size a rerank rescores (default 50)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--nprobe", type=int, default=None, help="IVF lists searched per query (default: the saved one)")
    p.add_argument("--ef", type=int, default=None, help="HNSW search breadth (default: the saved one)")
    p.add_argument("--max-upload-mb", type=float, default=20, help="largest request body accepted (default 20)")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the index files at start-up")
    p.add_argument("--device", default=None, help="e.g. cuda; default cpu")
    p.set_defaults(run=run)


def open_searcher(args: argparse.Namespace):
    from mmzoo.serving import LiveIndex, Searcher

    if args.k < 1:
        raise InputError(f"--k must be at least 1; got {args.k}.")
    index = LiveIndex(args.index, verify=not args.no_verify, nprobe=args.nprobe, ef=args.ef)
    device = resolve_device(args.device) if args.device else "cpu"
    name = index.current().model["name"]
    model = load_model(name, device).eval()
    reranker = load_model(args.rerank, device).eval() if args.rerank else None
    return Searcher(index, model, name, reranker, args.rerank, rerank_k=args.k)


def run(args: argparse.Namespace) -> int:
    from mmzoo.serving.app import serve

    if not 0 < args.port < 65536:
        raise InputError(f"--port must lie in 1..65535; got {args.port}.")
    searcher = open_searcher(args)
    current = searcher.index.current()
    print(f"serving {current.count} {current.kind} of {args.index} on http://{args.host}:{args.port}/")
    serve(searcher, args.host, args.port, max_upload=int(args.max_upload_mb * 1024 * 1024))
    return 0
