"""A loopback HTTP server that answers like the Hugging Face Hub, so the real huggingface_hub code runs in tests.

It implements what huggingface_hub 2.4.0 calls for downloading and uploading a model repository:

* ``HEAD|GET /{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit``, a quoted ``ETag`` (the git blob sha1, or the
  sha256 for LFS files, which also go out as ``X-Linked-Etag``), ``Content-Length``; ``Range: bytes=N-`` gives
  206 with ``Content-Range`` (resumed downloads). ``cut_once`` makes the next full GET of a file stop halfway
  and close the connection, as a dropped network would; ``tamper`` serves a file with one byte flipped (same size)
  and ``forbidden`` answers a repository with 403.
* ``GET /api/models/{repo}/revision/{rev}`` (``id``, ``sha``, ``siblings``) and
  ``GET /api/models/{repo}/tree/{rev}`` (``type``, ``path``, ``size``, ``oid`` and ``lfs: {oid, size,
  pointerSize}``), which ``snapshot_download`` uses.
* not-found answers are 404 with ``X-Error-Code`` ``RepoNotFound`` / ``RevisionNotFound`` / ``EntryNotFound``,
  which huggingface_hub maps to its exception types. No 5xx (the client retries those for ~23 s) and no
  ``X-Xet-Hash`` / ``xetHash`` (that keeps the client on plain HTTP).
* ``GET /api/agent-harnesses`` (huggingface_hub's user-agent detection asks once per process) answers empty.
* uploads: ``POST /api/repos/create`` (409 when it exists), ``POST /api/models/{repo}/branch/{name}``,
  ``POST /api/validate-yaml``, ``POST /api/models/{repo}/preupload/{rev}`` (``uploadMode: regular`` for every
  file) and ``POST /api/models/{repo}/commit/{rev}`` (NDJSON: a header line, then file lines with base64 content).

Files named like weights (``*.safetensors``, ``*.bin``, ``*.pt``) are served as LFS files, as the Hub's default
``.gitattributes`` makes them. Every request is recorded in ``FakeHub.requests`` so tests can count them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".npy")
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    sha = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()


def is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


@dataclass
class Repo:
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit sha
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit sha -> {path: content}
    private: bool = False

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.commits:
            return revision
        return None


class FakeHub:
    """The server's state and its thread. Use as a context manager; ``url`` is the endpoint to use."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.cut_once: set[str] = set()  # "repo/path" whose next full GET is cut off halfway
        self.forbidden: set[str] = set()  # repositories answered with 403 (a token without access)
        self.tamper: set[str] = set()  # "repo/path" served with one byte flipped (a bad mirror or proxy)
        self.headers: list[dict[str, str]] = []  # the request headers, in order
        self.last_commit_message: str | None = None
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0

    # -- lifecycle ---------------------------------------------------------------------------------------
    def __enter__(self) -> FakeHub:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- repository content ------------------------------------------------------------------------------
    def create_repo(self, repo_id: str, private: bool = False) -> Repo:
        with self.lock:
            repo = self.repos[repo_id] = Repo(private=private)
            sha = self._new_sha(repo_id)
            repo.commits[sha] = {".gitattributes": GITATTRIBUTES}
            repo.branches["main"] = sha
            return repo

    def commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main", deleted: tuple = ()) -> str:
        """Add a commit on ``branch`` with ``files`` added or replaced; returns its sha."""
        with self.lock:
            repo = self.repos[repo_id]
            parent = repo.branches.get(branch) or repo.branches["main"]
            tree = {p: c for p, c in repo.commits[parent].items() if p not in deleted}
            tree.update(files)
            sha = self._new_sha(repo_id)
            repo.commits[sha] = tree
            repo.branches[branch] = sha
            return sha

    def count(self, method: str | None = None) -> int:
        return sum(1 for m, _ in self.requests if method is None or m == method)

    def _new_sha(self, repo_id: str) -> str:
        self._counter += 1
        return hashlib.sha1(f"{repo_id}:{self._counter}".encode()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    # -- answers -----------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, data: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, code: str, message: str, extra: dict[str, str] | None = None, head: bool = False) -> None:
        body = b"" if head else json.dumps({"error": message}).encode()
        self.send_response(404)
        headers = {
            "X-Error-Code": code,
            "X-Error-Message": message,
            "Content-Type": "application/json",
            **(extra or {}),
        }
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # -- routing -----------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        with self.hub.lock:
            self.hub.requests.append((method, url.path))
            self.hub.headers.append({k.lower(): v for k, v in self.headers.items()})
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        query = parse_qs(url.query)
        body = self._body() if method == "POST" else b""
        try:
            if parts[:2] == ["api", "models"] and len(parts) >= 6 and method == "GET":
                return self._api_get(parts[2] + "/" + parts[3], parts[4], "/".join(parts[5:]), query)
            if parts[:2] == ["api", "models"] and len(parts) >= 5 and method == "POST":
                return self._api_post(parts[2] + "/" + parts[3], parts[4], "/".join(parts[5:]), body)
            if parts[:3] == ["api", "repos", "create"] and method == "POST":
                return self._create(json.loads(body or b"{}"))
            if parts[:2] == ["api", "agent-harnesses"] and method == "GET":  # huggingface_hub's agent detection
                return self._json(200, {"standardEnvVars": [], "harnesses": {}})
            if parts[:2] == ["api", "validate-yaml"] and method == "POST":
                return self._json(200, {"errors": [], "warnings": []})
            if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
                return self._resolve(parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]), method)
        except Exception as exc:  # a bug in the fake must fail the test loudly, not hang it
            return self._json(400, {"error": f"fake hub: {type(exc).__name__}: {exc}"})
        self._json(400, {"error": f"fake hub: no route for {method} {url.path}"})

    def _repo(self, repo_id: str, head: bool = False) -> Repo | None:
        if repo_id in self.hub.forbidden:
            self._send(403, b"" if head else b'{"error": "forbidden"}', {"X-Error-Message": "Access denied"}, head)
            return None
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error("RepoNotFound", "Repository not found", head=head)
        return repo

    def _commit(self, repo_id: str, repo: Repo, revision: str, head: bool = False) -> str | None:
        sha = repo.resolve(revision)
        if sha is None:
            self._error("RevisionNotFound", "Invalid rev id: " + revision, head=head)
        return sha

    # -- downloads ---------------------------------------------------------------------------------------
    def _resolve(self, repo_id: str, revision: str, path: str, method: str) -> None:
        head = method == "HEAD"
        repo = self._repo(repo_id, head)
        if repo is None:
            return
        sha = self._commit(repo_id, repo, revision, head)
        if sha is None:
            return
        content = repo.commits[sha].get(path)
        if content is None:
            self._error("EntryNotFound", f"{path} does not exist on {revision}", {"X-Repo-Commit": sha}, head=head)
            return
        etag = hashlib.sha256(content).hexdigest() if is_lfs(path) else git_sha1(content)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if is_lfs(path):
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(content))})
        if head:
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            return
        if f"{repo_id}/{path}" in self.hub.tamper:
            content = content[:-1] + bytes([content[-1] ^ 0xFF])
        start = 0
        ranged = self.headers.get("Range")
        if ranged and ranged.startswith("bytes=") and ranged.endswith("-"):
            start = int(ranged[len("bytes=") : -1])
        key = f"{repo_id}/{path}"
        if start == 0 and key in self.hub.cut_once:
            with self.hub.lock:
                self.hub.cut_once.discard(key)
            self.send_response(200)
            for k, value in headers.items():
                self.send_header(k, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content[: len(content) // 2])
            self.wfile.flush()
            self.close_connection = True  # the peer sees the body end early: a dropped download
            return
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
            self._send(206, content[start:], headers)
        else:
            self._send(200, content, headers)

    def _api_get(self, repo_id: str, action: str, rest: str, query: dict) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        if action == "revision":
            sha = self._commit(repo_id, repo, rest)
            if sha is not None:
                siblings = [{"rfilename": p} for p in sorted(repo.commits[sha])]
                self._json(200, {"id": repo_id, "sha": sha, "siblings": siblings, "private": repo.private})
            return
        if action == "tree":
            revision, _, prefix = rest.partition("/")
            sha = self._commit(repo_id, repo, revision)
            if sha is None:
                return
            self._json(200, _tree(repo.commits[sha], prefix))
            return
        self._json(400, {"error": f"fake hub: unknown api {action}"})

    def _create(self, payload: dict) -> None:
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if repo_id in self.hub.repos:
            self._json(409, {"error": "You already created this model repo", "url": f"{self.hub.url}/{repo_id}"})
            return
        self.hub.create_repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
        self._json(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id})

    def _api_post(self, repo_id: str, action: str, revision: str, body: bytes) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        if action == "branch":
            if revision in repo.branches:
                self._json(409, {"error": "Reference already exists"})
                return
            repo.branches[revision] = repo.branches["main"]
            self._json(200, {})
            return
        if action == "preupload":
            files = json.loads(body)["files"]
            answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            self._json(200, {"files": answer, "commitOid": repo.branches["main"]})
            return
        if action == "commit":
            if repo.resolve(revision) is None:
                self._error("RevisionNotFound", "Invalid rev id: " + revision)
                return
            files: dict[str, bytes] = {}
            deleted = []
            summary = ""
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "header":
                    summary = item["value"]["summary"]
                elif item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    deleted.append(item["value"]["path"])
                else:
                    self._json(400, {"error": f"fake hub: unsupported commit entry {item['key']}"})
                    return
            sha = self.hub.commit(repo_id, files, branch=revision, deleted=tuple(deleted))
            self.hub.last_commit_message = summary
            self._json(200, {"success": True, "commitOid": sha, "commitUrl": f"{self.hub.url}/{repo_id}/commit/{sha}"})
            return
        self._json(400, {"error": f"fake hub: unknown api {action}"})


def _tree(files: dict[str, bytes], prefix: str) -> list[dict]:
    entries: list[dict] = []
    folders: set[str] = set()
    for path in sorted(files):
        if prefix and not path.startswith(prefix.rstrip("/") + "/"):
            continue
        parts = path.split("/")
        for i in range(1, len(parts)):
            folders.add("/".join(parts[:i]))
        content = files[path]
        if is_lfs(path):
            pointer = lfs_pointer(content)
            entries.append(
                {
                    "type": "file",
                    "oid": git_sha1(pointer),
                    "size": len(content),
                    "path": path,
                    "lfs": {
                        "oid": hashlib.sha256(content).hexdigest(),
                        "size": len(content),
                        "pointerSize": len(pointer),
                    },
                }
            )
        else:
            entries.append({"type": "file", "oid": git_sha1(content), "size": len(content), "path": path})
    for folder in sorted(folders):
        entries.append(
            {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0, "path": folder}
        )
    return entries


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A running :class:`FakeHub` with huggingface_hub pointed at it and a fresh, empty cache.

    huggingface_hub reads ``HF_ENDPOINT``, ``HF_HOME`` and ``HF_HUB_OFFLINE`` once, at import, into
    ``huggingface_hub.constants`` (tests/conftest.py has already imported it with ``HF_HUB_OFFLINE=1``). Every
    call site reads those constants at call time (``HfApi()`` copies ``ENDPOINT`` when it is built, and mmzoo
    builds one per call), so patching them here, together with the URL template derived from ``ENDPOINT`` and
    the token and agent-registry paths, points the real client at the loopback server for one test and
    restores it afterwards.
    ``test_hub.py::test_environment_variables_in_a_fresh_process`` covers the user's route (the environment
    variables read at import) in a subprocess.
    """
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    with FakeHub() as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HOME", str(home))
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
        monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
        # huggingface_hub caches the Hub's agent list under HF_HOME: keep the fake's answer out of the real home
        monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield hub


def go_offline(monkeypatch) -> None:
    """What ``HF_HUB_OFFLINE=1`` does to an already imported huggingface_hub."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
