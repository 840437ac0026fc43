"""The extractor guard's pure part: do the features a model was trained on match the data's manifest?

Training and evaluation call it on any data folder, so it lives in :mod:`mmzoo.data` and loads nothing of the
importers (``mmzoo.data.importing.guard`` re-exports it).

Region features of different extractors are not interchangeable for a trained model, even at the same
size: a model trained on bottom-up-attention's 36 fixed boxes sees other statistics in its adaptive
10-100 boxes, and a ResNet grid or a detectron2 re-extraction lives in another space altogether. Scores
on such data are quietly meaningless, so a model records the *feature facts* of its training data
(``extractor``, ``region_dim``, ``region_policy``, ``normalisation``, from the dataset manifest) and
evaluation, search and fine-tuning compare them with the manifest of the data at hand:
:func:`feature_differences` lists what differs, :func:`check_feature_facts` warns (or, strict, raises).

A fact unknown on either side (an old manifest, an extractor nobody named) is not a difference;
:func:`unknown_feature_facts` says which facts could not be compared.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmzoo.data.manifest import DataManifest
from mmzoo.errors import DataError, MMZooWarning

#: the manifest keys that decide whether a trained model fits the features (an import records them).
FEATURE_FACTS = ("extractor", "region_dim", "region_policy", "normalisation")


class FeatureMismatchWarning(MMZooWarning):
    """A model is used on features whose manifest differs from those it was trained on."""


@dataclass(frozen=True)
class FeatureDifference:
    """One fact that differs: its name, the value the model was trained with and the data's value."""

    fact: str
    trained: Any
    data: Any

    def __str__(self) -> str:
        return f"{self.fact}: trained on {self.trained!r}, the data has {self.data!r}"


def feature_facts(manifest: Mapping[str, Any] | DataManifest | None) -> dict[str, Any]:
    """The feature facts of a dataset manifest (what a model records when trained on it); absent ones are None.

    Examples:
        >>> feature_facts({"extractor": "BUTD R101", "region_dim": 2048, "region_policy": "fixed-36"})
        {'extractor': 'BUTD R101', 'region_dim': 2048, 'region_policy': 'fixed-36', 'normalisation': None}
    """
    if isinstance(manifest, DataManifest):
        manifest = manifest.model_dump(mode="json")
    manifest = manifest or {}
    return {fact: manifest.get(fact) for fact in FEATURE_FACTS}


_POLICY = re.compile(r"^(fixed)-(\d+)$|^(adaptive)-(\d+)-(\d+)$")


def _policy(value: str) -> tuple[str, int, int] | None:
    found = _POLICY.match(value)
    if found is None:
        return None
    if found.group(1):
        return "fixed", int(found.group(2)), int(found.group(2))
    return "adaptive", int(found.group(4)), int(found.group(5))


def _text(value: Any) -> str:
    """A fact as comparable text: case and spacing ignored, a dict (an extract-features source) canonical."""
    if isinstance(value, Mapping):
        value = json.dumps(value, sort_keys=True)
    return " ".join(str(value).split()).casefold()


def _same(fact: str, trained: Any, data: Any) -> bool:
    if fact == "region_dim":
        try:
            return int(trained) == int(data)
        except (TypeError, ValueError):
            return str(trained) == str(data)
    a, b = (_text(v) for v in (trained, data))
    if fact == "region_policy":
        pa, pb = _policy(a), _policy(b)
        if pa and pb and pa[0] == pb[0] == "adaptive":
            # counts measured on a subset span less: 10-98 on 1,000 test images is still 10-100's policy
            return pa[1] <= pb[1] and pb[2] <= pa[2]
    return a == b


def feature_differences(trained: Mapping[str, Any] | None, data: Mapping[str, Any] | None) -> list[FeatureDifference]:
    """The feature facts that differ between a model's training data and a dataset manifest.

    Args:
        trained: the facts a model recorded (or its training data's manifest, a dict or DataManifest).
        data: the manifest (or facts) of the data it is about to be used on.

    Returns:
        One :class:`FeatureDifference` per fact known on both sides that differs, in ``FEATURE_FACTS``
        order. Extractor names compare without case and extra spaces; adaptive region policies compare
        by range (the data's range must lie in the trained one).

    Examples:
        >>> feature_differences({"region_policy": "fixed-36"}, {"region_policy": "adaptive-10-100"})
        [FeatureDifference(fact='region_policy', trained='fixed-36', data='adaptive-10-100')]
    """
    ours, theirs = feature_facts(trained), feature_facts(data)
    return [
        FeatureDifference(fact, ours[fact], theirs[fact])
        for fact in FEATURE_FACTS
        if ours[fact] is not None and theirs[fact] is not None and not _same(fact, ours[fact], theirs[fact])
    ]


def unknown_feature_facts(trained: Mapping[str, Any] | None, data: Mapping[str, Any] | None) -> list[str]:
    """Facts that could not be compared because one side does not record them."""
    ours, theirs = feature_facts(trained), feature_facts(data)
    return [fact for fact in FEATURE_FACTS if ours[fact] is None or theirs[fact] is None]


def mismatch_message(differences: list[FeatureDifference], *, model: str, data: str) -> str:
    """The message naming both sides of every difference."""
    listed = "; ".join(f"{d.fact} {d.trained!r} (trained) vs {d.data!r} (in {data})" for d in differences)
    return (
        f"{model} was trained on other features than {data} holds: {listed}. Features of different extractors "
        "are not interchangeable; its scores here are not comparable with its published or validated ones. "
        "Import features from the model's extractor, or retrain."
    )


def check_feature_facts(
    trained: Mapping[str, Any] | None,
    data: Mapping[str, Any] | None,
    *,
    strict: bool = False,
    model: str = "The model",
    dataset: str = "the data",
) -> list[FeatureDifference]:
    """Warn (``FeatureMismatchWarning``) or, with ``strict``, raise ``DataError`` when the facts differ.

    Args:
        trained: the model's recorded feature facts.
        data: the dataset manifest.
        strict: raise instead of warning (``--strict-features``).
        model: how to name the model in the message (its path or alias).
        dataset: how to name the data (its folder).

    Returns:
        The differences (empty when the features match or nothing can be compared).
    """
    differences = feature_differences(trained, data)
    if differences:
        message = mismatch_message(differences, model=model, data=dataset)
        if strict:
            raise DataError(message)
        warnings.warn(message + " (--strict-features makes this an error.)", FeatureMismatchWarning, stacklevel=2)
    return differences


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
