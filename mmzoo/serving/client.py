"""A Python client of ``mmzoo serve``: the same JSON the page uses, over the standard library's HTTP.

Each thread keeps one HTTP/1.1 connection open and sends its requests on it (keep-alive): opening a connection
per request, as ``urllib.request.urlopen`` does, costs a TCP handshake and the server's accept every time.
A connection the server has closed meanwhile (uvicorn closes idle ones after 5 s) is opened again, once.

Example:
    >>> client = Client("http://127.0.0.1:8080")  # doctest: +SKIP
    >>> client.search("a red circle left of a blue square", k=5)["results"][0]["key"]  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from mmzoo.errors import InputError, MMZooError


class ServiceError(MMZooError, RuntimeError):
    """The service answered with an error (its message and HTTP status are kept)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Client:
    """Talk to a running ``mmzoo serve``; every method returns the service's JSON as Python objects."""

    def __init__(self, url: str = "http://127.0.0.1:8080", timeout: float = 60.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"The service address must be http://HOST:PORT or https://...; got {url!r}.")
        self._scheme, self._host, self._port, self._prefix = parts.scheme, parts.hostname, parts.port, parts.path
        self._local = threading.local()  # one open connection per thread: http.client connections are not shared

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            kind = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = self._local.conn = kind(self._host, self._port, timeout=self.timeout)
        return conn

    def close(self) -> None:
        """Close this thread's connection (it is opened again on the next call)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _exchange(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, str, bytes]:
        for attempt in (0, 1):
            conn = self._connection()
            reused = conn.sock is not None
            try:
                conn.request(method, self._prefix + path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if reused and attempt == 0:  # the server closed an idle kept-alive connection: open a new one
                    continue
                raise ServiceError(0, f"cannot reach {self.url}: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise ServiceError(0, f"cannot reach {self.url}: {exc}") from None
            if response.will_close:
                self.close()
            return response.status, response.getheader("Content-Type", ""), data
        raise AssertionError("unreachable")  # the loop returns or raises

    def _call(self, path: str, body: bytes | None = None, content_type: str = "application/json") -> Any:
        headers = {"Content-Type": content_type} if body is not None else {}
        status, kind, data = self._exchange("POST" if body is not None else "GET", path, body, headers)
        if status >= 400:
            text = data.decode("utf-8", "replace")
            with contextlib.suppress(ValueError, KeyError, TypeError):
                text = json.loads(text)["error"]
            raise ServiceError(status, text)
        return json.loads(data) if kind.startswith("application/json") else data

    def search(
        self,
        text: str | None = None,
        *,
        image: str | Path | bytes | None = None,
        embedding: list[float] | None = None,
        k: int = 10,
        rerank: bool | int = False,
    ) -> dict[str, Any]:
        """``POST /search`` with a caption, an image (a path or its bytes) or an embedding."""
        if sum(x is not None for x in (text, image, embedding)) != 1:
            raise InputError("Give exactly one of text, image or embedding.")
        body: dict[str, Any] = {"k": k, "rerank": rerank}
        if text is not None:
            body["text"] = text
        elif embedding is not None:
            body["embedding"] = [float(x) for x in embedding]
        else:
            data = image if isinstance(image, bytes) else Path(image).read_bytes()
            body["image"] = base64.b64encode(data).decode("ascii")
        return self._call("/search", json.dumps(body).encode("utf-8"))

    def item(self, item_id: int) -> dict[str, Any]:
        return self._call(f"/items/{int(item_id)}")

    def thumbnail(self, item_id: int) -> bytes:
        return self._call(f"/items/{int(item_id)}/image")

    def health(self) -> dict[str, Any]:
        return self._call("/healthz")

    def info(self) -> dict[str, Any]:
        return self._call("/info")

    def metrics(self) -> str:
        return self._call("/metrics").decode("utf-8")


__all__ = ["Client", "ServiceError"]
