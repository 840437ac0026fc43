"""The extractor guard moved to :mod:`mmzoo.data.guard` (training and evaluation call it); kept here for imports."""

from __future__ import annotations

from mmzoo.data.guard import (
    FEATURE_FACTS,
    FeatureDifference,
    FeatureMismatchWarning,
    check_feature_facts,
    feature_differences,
    feature_facts,
    mismatch_message,
    unknown_feature_facts,
)

__all__ = [
    "FEATURE_FACTS",
    "FeatureDifference",
    "FeatureMismatchWarning",
    "check_feature_facts",
    "feature_differences",
    "feature_facts",
    "mismatch_message",
    "unknown_feature_facts",
]
