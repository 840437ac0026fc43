"""A Python client of ``mmzoo serve``: the same JSON the page uses, over the standard library's HTTP.

Example:
    >>> client = Client("http://127.0.0.1:8080")  # doctest: +SKIP
    >>> client.search("a red circle left of a blue square", k=5)["results"][0]["key"]  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.error
import urllib.request
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

    def _call(self, path: str, body: bytes | None = None, content_type: str = "application/json") -> Any:
        request = urllib.request.Request(self.url + path, data=body, method="POST" if body is not None else "GET")
        if body is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = response.read()
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            with contextlib.suppress(ValueError, KeyError, TypeError):
                text = json.loads(text)["error"]
            raise ServiceError(exc.code, text) from None
        except urllib.error.URLError as exc:
            raise ServiceError(0, f"cannot reach {self.url}: {exc.reason}") from None
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
