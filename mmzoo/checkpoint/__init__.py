"""Checkpoints: the saved-model folder format, strict loading, and reading foreign checkpoints safely."""

from __future__ import annotations

from mmzoo.checkpoint.folder import (
    ALIASED_FORMAT_VERSION,
    ALIASES_KEY,
    CARD_NAME,
    CONFIG_NAME,
    FORMAT_VERSION,
    RESERVED,
    WEIGHTS_NAME,
    check_requirements,
    config_document,
    read_document,
    read_weights,
    refuse_code,
    requirements,
    split_aliases,
    weight_shapes,
    with_aliases,
    write_folder,
)
from mmzoo.checkpoint.foreign import checkpoint_options, read_foreign_checkpoint
from mmzoo.checkpoint.strict import check_finite, check_fit, load_state_strict

__all__ = [
    "ALIASED_FORMAT_VERSION",
    "ALIASES_KEY",
    "CARD_NAME",
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "RESERVED",
    "WEIGHTS_NAME",
    "check_finite",
    "check_fit",
    "check_requirements",
    "checkpoint_options",
    "config_document",
    "load_state_strict",
    "read_document",
    "read_foreign_checkpoint",
    "read_weights",
    "refuse_code",
    "requirements",
    "split_aliases",
    "weight_shapes",
    "with_aliases",
    "write_folder",
]
