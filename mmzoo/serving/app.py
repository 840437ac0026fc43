"""The HTTP service: FastAPI routes over a :class:`~mmzoo.serving.service.Searcher`, and :func:`serve` (uvicorn).

Routes: ``GET /`` (the search page), ``POST /search`` (JSON ``{"text" | "image" (base64) | "embedding", "k",
"rerank"}``, or the raw bytes of an image with ``?k=&rerank=``), ``GET /items/{id}``, ``GET /items/{id}/image`` (a
thumbnail, only of files inside the indexed roots), ``GET /info``, ``GET /healthz``, ``GET /metrics``
(Prometheus text). Bodies above ``max_upload`` bytes are refused with 413 before they are read in full. Every
error is JSON ``{"error": message}``.
"""

import base64
import binascii
import io
import json
import re
import time
from typing import Any

from mmzoo.errors import InputError, MMZooError
from mmzoo.serving._deps import require
from mmzoo.serving.page import PAGE
from mmzoo.serving.service import Searcher, decode_image

#: the largest request body accepted (an uploaded image, or JSON with a base64 image).
MAX_UPLOAD = 20 * 1024 * 1024
THUMBNAIL = 256
_ID = re.compile(r"^[0-9]{1,18}$")


class TooLarge(Exception):
    pass


def create_app(searcher: Searcher, max_upload: int = MAX_UPLOAD) -> Any:
    """The FastAPI application serving ``searcher``."""
    fastapi = require("fastapi", "serve")
    responses = require("fastapi.responses", "serve")
    concurrency = require("starlette.concurrency", "serve")
    JSONResponse, Response, HTMLResponse = responses.JSONResponse, responses.Response, responses.HTMLResponse
    app = fastapi.FastAPI(title="mmzoo search", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = searcher.metrics

    def error(status: int, message: str) -> Any:
        return JSONResponse({"error": message}, status_code=status)

    exceptions = require("starlette.exceptions", "serve")

    @app.exception_handler(exceptions.HTTPException)
    async def http_error(request: Any, exc: Any) -> Any:  # 404 and 405 in the same JSON shape as the others
        return error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    app.add_middleware(_Count, metrics=metrics)

    async def read_body(request: Any) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_upload:
            raise TooLarge
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_upload:
                raise TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    @app.get("/", response_class=HTMLResponse)
    def page() -> Any:
        return HTMLResponse(PAGE)

    @app.post("/search")
    async def search(request: fastapi.Request) -> Any:
        try:
            body = await read_body(request)
        except TooLarge:
            return error(
                413, f"The request body is larger than {max_upload // (1024 * 1024)} MB; send a smaller image."
            )
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if ctype == "application/json":
                args = _json_query(body)
            elif ctype.startswith("image/") or ctype == "application/octet-stream":
                if not body:
                    raise InputError("The uploaded image is empty.")
                args = {"image": body, **_params(request.query_params)}
            else:
                raise InputError(f"Send JSON or an image (Content-Type image/...); got {ctype or 'no Content-Type'}.")
            if args.get("image") is not None:
                args["image"] = decode_image(args["image"])
            # a quick search runs right here; a slow one, or one that would wait for the model, in a worker thread
            result = searcher.search_now(**args) if searcher.quick(**args) else None
            if result is None:
                result = await concurrency.run_in_threadpool(searcher.search, **args)
        except MMZooError as exc:
            return error(400, str(exc))
        return JSONResponse(result)

    @app.get("/items/{item_id}")
    def item(item_id: str) -> Any:
        found = _lookup(searcher, item_id)
        if isinstance(found, tuple):
            return error(*found)
        return JSONResponse(found)

    @app.get("/items/{item_id}/image")
    def image(item_id: str) -> Any:
        found = _lookup(searcher, item_id)
        if isinstance(found, tuple):
            return error(*found)
        path = searcher.index.current().image_file(found["id"])
        if path is None:
            return error(404, f"Item {item_id} has no picture inside the indexed folders.")
        from PIL import Image

        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                img.thumbnail((THUMBNAIL, THUMBNAIL))
                buffer = io.BytesIO()
                img.save(buffer, format="PNG")
        except OSError:
            return error(404, f"The picture of item {item_id} cannot be read.")
        return Response(buffer.getvalue(), media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/info")
    def info() -> Any:
        return JSONResponse(searcher.info())

    @app.get("/healthz")
    def healthz() -> Any:
        index = searcher.index.current()
        return JSONResponse({"status": "ok", "version": index.version, "count": index.count})

    @app.get("/metrics")
    def prometheus() -> Any:
        return Response(searcher.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


class _Count:
    """Counts every request by route and status and times it (the ``http`` stage of ``/metrics``).

    A plain ASGI middleware: Starlette's ``@app.middleware("http")`` ran each request through extra tasks and a
    memory stream, which cost 0.09 to 3.1 ms a request (ten same-run comparisons, docs/serving.md "HTTP").
    """

    def __init__(self, app: Any, metrics: Any) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            self.metrics.request(_endpoint(scope), 500)
            raise
        self.metrics.request(_endpoint(scope), status)
        self.metrics.observe("http", time.perf_counter() - start)


def _endpoint(scope: dict[str, Any]) -> str:
    return getattr(scope.get("route"), "path", "unmatched")


def _params(query: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "k" in query:
        try:
            out["k"] = int(query["k"])
        except ValueError:
            raise InputError(f"k must be an integer; got {query['k']!r}.") from None
    if query.get("rerank", "").lower() in ("1", "true", "yes", "on"):
        out["rerank"] = True
    return out


def _json_query(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body or b"null")
    except ValueError as exc:
        raise InputError(f"The body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InputError('Send a JSON object such as {"text": "a red circle", "k": 10}.')
    unknown = set(document) - {"text", "image", "embedding", "k", "rerank"}
    if unknown:
        raise InputError(f"Unknown fields {sorted(unknown)}; use text, image (base64), embedding, k, rerank.")
    if sum(document.get(key) is not None for key in ("text", "image", "embedding")) != 1:
        raise InputError('Give exactly one of "text", "image" or "embedding".')
    args = {key: document[key] for key in ("text", "embedding", "k", "rerank") if document.get(key) is not None}
    if document.get("image") is not None:
        try:
            args["image"] = base64.b64decode(document["image"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise InputError('"image" must be the base64 text of an image file.') from None
    if "embedding" in args and (
        not isinstance(args["embedding"], list) or not all(isinstance(x, int | float) for x in args["embedding"])
    ):
        raise InputError('"embedding" must be a list of numbers.')
    return args


def _lookup(searcher: Searcher, item_id: str) -> dict[str, Any] | tuple[int, str]:
    """An item's metadata, or (status, message) for an id that is not a number of this index."""
    if not _ID.match(item_id):
        return 400, f"Item ids are whole numbers (0, 1, 2, ...); got {item_id[:80]!r}."
    index = searcher.index.current()
    try:
        return index.items([int(item_id)])[0]
    except KeyError:
        return 404, f"No item {item_id}: this index holds ids 0 to {index.count - 1}."


def serve(searcher: Searcher, host: str = "127.0.0.1", port: int = 8080, max_upload: int = MAX_UPLOAD) -> None:
    """Run the service with uvicorn until interrupted (binds 127.0.0.1 unless told otherwise)."""
    uvicorn = require("uvicorn", "serve")
    uvicorn.run(create_app(searcher, max_upload), host=host, port=port, log_level="warning")


__all__ = ["MAX_UPLOAD", "create_app", "serve"]
