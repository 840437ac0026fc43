"""The Hub floor: model names, moving files to and from the Hugging Face Hub, model cards, the zoo table."""

from __future__ import annotations

from mmzoo.hub import cards, names, transfer, zoo
from mmzoo.hub.names import HF_PREFIX, LOCAL_PREFIX, Source, parse_name
from mmzoo.hub.transfer import fetch_file, fetch_snapshot, push_folder, push_run

__all__ = [
    "HF_PREFIX",
    "LOCAL_PREFIX",
    "Source",
    "cards",
    "fetch_file",
    "fetch_snapshot",
    "names",
    "parse_name",
    "push_folder",
    "push_run",
    "transfer",
    "zoo",
]
