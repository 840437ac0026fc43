"""The zoo table: the pretrained entries every family registers, as users list and resolve them.

A recipe (``mmca``) names an architecture; a pretrained entry (``vse-infinity-coco``) names trained weights
(:class:`~mmzoo.registry.records.PretrainedEntry`). Families register entries through the plugin hook
(``registry.pretrained.register``); this module only reads them. The preprocessing (the features a model
expects) travels with the weights: in the entry's ``inputs`` and in the saved ``config.json``.

Examples:
    >>> import mmzoo
    >>> [alias for alias, _ in mmzoo.list_pretrained("mmca*")]
    ['mmca-coco', 'mmca-f30k']
    >>> mmzoo.hub.zoo.get_pretrained("mmca-coco").status
    'not trained'
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmzoo.errors import UnknownComponentError
from mmzoo.registry import (
    CONVERTED,
    MANUAL,
    NOT_TRAINED,
    PUBLISHED,
    PretrainedEntry,
    converter,
    natural_key,
    pretrained,
)


def pretrained_entries(pattern: str = "*") -> list[PretrainedEntry]:
    """The zoo entries whose alias matches ``pattern`` (a case-insensitive glob), in natural order."""
    return [pretrained.get(a) for a in pretrained.names() if fnmatch.fnmatchcase(a.lower(), pattern.lower())]


def list_pretrained(pattern: str = "*") -> list[tuple[str, str]]:
    """(alias, recipe) pairs of the zoo table, ready to paste into ``from_pretrained`` / ``create_model``.

    Examples:
        >>> mmzoo.list_pretrained("mmca-f30k")
        [('mmca-f30k', 'mmca')]
    """
    return [(e.alias, e.recipe) for e in pretrained_entries(pattern)]


def is_alias(name: str) -> bool:
    return name in pretrained


def get_pretrained(alias: str) -> PretrainedEntry:
    """The entry of ``alias``; an :class:`UnknownComponentError` listing the aliases when there is none."""
    if alias not in pretrained:
        known = ", ".join(sorted(pretrained.names(), key=natural_key)) or "none"
        raise UnknownComponentError(
            f"No pretrained entry named {alias!r}. Known aliases: {known} (`mmzoo list --pretrained`). "
            "Use 'hf-hub:ORG/REPO' for any Hub repository or 'local-dir:PATH' for a saved folder."
        )
    return pretrained.get(alias)


def plugin_of(alias: str) -> str | None:
    """The plugin that registered ``alias``."""
    return pretrained.entry(alias).plugin


def how_to_get(entry: PretrainedEntry) -> str:
    """What a user does to obtain the weights of an entry that cannot be downloaded as is."""
    if entry.status == NOT_TRAINED:
        data = entry.data_dir or "DATA"
        config = f" --config {entry.training_config}" if entry.training_config else ""
        return (
            f"No weights exist yet. Train them on a GPU: `mmzoo train --model {entry.recipe}{config} --data {data} "
            f"--out runs/{entry.alias}`, then load the result with `mmzoo.from_pretrained('local-dir:runs/"
            f"{entry.alias}/best')`"
            + (
                f" (or publish it: `mmzoo push runs/{entry.alias} --repo {entry.weights.repo}`)."
                if entry.weights.repo
                else "."
            )
        )
    if entry.members:
        steps = " ".join(f"({i}) {m}: {how_to_get(get_pretrained(m))}" for i, m in enumerate(entry.members, 1))
        return f"An ensemble of {', '.join(entry.members)}; get each member: {steps}"
    if entry.status == MANUAL and entry.notes:
        return entry.notes  # the family's own steps (where to download, which files, the convert command)
    if entry.status == MANUAL:
        where = entry.weights.url or entry.code or "the authors' page"
        options = "".join(f" --{k.replace('_', '-')} {v}" for k, v in entry.weights.options.items())
        if entry.weights.format in converter:  # options the converter needs that the entry cannot fill in
            fields = converter.get(entry.weights.format).Config.model_fields
            needed = [k for k, f in fields.items() if f.is_required() and k not in entry.weights.options]
            options += "".join(f" --{k.replace('_', '-')} {k.upper()}" for k in needed)
        return (
            f"These weights must be downloaded by hand: get the checkpoint from {where}, then run "
            f"`mmzoo convert {entry.alias} PATH/TO/CHECKPOINT{options}` once; afterwards "
            f"`mmzoo.from_pretrained({entry.alias!r})` loads the converted copy, offline too."
        )
    return f"`mmzoo download {entry.alias}` fetches it."


def cache_root() -> Path:
    """mmzoo's own cache (converted checkpoints): ``$MMZOO_CACHE``, else ``$HF_HOME/mmzoo``."""
    if os.environ.get("MMZOO_CACHE"):
        return Path(os.environ["MMZOO_CACHE"]).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "mmzoo"


def converted_folder(converter: str, options: Mapping[str, Any], sha256: str) -> Path:
    """Where the conversion of the source file with this sha256, by this converter with these options, is kept.

    The same file converted by another converter or with other options (another vocabulary, another BERT) is
    another model, so the folder is named by all three: ``SHA256[:16]-KEY``, KEY a short hash of the canonical
    JSON of ``{"converter", "options", "sha256"}``. ``options`` are the converter's complete settings (its
    ``Config`` dumped as JSON), so spelling out a default names the same folder.
    """
    canonical = json.dumps(
        {"converter": converter, "options": dict(options), "sha256": sha256}, sort_keys=True, separators=(",", ":")
    )
    key = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
    return cache_root() / "converted" / f"{sha256[:16]}-{key}"


def installed_marker(alias: str) -> Path:
    """The file recording which converted folder a manually downloaded entry uses (``mmzoo convert ALIAS``)."""
    return cache_root() / "installed" / f"{alias}.json"


__all__ = [
    "CONVERTED",
    "MANUAL",
    "NOT_TRAINED",
    "PUBLISHED",
    "cache_root",
    "converted_folder",
    "get_pretrained",
    "how_to_get",
    "installed_marker",
    "is_alias",
    "list_pretrained",
    "plugin_of",
    "pretrained_entries",
]
