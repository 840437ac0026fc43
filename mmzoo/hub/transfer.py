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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mmzoo._atomic import readable_folder
from mmzoo._version import __version__
from mmzoo.checkpoint import CONFIG_NAME, WEIGHTS_NAME, read_document
from mmzoo.errors import CheckpointError, HubError
from mmzoo.hub import cards, zoo
from mmzoo.hub.names import HF_PREFIX, REPO_ID, Source
from mmzoo.registry import PretrainedEntry

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo, ModelCard

logger = logging.getLogger("mmzoo.hub")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: names in a saved folder that are never uploaded, at any depth: dot-files and dot-folders (atomic-write
#: leftovers ``.NAME.tmp1234``, a save's ``.mmzoo-save.tmp``, caches) and temporary or partial downloads.
_SKIP_UPLOAD = re.compile(r"^\.|\.tmp\d*$|\.(incomplete|lock|partial)$")


def _uploaded(relative: str) -> bool:
    """Whether a file of a saved folder (path relative to it, POSIX) belongs in the upload."""
    return not any(_SKIP_UPLOAD.search(part) for part in relative.split("/"))


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
    with _hub_errors(source, CONFIG_NAME):
        # the config first: it names the plugins the model needs, checked before any weight is fetched
        config_path = Path(hf_hub_download(filename=CONFIG_NAME, revision=source.revision, **common))
    commit = config_path.parent.name
    if check_config is not None:
        check_config(read_document(config_path.parent))
    with _hub_errors(source, None):
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


#: files of a transformers-layout folder (format ``"transformers"``): configs, tokenizer and processor files and
#: safetensors weights; never code (``*.py``), pickles (``*.bin``, ``*.pt``) or other frameworks' weights.
TRANSFORMERS_FILES = ("*.json", "*.txt", "*.model", "*.safetensors")


def fetch_transformers_snapshot(
    source: Source,
    *,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> Path:
    """Fetch a folder written by transformers' ``save_pretrained`` (the authors' own repository) into the cache.

    Only :data:`TRANSFORMERS_FILES` are downloaded; every file is checked against the Hub's digests (the weights
    against their sha256), as for an mmzoo folder. The folder holds no mmzoo ``config.json``: the zoo entry's
    recipe says which components read it.
    """
    from huggingface_hub import snapshot_download

    common = _common(source, cache_dir, token, local_files_only=local_files_only, force_download=force_download)
    with _hub_errors(source, None):
        folder = Path(snapshot_download(revision=source.revision, allow_patterns=list(TRANSFORMERS_FILES), **common))
    missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / name).is_file()]
    if missing:
        raise HubError(
            f"{source.name!r}: the snapshot {folder} has no {' and no '.join(missing)}: the repository is not a "
            "transformers folder with safetensors weights, or the cache holds only part of it (with network, run "
            f"`mmzoo download {source.name}`)."
        )
    verify_snapshot(folder, source)
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

    common = _common(source, cache_dir, token, local_files_only=local_files_only, force_download=force_download)
    with _hub_errors(source, filename):
        path = Path(hf_hub_download(filename=filename, revision=source.revision, **common))
    recorded = Path(os.path.realpath(path)).name
    if not _SHA256.match(recorded):
        raise HubError(
            f"{source.name!r}: the Hub recorded no sha256 for {filename} (not an LFS file), so it cannot be verified; "
            "mmzoo does not load unverified foreign checkpoints."
        )
    return path, recorded


def verify_file(path: Path, expected: str, source: Source, pinned: str | None = None) -> None:
    """The file's sha256 must equal the Hub's record (``expected``) and the zoo entry's pin, when it has one."""
    actual = file_digest(path, "sha256")
    for digest in (expected, pinned):
        if digest and actual != digest:
            raise HubError(
                f"{source.name!r}: the cached {path.name} is corrupted or not the pinned file: its sha256 is {actual}, "
                f"expected {digest}. Delete {os.path.realpath(path)} and download again "
                f"(`mmzoo download {source.name} --force`)."
            )


@contextlib.contextmanager
def _hub_errors(source: Source, filename: str | None) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into one HubError that says what to do."""
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
            raise _http_error(label, http) from exc
        if isinstance(exc, ValueError) and not constants.HF_HUB_OFFLINE and _cause(exc, Exception) is None:
            raise  # a programming error, not a download failure
        if constants.HF_HUB_OFFLINE or _mentions_local_only(exc):
            reason = "HF_HUB_OFFLINE=1 is set" if constants.HF_HUB_OFFLINE else "local_files_only=True was passed"
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
        raise _http_error(label, exc) from exc
    except OSError as exc:
        raise HubError(f"{label}: download failed: {exc}") from exc


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


def _http_error(label: str, exc: BaseException) -> HubError:
    response = getattr(exc, "response", None)
    status = response.status_code if response is not None else "?"
    hint = " Check that your token (token=... or `hf auth login`) may read it." if status in (401, 403) else ""
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
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if not _uploaded(relative) or (card is not None and relative == "README.md"):
            continue
        operations.append(CommitOperationAdd(path_in_repo=relative, path_or_fileobj=str(path)))
    for relative, path in (extra_files or {}).items():
        operations.append(CommitOperationAdd(path_in_repo=relative, path_or_fileobj=str(path)))
    if card is not None:
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode()))
    api = HfApi(library_name="mmzoo", library_version=__version__, token=token)
    source = Source("hub", f"{HF_PREFIX}{repo_id}", repo_id=repo_id, revision=revision)
    with _hub_errors(source, None):
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

        Example:
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
    best = readable_folder(run_dir / "best")  # .best.old when a swap of best/ was cut
    if (best / CONFIG_NAME).is_file():
        folder = best
    elif (run_dir / CONFIG_NAME).is_file():
        folder = run_dir
    else:
        raise CheckpointError(
            f"{run_dir} is neither a training run (no best/{CONFIG_NAME}) nor a saved model (no {CONFIG_NAME})."
        )
    measured = cards.read_run_metrics(run_dir)
    extra = {f"training/{n}": run_dir / n for n in ("run.json", "metrics.jsonl") if (run_dir / n).is_file()}
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
    "PushToHubMixin",
    "entry_for_repo",
    "expected_digests",
    "fetch_file",
    "fetch_snapshot",
    "file_digest",
    "push_folder",
    "push_run",
    "verify_file",
    "verify_snapshot",
]
