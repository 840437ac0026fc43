"""Moving files to and from the Hugging Face Hub: snapshots of mmzoo folders, single foreign files, uploads.

Everything that touches the network goes through huggingface_hub's own functions (``hf_hub_download``,
``snapshot_download``, ``HfApi.create_repo`` / ``create_commit``) with ``library_name="mmzoo"``, so its cache,
``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, ``HF_HOME`` and token handling apply unchanged. huggingface_hub is
imported inside the functions: ``import mmzoo`` stays light.

What mmzoo adds on top:

* ``config.json`` is fetched first, so a missing plugin is reported before any weight is downloaded;
* every downloaded file is checked against the Hub's own record of it (the tree listing the download cached:
  sha256 for LFS files such as ``model.safetensors``, the git blob sha1 for the rest; for a single foreign file
  the sha256 the Hub sent as its LFS ``X-Linked-Etag``), which catches a cached blob corrupted after download
  even when its size is unchanged;
* huggingface_hub's exceptions become one :class:`~mmzoo.errors.HubError` with a message saying what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mmzoo._atomic import readable_folder
from mmzoo._version import __version__
from mmzoo.checkpoint import CONFIG_NAME, WEIGHTS_NAME, read_document, refuse_code
from mmzoo.checkpoint.rundir import METRICS_NAME, RUN_NAME, model_folder
from mmzoo.errors import CheckpointError, HubError
from mmzoo.hub import cards, zoo
from mmzoo.hub.names import HF_PREFIX, REPO_ID, Source
from mmzoo.registry import PretrainedEntry

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo, ModelCard

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: names in a saved folder that are never uploaded, at any depth: dot-files and dot-folders (atomic-write
#: leftovers ``.NAME.tmp1234``, a save's ``.mmzoo-save.tmp``, caches) and temporary or partial downloads.
_SKIP_UPLOAD = re.compile(r"^\.|\.tmp\d*$|\.(incomplete|lock|partial)$")


def _uploaded(relative: str) -> bool:
    """Whether a file of a saved folder (path relative to it, POSIX) belongs in the upload."""
    return not any(_SKIP_UPLOAD.search(part) for part in relative.split("/"))


def _upload_files(folder: Path) -> list[tuple[str, Path]]:
    """The files of ``folder`` an upload may send, as (path in the repository, local file).

    Only regular files inside the folder: a link is followed only when its target is inside the folder too (it
    travels under the link's name); a link that leaves the folder (``notes.txt -> ~/.cache/huggingface/token``) and
    anything that is not a regular file (a FIFO, a device) are refused, all named, before any request is made.
    """
    root = folder.resolve()
    files: list[tuple[str, Path]] = []
    refused: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if _uploaded((here / d).relative_to(folder).as_posix()))
        for name in sorted(filenames + [d for d in dirnames if (here / d).is_symlink()]):
            path = here / name
            relative = path.relative_to(folder).as_posix()
            if not _uploaded(relative):
                continue
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                target = path.resolve()
                if not target.is_relative_to(root):
                    refused.append(f"{relative} (a link to {os.readlink(path)}, outside the folder)")
                elif target.is_file():
                    files.append((relative, target))
                elif not target.is_dir():  # a dangling link or a special file: nothing to send
                    refused.append(f"{relative} (a link to {os.readlink(path)}, not a regular file)")
            elif stat.S_ISREG(mode):
                files.append((relative, path))
            elif not stat.S_ISDIR(mode):
                refused.append(f"{relative} (not a regular file)")
    if refused:
        raise HubError(
            f"{folder} holds entries that are not its own regular files: {'; '.join(refused)}. mmzoo uploads only "
            "the regular files inside the folder (a link could send a secret such as a token): replace the links "
            "with copies of the files, or remove them."
        )
    return files


def _common(source: Source, cache_dir: str | Path | None, token: str | bool | None, **flags: bool) -> dict:
    return {
        "repo_id": source.repo_id,
        "cache_dir": str(cache_dir) if cache_dir is not None else None,
        "token": token,
        "library_name": "mmzoo",
        "library_version": __version__,
        **flags,
    }


# -- downloading ------------------------------------------------------------------------------------------
def fetch_snapshot(
    source: Source,
    *,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    check_config: Callable[[dict], None] | None = None,
) -> Path:
    """Fetch an mmzoo folder from the Hub into the cache (or find it there) and return it, verified.

    ``check_config`` sees the parsed ``config.json`` before any weight is downloaded (e.g. whether the plugins
    it needs are installed).
    """
    from huggingface_hub import hf_hub_download, snapshot_download

    common = _common(source, cache_dir, token, local_files_only=local_files_only, force_download=force_download)
    with _hub_errors(source, CONFIG_NAME, local_only=local_files_only):
        # the config first: it names the plugins the model needs, checked before any weight is fetched
        config_path = Path(hf_hub_download(filename=CONFIG_NAME, revision=source.revision, **common))
    commit = config_path.parent.name
    if check_config is not None:
        check_config(read_document(config_path.parent))
    with _hub_errors(source, None, local_only=local_files_only):
        folder = Path(snapshot_download(revision=commit, **common))
    if not (folder / WEIGHTS_NAME).is_file() and not (folder / CONFIG_NAME).is_file():
        raise HubError(f"{source.name!r}: the snapshot {folder} holds no mmzoo model.")
    document = read_document(folder)
    if "model" in document and not (folder / WEIGHTS_NAME).is_file():
        # offline, huggingface_hub returns a partial snapshot when it has no tree listing to compare with
        raise HubError(
            f"{source.name!r}: the snapshot {folder} has no {WEIGHTS_NAME}: the cache holds only part of the model "
            f"(only its config was fetched before), or the repository has no weights. With network, run "
            f"`mmzoo download {source.name}`; offline, copy a complete cache over."
        )
    verify_snapshot(folder, source)
    return folder


#: the files of a folder in the transformers layout that a native load reads (the other frameworks' weights,
#: ``pytorch_model.bin``, ``tf_model.h5``, ``flax_model.msgpack``, are never fetched: gigabytes, and pickle).
NATIVE_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model")


def fetch_native(
    source: Source,
    *,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    pinned: str | None = None,
) -> Path:
    """Fetch a folder in another library's layout (configs, safetensors, tokenizer files) and verify it.

    Every file is checked against the Hub's record of it (sha256 of the weights, git sha1 of the rest) and
    ``model.safetensors`` against ``pinned`` when the zoo entry pins its sha256; a folder that carries code
    (a ``.py`` file, an ``auto_map``) is refused before anything builds from it.
    """
    from huggingface_hub import snapshot_download

    common = _common(source, cache_dir, token, local_files_only=local_files_only, force_download=force_download)
    with _hub_errors(source, None):
        folder = Path(snapshot_download(revision=source.revision, allow_patterns=list(NATIVE_PATTERNS), **common))
    if not (folder / CONFIG_NAME).is_file():
        raise HubError(f"{source.name!r}: the snapshot {folder} has no {CONFIG_NAME}; it is not a model folder.")
    if not list(folder.glob("*.safetensors")):
        raise HubError(
            f"{source.name!r}: the snapshot {folder} holds no safetensors weights (mmzoo never unpickles "
            "pytorch_model.bin): the cache holds only part of the folder, or the repository has no safetensors."
        )
    refuse_code(folder)
    verify_snapshot(folder, source)
    weights = folder / WEIGHTS_NAME
    if pinned and weights.is_file():
        verify_file(weights, pinned, source)
    return folder


def fetch_file(
    source: Source,
    filename: str,
    *,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> tuple[Path, str]:
    """Fetch one file (a foreign checkpoint) from the Hub into the cache: (its path, the sha256 the Hub records).

    The Hub's record of an LFS file is its sha256, which the cache uses as the blob's name; check the file
    against it with :func:`verify_file` before trusting its content.
    """
    from huggingface_hub import hf_hub_download

    check_repo_path(filename, source)
    common = _common(source, cache_dir, token, local_files_only=local_files_only, force_download=force_download)
    with _hub_errors(source, filename, local_only=local_files_only):
        path = Path(hf_hub_download(filename=filename, revision=source.revision, **common))
    recorded = Path(os.path.realpath(path)).name
    if not _SHA256.match(recorded):
        raise HubError(
            f"{source.name!r}: the Hub recorded no sha256 for {filename} (not an LFS file), so it cannot be verified; "
            "mmzoo does not load unverified foreign checkpoints."
        )
    return path, recorded


def check_repo_path(filename: object, source: Source) -> None:
    """A file name inside a Hub repository: a relative POSIX path with no ``..``, ``.`` or empty part (a name that
    climbs out of the repository would also climb out of the cache folder); a HubError naming it otherwise."""
    parts = filename.split("/") if isinstance(filename, str) else []
    if not parts or filename.startswith("/") or "\\" in filename or any(p in ("", ".", "..") for p in parts):
        raise HubError(
            f"{source.name!r}: {filename!r} is not a file name inside a repository: write a relative path with '/' "
            "between folders and no '..', '.' or empty parts (e.g. 'coco_butd_region_bert/model_best.pth')."
        )


def verify_file(path: Path, expected: str, source: Source, pinned: str | None = None) -> str:
    """The file's sha256 must equal the Hub's record (``expected``) and the zoo entry's pin, when it has one.

    Returns the sha256, read once, for the caller to reuse (a conversion keys its cache by it).
    """
    actual = file_digest(path, "sha256")
    for digest in (expected, pinned):
        if digest and actual != digest:
            raise HubError(
                f"{source.name!r}: the cached {path.name} is corrupted or not the pinned file: its sha256 is {actual}, "
                f"expected {digest}. Delete {os.path.realpath(path)} and download again "
                f"(`mmzoo download {source.name} --force`)."
            )
    return actual


@contextlib.contextmanager
def _hub_errors(
    source: Source, filename: str | None, *, local_only: bool = False, upload: bool = False
) -> Iterator[None]:
    """Turn huggingface_hub's exceptions, and the HTTP library's below it, into one HubError that says what to do.

    ``local_only``: the caller asked for no request; ``upload``: the block pushes (offline mode forbids it, and a
    token must be allowed to write)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:  # recent huggingface_hub; older versions raise an HTTP EntryNotFoundError (the local one is caught first)
        from huggingface_hub.errors import RemoteEntryNotFoundError as remote_entry_missing
    except ImportError:
        from huggingface_hub.utils import EntryNotFoundError as remote_entry_missing

    where = f"{source.repo_id}" + (f"@{source.revision}" if source.revision else "")
    label = f"{source.name!r}" + (f" ({where})" if source.name != f"{HF_PREFIX}{where}" else "")
    try:
        yield
    except GatedRepoError as exc:
        raise HubError(
            f"{label}: the repository is gated; accept its terms on the Hub and pass token=... "
            f"(or run `hf auth login`). ({_first_line(exc)})"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise HubError(
            f"{label}: no repository {source.repo_id!r} on {constants.ENDPOINT}. Check the name; if it is private, "
            "pass token=... (or run `hf auth login`)."
        ) from exc
    except RevisionNotFoundError as exc:
        raise HubError(
            f"{label}: the repository {source.repo_id!r} has no revision {source.revision!r} "
            "(branch, tag or commit). Leave revision out for the default branch."
        ) from exc
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, ValueError) as exc:
        http = _cause(exc, HfHubHTTPError)
        if http is not None:
            raise _http_error(label, http, upload) from exc
        if upload and (constants.HF_HUB_OFFLINE or isinstance(exc, OfflineModeIsEnabled)):
            raise HubError(
                f"Cannot push {label}: HF_HUB_OFFLINE=1 is set, and offline mode forbids uploads. Unset it "
                "(or set HF_HUB_OFFLINE=0) on a machine with network and push again; the folder is unchanged."
            ) from exc
        if isinstance(exc, ValueError) and not constants.HF_HUB_OFFLINE and _cause(exc, Exception) is None:
            raise  # a programming error, not a download failure
        if constants.HF_HUB_OFFLINE or _mentions_local_only(exc):
            asked = local_only or _mentions_local_only(exc)  # mmzoo goes offline itself for local_files_only
            reason = "local_files_only=True was passed" if asked else "HF_HUB_OFFLINE=1 is set"
        else:
            reason = f"the Hub ({constants.ENDPOINT}) could not be reached"
        raise HubError(
            f"{label} is not (completely) in the local cache ({constants.HF_HUB_CACHE}) and {reason}. Prefetch it on "
            f"a machine with network (`mmzoo download {source.name}`) and copy HF_HOME over, or unset HF_HUB_OFFLINE."
            f" ({_first_line(exc)})"
        ) from exc
    except remote_entry_missing as exc:
        what = f"no file {filename!r}" if filename else "a file listed in its tree that cannot be fetched"
        hint = " It is not an mmzoo model (mmzoo saves config.json and model.safetensors)." if filename else ""
        raise HubError(f"{label}: the repository has {what}.{hint}") from exc
    except HfHubHTTPError as exc:
        raise _http_error(label, exc, upload) from exc
    except Exception as exc:
        if not (isinstance(exc, OSError) or _is_transport_error(exc)):
            raise  # a programming error, not a transfer failure
        verb = "upload" if upload else "download"
        raise HubError(
            f"{label}: the {verb} failed, the Hub ({constants.ENDPOINT}) could not be reached: {_first_line(exc)}. "
            f"Check the network connection (and HF_ENDPOINT, a proxy) and run the {verb} again."
        ) from exc


#: the HTTP libraries huggingface_hub has used below it: their connection and timeout errors are not OSErrors.
_TRANSPORTS = {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3", "h11", "h2"}


def _is_transport_error(exc: BaseException) -> bool:
    """A connection, timeout or protocol error of the HTTP library (raised as itself by uploads)."""
    return any(k.__module__.split(".")[0] in _TRANSPORTS for k in type(exc).__mro__)


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of ``kind`` in the ``__cause__`` / ``__context__`` chain below ``exc``."""
    seen = {id(exc)}
    current = exc.__cause__ or exc.__context__
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _mentions_local_only(exc: BaseException) -> bool:
    return "local_files_only" in str(exc)


def _http_error(label: str, exc: BaseException, upload: bool = False) -> HubError:
    response = getattr(exc, "response", None)
    status = response.status_code if response is not None else "?"
    right = "write to" if upload else "read"
    hint = f" Check that your token (token=... or `hf auth login`) may {right} it." if status in (401, 403) else ""
    return HubError(f"{label}: the Hub answered HTTP {status}: {_first_line(exc)}.{hint}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- verification -----------------------------------------------------------------------------------------
def file_digest(path: Path, algorithm: str) -> str:
    """sha256 of a file, or its git blob sha1 (``algorithm="git-sha1"``), read in 1 MiB chunks."""
    if algorithm == "git-sha1":
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"blob {path.stat().st_size}\0".encode())
    else:
        digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def expected_digests(folder: Path) -> dict[str, tuple[str, str]]:
    """{relative path: (algorithm, hex digest)} as the Hub listed them for this snapshot.

    The source is the tree listing huggingface_hub caches next to the snapshot
    (``<repo cache>/trees/<commit>.json``, written from the Hub's ``/tree`` answer): the LFS oid (sha256)
    for LFS files, the git blob id otherwise. For a weights file with no listing (a cache written by an
    older huggingface_hub), the blob's own name is used: the cache names LFS blobs by the sha256 the Hub
    sent in ``X-Linked-Etag``.
    """
    commit = folder.name
    tree = folder.parent.parent / "trees" / f"{commit}.json"
    found: dict[str, tuple[str, str]] = {}
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        files = json.loads(tree.read_text(encoding="utf-8"))["files"]
        for path, info in files.items():
            if info.get("lfs_sha256"):
                found[path] = ("sha256", info["lfs_sha256"])
            elif info.get("blob_id"):
                found[path] = ("git-sha1", info["blob_id"])
    weights = folder / WEIGHTS_NAME
    if WEIGHTS_NAME not in found and weights.is_symlink():
        blob = Path(os.path.realpath(weights)).name
        if _SHA256.match(blob):
            found[WEIGHTS_NAME] = ("sha256", blob)
    return found


def verify_snapshot(folder: Path, source: Source) -> None:
    """Check every downloaded file against the Hub's digests; the weights must have one."""
    expected = expected_digests(folder)
    if (folder / WEIGHTS_NAME).exists() and WEIGHTS_NAME not in expected:
        raise HubError(
            f"{source.name!r}: the Hub's sha256 of {WEIGHTS_NAME} is not recorded in the cache, so the weights "
            f"cannot be verified. Download them again: `mmzoo download {source.name} --force`."
        )
    for relative, (algorithm, digest) in sorted(expected.items()):
        path = folder / relative
        if not path.exists():
            continue  # filtered out of the download, or not needed
        actual = file_digest(path, algorithm)
        if actual != digest:
            blob = os.path.realpath(path)
            raise HubError(
                f"{source.name!r}: the cached file {relative} is corrupted: its {algorithm} is {actual}, but the "
                f"Hub lists {digest}. Delete {blob} and download again (`mmzoo download {source.name} --force`)."
            )
    logger.debug("verified %d files of %s", len(expected), folder)


# -- uploading --------------------------------------------------------------------------------------------
def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    card: ModelCard | None = None,
    extra_files: dict[str, Path] | None = None,
) -> CommitInfo:
    """Upload a saved model folder to ``repo_id`` in one commit, creating the repository if needed.

    ``card`` replaces the folder's ``README.md``; ``extra_files`` maps more paths in the repository to local
    files (the training run's logs).
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    document = read_document(folder)  # refuse to publish a folder that is not a saved mmzoo model
    if "model" in document and not (folder / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"{folder / WEIGHTS_NAME} is missing: the folder holds a config but no weights.")
    if not isinstance(repo_id, str) or not REPO_ID.match(repo_id.removeprefix(HF_PREFIX)):
        raise HubError(f"{repo_id!r} is not a valid Hub repository id: write ORG/NAME.")
    repo_id = repo_id.removeprefix(HF_PREFIX)
    operations = []
    for relative, path in _upload_files(folder):
        if card is not None and relative == "README.md":
            continue
        operations.append(CommitOperationAdd(path_in_repo=relative, path_or_fileobj=str(path)))
    for relative, path in (extra_files or {}).items():
        if Path(path).is_symlink() or not Path(path).is_file():
            raise HubError(f"{path} is not a regular file (a link?); mmzoo uploads only regular files. Copy it in.")
        operations.append(CommitOperationAdd(path_in_repo=relative, path_or_fileobj=str(path)))
    if card is not None:
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode()))
    api = HfApi(library_name="mmzoo", library_version=__version__, token=token)
    source = Source("hub", f"{HF_PREFIX}{repo_id}", repo_id=repo_id, revision=revision)
    with _hub_errors(source, None, upload=True):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or f"Upload mmzoo model ({len(operations)} files)",
            revision=revision,
        )
    logger.info("pushed %d files to %s: %s", len(operations), repo_id, info.commit_url)
    return info


class PushToHubMixin:
    """``push_to_hub`` for anything with ``save_pretrained(folder)``: models and ensembles."""

    def save_pretrained(self, directory: str | Path) -> Path:  # provided by the class that mixes this in
        raise NotImplementedError

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool = False,
        token: str | bool | None = None,
        revision: str | None = None,
        commit_message: str | None = None,
    ) -> CommitInfo:
        """Save with the card of ``repo_id`` into a temporary folder and upload it in one commit; the CommitInfo.

        Examples:
            >>> model.push_to_hub("my-org/my-mmca", private=True)  # doctest: +SKIP
        """
        import tempfile

        with tempfile.TemporaryDirectory(prefix="mmzoo-push-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "model")
            repo = str(repo_id).removeprefix(HF_PREFIX)
            card = cards.model_card(read_document(folder), repo_id=repo, entry=entry_for_repo(repo))
            return push_folder(
                folder,
                repo_id,
                private=private,
                token=token,
                revision=revision,
                commit_message=commit_message,
                card=card,
            )


def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
) -> CommitInfo:
    """Publish a training run (``RUNDIR/best`` with ``run.json`` and ``metrics.jsonl``) or a saved folder.

    The model card's evaluation results come from the run's own ``metrics.jsonl`` (best epoch, dev split);
    ``run.json`` and ``metrics.jsonl`` travel in the same commit under ``training/``.
    """
    run_dir = Path(run_dir)
    folder = readable_folder(model_folder(run_dir))  # .best.old when a swap of best/ was cut
    measured = cards.read_run_metrics(run_dir)
    extra = {f"training/{n}": run_dir / n for n in (RUN_NAME, METRICS_NAME) if (run_dir / n).is_file()}
    card = cards.model_card(
        read_document(folder), repo_id=repo_id.removeprefix(HF_PREFIX), entry=entry_for_repo(repo_id), measured=measured
    )
    return push_folder(
        folder,
        repo_id,
        private=private,
        token=token,
        revision=revision,
        commit_message=commit_message or f"Upload mmzoo training run {run_dir.name}",
        card=card,
        extra_files=extra,
    )


def entry_for_repo(repo_id: str) -> PretrainedEntry | None:
    """The zoo entry whose weights live in ``repo_id`` (its card then carries the entry's facts)."""
    repo_id = repo_id.removeprefix(HF_PREFIX)
    return next(
        (e for e in zoo.pretrained_entries() if e.weights.repo == repo_id and e.weights.format == "mmzoo"), None
    )


__all__ = [
    "NATIVE_PATTERNS",
    "PushToHubMixin",
    "entry_for_repo",
    "expected_digests",
    "fetch_file",
    "fetch_native",
    "fetch_snapshot",
    "file_digest",
    "push_folder",
    "push_run",
    "verify_file",
    "verify_snapshot",
]
