"""The Hugging Face Hub: ``from_pretrained``, ``download``, ``push_to_hub`` and ``push_run``.

Everything that touches the network goes through huggingface_hub's own functions (``hf_hub_download``,
``snapshot_download``, ``HfApi.create_repo`` / ``create_commit``) with ``library_name="mmzoo"``, so its cache,
``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, ``HF_HOME`` and token handling apply unchanged. huggingface_hub is
imported inside the functions: ``import mmzoo`` stays light.

What mmzoo adds on top:

* names: a zoo alias (``mmca-coco``), ``hf-hub:ORG/REPO[@REV]``, ``local-dir:PATH`` or an existing folder;
  a bare name that looks like a path but is not a folder is an error suggesting both prefixes (timm's rule);
* ``config.json`` is fetched first, so a missing plugin is reported before any weight is downloaded;
* the downloaded files are checked against the Hub's own record of them (the tree listing the download cached:
  sha256 for LFS files such as ``model.safetensors``, the git blob sha1 for the rest), which catches a cached blob
  corrupted after download even when its size is unchanged; nothing is ever unpickled (safetensors only);
* huggingface_hub's exceptions become one :class:`~mmzoo.errors.HubError` with a message saying what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmzoo import zoo
from mmzoo.errors import CheckpointError, HubError, UnknownComponentError
from mmzoo.serialization import CONFIG_NAME, WEIGHTS_NAME, check_requirements, load_pretrained, read_config

if TYPE_CHECKING:
    import torch
    from huggingface_hub import CommitInfo, ModelCard

    from mmzoo.model import MatchingModel

logger = logging.getLogger("mmzoo.hub")

HF_PREFIX = "hf-hub:"
LOCAL_PREFIX = "local-dir:"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: files in a saved folder that are never uploaded (atomic-write leftovers, caches).
_SKIP_UPLOAD = (".tmp", ".incomplete", ".lock")


@dataclass(frozen=True)
class Source:
    """Where a model name points: a Hub repository at a revision, or a local folder."""

    kind: str  # "hub" or "local"
    name: str  # what the user wrote (for messages)
    repo_id: str | None = None
    revision: str | None = None
    path: Path | None = None


def parse_name(name: str | os.PathLike, revision: str | None = None) -> Source:
    """Resolve a model name to a :class:`Source` without touching the network.

    Example:
        >>> parse_name("hf-hub:mmzoo/mmca-coco@v1")
        Source(kind='hub', name='hf-hub:mmzoo/mmca-coco@v1', repo_id='mmzoo/mmca-coco', revision='v1', path=None)
    """
    if not isinstance(name, str | os.PathLike) or not str(name).strip():
        raise UnknownComponentError(f"from_pretrained needs a model name or a folder; got {name!r}.")
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if name.startswith(HF_PREFIX):
        repo_id, _, pinned = name[len(HF_PREFIX) :].partition("@")
        if not _REPO_ID.match(repo_id):
            raise HubError(f"{name!r} is not a valid Hub name: write 'hf-hub:ORG/REPO' or 'hf-hub:ORG/REPO@REVISION'.")
        if pinned and revision and pinned != revision:
            raise HubError(f"{name!r} pins revision {pinned!r} but revision={revision!r} was passed too; keep one.")
        return Source("hub", name, repo_id=repo_id, revision=pinned or revision)
    if name.startswith(LOCAL_PREFIX):
        path = Path(name[len(LOCAL_PREFIX) :]).expanduser()
        if not path.is_dir():
            raise CheckpointError(f"{name!r}: the folder {path} does not exist.")
        return Source("local", name, path=path)
    if zoo.is_alias(name):
        entry = zoo.get_pretrained(name)
        if not entry.available:
            raise HubError(
                f"The zoo entry {name!r} has no trained weights yet (status: {entry.status}); nothing can be "
                f"downloaded from {entry.hub_repo}. {entry.how_to_train()}"
            )
        return Source("hub", name, repo_id=entry.hub_repo, revision=revision or entry.revision)
    path = Path(name).expanduser()
    if path.is_dir():
        return Source("local", name, path=path)
    if _looks_like_path(name):
        repo = name if _REPO_ID.match(name) else "ORG/REPO"
        raise HubError(
            f"{name!r} looks like a path but is not a folder here. For a Hugging Face Hub repository write "
            f"'{HF_PREFIX}{repo}'; for a local folder write '{LOCAL_PREFIX}{name}' with a folder that exists."
        )
    from mmzoo import registry

    hint = (
        f" {name!r} is a recipe (an untrained architecture): build it with mmzoo.create_model({name!r})."
        if name in registry.model
        else ""
    )
    aliases = ", ".join(a for a, _ in zoo.list_pretrained()) or "none"
    raise UnknownComponentError(
        f"Unknown pretrained model {name!r}.{hint} Zoo aliases: {aliases} (see `mmzoo list --pretrained`); "
        f"or use '{HF_PREFIX}ORG/REPO' or '{LOCAL_PREFIX}PATH'."
    )


def _looks_like_path(name: str) -> bool:
    return "/" in name or os.sep in name or name.startswith((".", "~")) or name.endswith((".json", ".safetensors"))


# -- downloading ------------------------------------------------------------------------------------------
def download(
    name: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    check_plugins: bool = False,
) -> Path:
    """Fetch a model into the Hugging Face cache (or find it there) and return its verified local folder.

    This is what ``mmzoo download NAME`` runs to prefetch for an air-gapped machine: copy the cache
    (``HF_HOME``) over and load there with ``HF_HUB_OFFLINE=1``.

    Example:
        >>> folder = mmzoo.hub.download("hf-hub:my-org/my-model")  # doctest: +SKIP
    """
    source = parse_name(name, revision)
    if source.kind == "local":
        return source.path
    return _download_hub(source, cache_dir, token, local_files_only, force_download, check_plugins)


def _download_hub(
    source: Source,
    cache_dir: str | Path | None,
    token: str | bool | None,
    local_files_only: bool,
    force_download: bool,
    check_plugins: bool,
) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    from mmzoo import __version__

    common = {
        "repo_id": source.repo_id,
        "cache_dir": str(cache_dir) if cache_dir is not None else None,
        "token": token,
        "local_files_only": local_files_only,
        "force_download": force_download,
        "library_name": "mmzoo",
        "library_version": __version__,
    }
    with _hub_errors(source, CONFIG_NAME):
        # the config first: it names the plugins the model needs, checked before any weight is fetched
        config_path = Path(hf_hub_download(filename=CONFIG_NAME, revision=source.revision, **common))
    commit = config_path.parent.name
    if check_plugins:
        check_requirements(read_config(config_path.parent))
    with _hub_errors(source, None):
        folder = Path(snapshot_download(revision=commit, **common))
    if not (folder / WEIGHTS_NAME).is_file():
        # offline, huggingface_hub returns a partial snapshot when it has no tree listing to compare with
        raise HubError(
            f"{source.name!r}: the snapshot {folder} has no {WEIGHTS_NAME}: the cache holds only part of the model "
            f"(only its config was fetched before), or the repository has no weights. With network, run "
            f"`mmzoo download {source.name}`; offline, copy a complete cache over."
        )
    verify_snapshot(folder, source)
    return folder


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


# -- loading ----------------------------------------------------------------------------------------------
def from_pretrained(
    name: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> MatchingModel:
    """Load trained weights by zoo alias, ``hf-hub:ORG/REPO[@REV]``, ``local-dir:PATH`` or folder, strictly.

    Hub downloads use the Hugging Face cache and honour ``HF_HUB_OFFLINE``; the weights are verified against
    the Hub's sha256 and loaded from safetensors (never unpickled); a config naming a component no installed
    plugin provides raises an error naming the distribution to install.

    Example:
        >>> model = mmzoo.from_pretrained("hf-hub:my-org/mmca-coco")  # doctest: +SKIP
        >>> model = mmzoo.from_pretrained("local-dir:runs/mmca-coco/best", device="cuda")  # doctest: +SKIP
    """
    source = parse_name(name, revision)
    if source.kind == "local":
        folder = source.path
    else:
        folder = _download_hub(source, cache_dir, token, local_files_only, False, check_plugins=True)
    return load_pretrained(folder, device=device, dtype=dtype)


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

    from mmzoo import __version__

    folder = Path(folder)
    read_config(folder)  # refuse to publish a folder that is not a saved mmzoo model
    if not (folder / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"{folder / WEIGHTS_NAME} is missing: the folder holds a config but no weights.")
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id.removeprefix(HF_PREFIX)):
        raise HubError(f"{repo_id!r} is not a valid Hub repository id: write ORG/NAME.")
    repo_id = repo_id.removeprefix(HF_PREFIX)
    operations = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if (
            relative.endswith(_SKIP_UPLOAD)
            or relative.startswith(".")
            or (card is not None and relative == "README.md")
        ):
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


def push_to_hub(
    model: MatchingModel,
    repo_id: str,
    *,
    private: bool = False,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
) -> CommitInfo:
    """Save ``model`` (config, safetensors weights, component files, model card) and upload it in one commit.

    Example:
        >>> model.push_to_hub("my-org/my-mmca", private=True)  # doctest: +SKIP
    """
    import tempfile

    from mmzoo import cards
    from mmzoo.serialization import save_pretrained

    with tempfile.TemporaryDirectory(prefix="mmzoo-push-") as tmp:
        folder = save_pretrained(model, Path(tmp) / "model")
        card = cards.model_card(read_config(folder), repo_id=repo_id, entry=_entry_for_repo(repo_id))
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
    from mmzoo import cards

    run_dir = Path(run_dir)
    if (run_dir / "best" / CONFIG_NAME).is_file():
        folder = run_dir / "best"
    elif (run_dir / CONFIG_NAME).is_file():
        folder = run_dir
    else:
        raise CheckpointError(
            f"{run_dir} is neither a training run (no best/{CONFIG_NAME}) nor a saved model (no {CONFIG_NAME})."
        )
    measured = cards.read_run_metrics(run_dir)
    extra = {f"training/{n}": run_dir / n for n in ("run.json", "metrics.jsonl") if (run_dir / n).is_file()}
    card = cards.model_card(
        read_config(folder), repo_id=repo_id.removeprefix(HF_PREFIX), entry=_entry_for_repo(repo_id), measured=measured
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


def _entry_for_repo(repo_id: str) -> zoo.PretrainedEntry | None:
    repo_id = repo_id.removeprefix(HF_PREFIX)
    return next((e for e in zoo.pretrained_entries() if e.hub_repo == repo_id), None)


__all__ = [
    "HF_PREFIX",
    "LOCAL_PREFIX",
    "Source",
    "download",
    "expected_digests",
    "file_digest",
    "from_pretrained",
    "parse_name",
    "push_folder",
    "push_run",
    "push_to_hub",
    "verify_snapshot",
]
