"""The pretrained table: aliases users paste into ``mmzoo.from_pretrained`` and what stands behind each.

A recipe (``mmca``) names an architecture; a pretrained entry (``mmca-coco``) names trained weights: the
recipe, the data they were trained on, the Hub repository and the revision pinned for them, their
measured metrics, their licence and paper, and a status that tells the truth about whether the weights
exist yet. Like timm's pretrained configs, the preprocessing (here: the region features the model
expects) travels with the weights, in the entry's notes and in the saved ``config.json``.

Example:
    >>> import mmzoo
    >>> mmzoo.list_pretrained()
    [('mmca-coco', 'mmca'), ('mmca-f30k', 'mmca')]
    >>> mmzoo.zoo.get_pretrained("mmca-coco").status
    'not trained'
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from mmzoo.errors import UnknownComponentError

#: statuses a pretrained entry can have.
PUBLISHED = "published"
NOT_TRAINED = "not trained"

PAPER = "Wei et al., Multi-Modality Cross Attention Network for Image and Sentence Matching, CVPR 2020"

#: the paper's own numbers (GUIDE.md section 4), shown only as the paper's, never as ours.
PAPER_RESULTS: dict[str, dict[str, dict[str, float]]] = {
    "coco": {
        "COCO 1K (5-fold)": {
            "i2t_r1": 74.8,
            "i2t_r5": 95.6,
            "i2t_r10": 97.7,
            "t2i_r1": 61.6,
            "t2i_r5": 89.8,
            "t2i_r10": 95.2,
            "rsum": 514.7,
        },
        "COCO 5K": {
            "i2t_r1": 54.0,
            "i2t_r5": 82.5,
            "i2t_r10": 90.7,
            "t2i_r1": 38.7,
            "t2i_r5": 69.7,
            "t2i_r10": 80.8,
            "rsum": 416.4,
        },
    },
    "f30k": {
        "Flickr30K 1K test": {
            "i2t_r1": 74.2,
            "i2t_r5": 92.8,
            "i2t_r10": 96.4,
            "t2i_r1": 54.8,
            "t2i_r5": 81.4,
            "t2i_r10": 87.8,
            "rsum": 487.4,
        }
    },
}


@dataclass(frozen=True)
class PretrainedEntry:
    """One row of the zoo table.

    Attributes:
        alias: the name users pass to ``from_pretrained`` (``mmca-coco``).
        recipe: the registered recipe the weights were trained with (``mmca``).
        dataset: the training data, in words.
        hub_repo: the Hugging Face Hub repository that holds (or will hold) the weights.
        revision: the commit pinned for this alias (None until weights are published).
        status: ``published`` or ``not trained``.
        metrics: measured dev/test metrics of the published weights (empty until measured).
        metrics_source: the command and data that produced ``metrics``.
        license: the licence of the weights.
        paper: the paper the recipe reproduces.
        config: the training config file in ``configs/``.
        data_dir: the folder of precomputed features the config expects.
        card: the model card in ``model_cards/``.
        paper_results: the paper's published numbers, labelled as the paper's wherever shown.
    """

    alias: str
    recipe: str
    dataset: str
    hub_repo: str
    revision: str | None
    status: str
    license: str
    paper: str
    config: str
    data_dir: str
    card: str
    dataset_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_source: str | None = None
    paper_results: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        """True when weights exist on the Hub at a pinned revision."""
        return self.status == PUBLISHED and self.revision is not None

    def metrics_summary(self) -> str:
        """One line for ``mmzoo list --pretrained``: measured rsum, or none measured and the paper's rsum."""
        if self.metrics:
            return f"rsum {self.metrics['rsum']:.1f} (measured)" if "rsum" in self.metrics else "measured"
        paper = "; ".join(f"{split} rsum {r['rsum']}" for split, r in self.paper_results.items())
        return f"none measured (paper: {paper})" if paper else "none measured"

    def how_to_train(self) -> str:
        """The commands that produce these weights and load them."""
        return (
            f"Train it on a GPU: `mmzoo train --model {self.recipe} "
            f"--config {self.config} --data {self.data_dir} --out runs/{self.alias}`, then load the result with "
            f"`mmzoo.from_pretrained('local-dir:runs/{self.alias}/best')` (or publish it with "
            f"`mmzoo push runs/{self.alias} --repo {self.hub_repo}`)."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "recipe": self.recipe,
            "dataset": self.dataset,
            "hub_repo": self.hub_repo,
            "revision": self.revision,
            "status": self.status,
            "metrics": dict(self.metrics),
            "metrics_source": self.metrics_source,
            "license": self.license,
            "paper": self.paper,
            "config": self.config,
            "card": self.card,
            "paper_results": self.paper_results,
        }


_ENTRIES: dict[str, PretrainedEntry] = {
    "mmca-coco": PretrainedEntry(
        alias="mmca-coco",
        recipe="mmca",
        dataset="MS-COCO (Karpathy split, 36x2048 bottom-up region features, coco_precomp)",
        dataset_id="coco",
        hub_repo="mmzoo/mmca-coco",
        revision=None,
        status=NOT_TRAINED,
        license="apache-2.0",
        paper=PAPER,
        config="configs/mmca-coco.yaml",
        data_dir="data/coco_precomp",
        card="model_cards/mmca-coco.md",
        paper_results=PAPER_RESULTS["coco"],
    ),
    "mmca-f30k": PretrainedEntry(
        alias="mmca-f30k",
        recipe="mmca",
        dataset="Flickr30K (Karpathy split, 36x2048 bottom-up region features, f30k_precomp)",
        dataset_id="flickr30k",
        hub_repo="mmzoo/mmca-f30k",
        revision=None,
        status=NOT_TRAINED,
        license="apache-2.0",
        paper=PAPER,
        config="configs/mmca-f30k.yaml",
        data_dir="data/f30k_precomp",
        card="model_cards/mmca-f30k.md",
        paper_results=PAPER_RESULTS["f30k"],
    ),
}


def pretrained_entries(pattern: str = "*") -> list[PretrainedEntry]:
    """The full records of the zoo table whose alias matches ``pattern`` (a glob), sorted by alias."""
    return [_ENTRIES[a] for a in sorted(_ENTRIES) if fnmatch.fnmatchcase(a, pattern)]


def list_pretrained(pattern: str = "*") -> list[tuple[str, str]]:
    """(alias, recipe) pairs of the zoo table, ready to paste into ``from_pretrained`` / ``create_model``.

    Example:
        >>> mmzoo.list_pretrained("*f30k")
        [('mmca-f30k', 'mmca')]
    """
    return [(e.alias, e.recipe) for e in pretrained_entries(pattern)]


def is_alias(name: str) -> bool:
    return name in _ENTRIES


def get_pretrained(alias: str) -> PretrainedEntry:
    """The record of ``alias``; an :class:`UnknownComponentError` listing the aliases when there is none."""
    try:
        return _ENTRIES[alias]
    except KeyError:
        raise UnknownComponentError(
            f"No pretrained entry named {alias!r}. Known aliases: {', '.join(sorted(_ENTRIES))}. "
            "Use 'hf-hub:ORG/REPO' for any Hub repository or 'local-dir:PATH' for a saved folder."
        ) from None


__all__ = [
    "NOT_TRAINED",
    "PAPER_RESULTS",
    "PUBLISHED",
    "PretrainedEntry",
    "get_pretrained",
    "is_alias",
    "list_pretrained",
    "pretrained_entries",
]
