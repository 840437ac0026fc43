"""Models: :class:`MatchingModel` (the composition of components), :class:`Ensemble`, and loading saved folders."""

from __future__ import annotations

from mmzoo.model.ensemble import Ensemble, EnsembleFragments
from mmzoo.model.loading import load_folder, load_native, offline
from mmzoo.model.matching import MatchingModel, MatchingOutput, check_pair, check_regions
from mmzoo.model.saving import load_pretrained  # deprecated: load_folder

__all__ = [
    "Ensemble",
    "EnsembleFragments",
    "MatchingModel",
    "MatchingOutput",
    "check_pair",
    "check_regions",
    "load_folder",
    "load_native",
    "load_pretrained",
    "offline",
]
