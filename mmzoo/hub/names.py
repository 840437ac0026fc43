"""Model names: a zoo alias, ``hf-hub:ORG/REPO[@REV]``, ``local-dir:PATH`` or an existing folder (timm's rules).

A bare name that looks like a path but is not a folder is an error that suggests both prefixes. Nothing here
touches the network.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mmzoo.errors import CheckpointError, HubError, UnknownComponentError
from mmzoo.hub import zoo
from mmzoo.registry import PretrainedEntry
from mmzoo.registry import model as recipes

HF_PREFIX = "hf-hub:"
LOCAL_PREFIX = "local-dir:"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


@dataclass(frozen=True)
class Source:
    """Where a model name points: a Hub repository at a revision, a local folder, or a zoo entry."""

    kind: str  # "hub", "local" or "alias"
    name: str  # what the user wrote (for messages)
    repo_id: str | None = None
    revision: str | None = None
    path: Path | None = None
    entry: PretrainedEntry | None = None


def parse_name(name: str | os.PathLike, revision: str | None = None) -> Source:
    """Resolve a model name to a :class:`Source` without touching the network.

    Examples:
        >>> parse_name("hf-hub:mmzoo/mmca-coco@v1").repo_id, parse_name("hf-hub:mmzoo/mmca-coco@v1").revision
        ('mmzoo/mmca-coco', 'v1')
    """
    if not isinstance(name, str | os.PathLike) or not str(name).strip():
        raise UnknownComponentError(f"from_pretrained needs a model name or a folder; got {name!r}.")
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if name.startswith(HF_PREFIX):
        repo_id, _, pinned = name[len(HF_PREFIX) :].partition("@")
        if not REPO_ID.match(repo_id):
            raise HubError(f"{name!r} is not a valid Hub name: write 'hf-hub:ORG/REPO' or 'hf-hub:ORG/REPO@REVISION'.")
        if pinned and revision and pinned != revision:
            raise HubError(f"{name!r} pins revision {pinned!r} but revision={revision!r} was passed too; keep one.")
        return Source("hub", name, repo_id=repo_id, revision=pinned or revision)
    if name.startswith(LOCAL_PREFIX):
        path = Path(name[len(LOCAL_PREFIX) :]).expanduser()
        if path.exists() and not path.is_dir():
            raise CheckpointError(
                f"{name!r}: {path} is a file; '{LOCAL_PREFIX}' names a saved model's folder (the one holding "
                f"config.json and model.safetensors){', e.g. ' + repr(LOCAL_PREFIX + str(path.parent)) if path.name == 'config.json' else ''}."
            )
        if not path.is_dir() and not path.with_name(f".{path.name}.old").is_dir():
            raise CheckpointError(f"{name!r}: the folder {path} does not exist.")
        return Source("local", name, path=path)
    if zoo.is_alias(name):
        entry = zoo.get_pretrained(name)
        return Source(
            "alias", name, repo_id=entry.weights.repo, revision=revision or entry.weights.revision, entry=entry
        )
    path = Path(name).expanduser()
    if path.is_dir():
        return Source("local", name, path=path)
    if looks_like_path(name):
        repo = name if REPO_ID.match(name) else "ORG/REPO"
        raise HubError(
            f"{name!r} looks like a path but is not a folder here. For a Hugging Face Hub repository write "
            f"'{HF_PREFIX}{repo}'; for a local folder write '{LOCAL_PREFIX}{name}' with a folder that exists."
        )
    hint = (
        f" {name!r} is a recipe (an untrained architecture): build it with mmzoo.create_model({name!r})."
        if name in recipes
        else ""
    )
    aliases = ", ".join(a for a, _ in zoo.list_pretrained()) or "none"
    raise UnknownComponentError(
        f"Unknown pretrained model {name!r}.{hint} Zoo aliases: {aliases} (see `mmzoo list --pretrained`); "
        f"or use '{HF_PREFIX}ORG/REPO' or '{LOCAL_PREFIX}PATH'."
    )


def looks_like_path(name: str) -> bool:
    return "/" in name or os.sep in name or name.startswith((".", "~")) or name.endswith((".json", ".safetensors"))


__all__ = ["HF_PREFIX", "LOCAL_PREFIX", "REPO_ID", "Source", "looks_like_path", "parse_name"]
