"""The plain records plugins register besides components: recipes and pretrained (zoo) entries.

A recipe (``mmca``) names an architecture and its paper's training schedule; a pretrained entry
(``vse-infinity-coco``) names trained weights: the recipe, the data, where the weights live and in which
format, the authors' published numbers (always labelled as theirs), the licence, paper and citation, and a
status that tells the truth about whether the weights exist and how they arrive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mmzoo.errors import PluginError

#: statuses of a pretrained entry.
PUBLISHED = "published"  #: an mmzoo folder on the Hub, loaded as is
CONVERTED = "published by the authors, converted"  #: the authors' checkpoint on the Hub, converted when loaded
MANUAL = "download manually, then convert"  #: the authors' checkpoint outside the Hub (a download page)
NOT_TRAINED = "not trained"  #: no weights exist yet
STATUSES = (PUBLISHED, CONVERTED, MANUAL, NOT_TRAINED)
#: weights formats loaded natively from the authors' own folder (no conversion): the recipe's components build
#: from the folder itself (``BuildContext.native``). ``transformers``: config.json, model.safetensors (or its
#: shards), the processor and tokenizer files, as transformers' ``save_pretrained`` writes them.
NATIVE_FORMATS = ("transformers",)


@dataclass(frozen=True)
class Recipe:
    """A named composition registered under the ``model`` kind.

    Attributes:
        config: the model config (plain data).
        description: one line shown by ``mmzoo list``.
        paper: citation or URL of the method.
        training: default training settings of the recipe (the trainer's config keys).
    """

    config: dict[str, Any]
    description: str = ""
    paper: str = ""
    training: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Weights:
    """Where a pretrained entry's weights live and in which format.

    Attributes:
        repo: the Hugging Face Hub repository (None when the weights are not on the Hub).
        format: ``"mmzoo"`` for a saved mmzoo folder, one of :data:`NATIVE_FORMATS` (``"transformers"``) for a
            folder in another library's layout that the recipe's components read directly, else the name of the
            registered converter that reads the file (``"vse-infinity"``).
        filename: the file inside ``repo`` for a foreign format (``coco_butd_region_bert/model_best.pth``).
        revision: the commit pinned for these weights (None: the default branch).
        sha256: the expected sha256 of the source file, when known (checked besides the Hub's own record).
        options: the converter's options (``{"bert": "bert-base-uncased"}``); for a native format, dotted
            overrides of the recipe (``{"embed_dim": 768}``).
        url: the authors' download page, for weights that must be fetched by hand.
    """

    repo: str | None = None
    format: str = "mmzoo"
    filename: str | None = None
    revision: str | None = None
    sha256: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    url: str | None = None


@dataclass(frozen=True)
class PretrainedEntry:
    """One row of the zoo table, registered by the family that provides the recipe.

    Attributes:
        alias: the name users pass to ``from_pretrained``.
        recipe: the registered recipe of the architecture.
        dataset: the training data, in words; ``dataset_id`` its Hub dataset tag (``coco``, ``flickr30k``).
        weights: where the weights live and in which format.
        status: one of :data:`STATUSES`.
        license, paper, citation, code: the weights' licence, the paper, its BibTeX, the authors' code.
        inputs: what ``encode_images`` expects, in words (the preprocessing travels with the weights).
        published_results: the authors' numbers, ``{split: {metric: value}}``; shown only as theirs.
        results_source: where those numbers come from.
        metrics, metrics_source: numbers mmzoo measured for these weights, and the command that did.
        members: aliases of the member entries when the entry is an ensemble (scores averaged).
        training_config, data_dir: for entries not trained yet, the config and data that would train them.
        notes: anything else a user must know.
    """

    alias: str
    recipe: str
    dataset: str
    weights: Weights
    status: str
    license: str
    paper: str
    citation: str = ""
    code: str = ""
    dataset_id: str | None = None
    inputs: str = ""
    published_results: dict[str, dict[str, float]] = field(default_factory=dict)
    results_source: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_source: str | None = None
    members: tuple[str, ...] = ()
    training_config: str | None = None
    data_dir: str | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise PluginError(f"pretrained {self.alias!r}: status must be one of {', '.join(STATUSES)}.")
        if self.status in (PUBLISHED, CONVERTED) and not (self.weights.repo or self.members):
            raise PluginError(f"pretrained {self.alias!r} is {self.status!r} but names no Hub repository.")
        if self.status == CONVERTED and not (self.weights.filename or self.members):
            raise PluginError(f"pretrained {self.alias!r} is converted from a file but names no weights.filename.")
        for split, values in {**self.published_results, "metrics": self.metrics}.items():
            bad = [k for k, v in values.items() if not isinstance(v, int | float) or not math.isfinite(v)]
            if bad:
                raise PluginError(f"pretrained {self.alias!r}: {split} has non-numeric values for {bad}.")

    def metrics_summary(self) -> str:
        """One line for ``mmzoo list --pretrained``: mmzoo's measured rsum, else the published numbers as theirs."""
        if self.metrics:
            return f"rsum {self.metrics['rsum']:.1f} (measured)" if "rsum" in self.metrics else "measured"
        theirs = "; ".join(f"{split} {_headline(r)}" for split, r in self.published_results.items() if _headline(r))
        return f"published: {theirs}" if theirs else "none measured"

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "recipe": self.recipe,
            "dataset": self.dataset,
            "status": self.status,
            "weights": {k: v for k, v in vars(self.weights).items() if v not in (None, {})},
            "license": self.license,
            "paper": self.paper,
            "code": self.code,
            "members": list(self.members),
            "published_results": self.published_results,
            "results_source": self.results_source,
            "metrics": dict(self.metrics),
            "metrics_source": self.metrics_source,
        }


def _headline(results: dict[str, float]) -> str:
    """rsum when the authors give it, else their R@1 both ways."""
    if "rsum" in results:
        return f"rsum {results['rsum']}"
    r1 = [f"{d} R@1 {results[f'{d}_r1']}" for d in ("i2t", "t2i") if f"{d}_r1" in results]
    return ", ".join(r1)


__all__ = [
    "CONVERTED",
    "MANUAL",
    "NATIVE_FORMATS",
    "NOT_TRAINED",
    "PUBLISHED",
    "STATUSES",
    "PretrainedEntry",
    "Recipe",
    "Weights",
]
