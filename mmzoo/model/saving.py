"""Deprecated home of :func:`mmzoo.model.loading.load_folder` (this module never saved anything).

``load_pretrained`` keeps working for one release with a DeprecationWarning; use ``mmzoo.model.load_folder`` for
a local folder, or ``mmzoo.from_pretrained`` for any name.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from mmzoo.model.ensemble import Ensemble
from mmzoo.model.loading import load_folder, offline
from mmzoo.model.matching import MatchingModel


def load_pretrained(directory: str | Path, **options: Any) -> MatchingModel | Ensemble:
    """Deprecated alias of :func:`~mmzoo.model.loading.load_folder`."""
    warnings.warn(
        "mmzoo.model.load_pretrained is deprecated and will be removed in the next release: it loads a local "
        "folder, so it is now mmzoo.model.load_folder (mmzoo.from_pretrained takes any name).",
        DeprecationWarning,
        stacklevel=2,
    )
    return load_folder(directory, **options)


__all__ = ["load_folder", "load_pretrained", "offline"]
