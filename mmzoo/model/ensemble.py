"""Ensembles: one model whose score is the weighted mean of its members' scores.

SCAN's and SGRAF's headline numbers are ensembles (t2i + i2t, SAF + SGR): each member encodes the images
and captions with its own encoders, scores them with its own ``S``, and the ensemble averages the score
matrices. An ensemble saves as one folder (``config.json`` naming ``member-0/``, ``member-1/``, ...), loads
with ``from_pretrained`` and pushes as one Hub repository.

Examples:
    >>> ensemble = mmzoo.Ensemble([scan_t2i, scan_i2t])  # doctest: +SKIP
    >>> scores = ensemble.similarity(ensemble.encode_images(regions), ensemble.encode_texts(captions))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mmzoo._version import __version__
from mmzoo.checkpoint import FORMAT_VERSION, write_folder
from mmzoo.contracts import Fragments, TokenBatch
from mmzoo.errors import ConfigError, InputError
from mmzoo.hub.cards import model_card
from mmzoo.hub.transfer import PushToHubMixin
from mmzoo.model.matching import MatchingModel
from mmzoo.scoring import Precision, listed_scores


@dataclass
class EnsembleFragments:
    """The members' Fragments of the same images (or captions), one per member, in member order."""

    parts: tuple[Fragments, ...]

    def __len__(self) -> int:
        return len(self.parts[0])

    def __getitem__(self, index: slice | Tensor) -> EnsembleFragments:
        return EnsembleFragments(tuple(p[index] for p in self.parts))

    @property
    def device(self) -> torch.device:
        return self.parts[0].device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> EnsembleFragments:
        return EnsembleFragments(tuple(p.to(device, dtype) for p in self.parts))

    @staticmethod
    def cat(parts: Sequence[EnsembleFragments]) -> EnsembleFragments:
        if not parts:
            raise InputError("EnsembleFragments.cat needs at least one part.")
        members = len(parts[0].parts)
        return EnsembleFragments(tuple(Fragments.cat([p.parts[m] for p in parts]) for m in range(members)))


class Ensemble(nn.Module, PushToHubMixin):
    """Members' scores averaged (weighted): ``S = sum_m w_m S_m`` with the weights summing to 1.

    Args:
        members: the models (MatchingModels), scored on the same inputs.
        weights: one non-negative weight per member (default: equal); normalised to sum to 1.
    """

    def __init__(self, members: Sequence[MatchingModel], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        members = list(members)
        if len(members) < 2 or not all(isinstance(m, MatchingModel) for m in members):
            raise ConfigError(
                "An Ensemble needs at least two MatchingModels (ensembles of ensembles are not supported)."
            )
        dims = {m.input_dim for m in members}
        if len(dims) > 1:
            raise ConfigError(f"The members expect region features of different sizes {sorted(map(str, dims))}.")
        weights = [1.0] * len(members) if weights is None else [float(w) for w in weights]
        if len(weights) != len(members) or any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"Ensemble weights must be {len(members)} finite non-negative numbers, not all 0.")
        self.members = nn.ModuleList(members)
        self.weights = [w / sum(weights) for w in weights]
        self.extra_config: dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    @property
    def input_dim(self) -> int | None:
        return self.members[0].input_dim

    @property
    def uses_fusion(self) -> bool:
        return any(m.uses_fusion for m in self.members)

    def encode_images(self, features: Any, mask: Tensor | None = None) -> EnsembleFragments:
        return EnsembleFragments(tuple(m.encode_images(features, mask) for m in self.members))

    def encode_texts(self, captions: Sequence[str] | TokenBatch) -> EnsembleFragments:
        if isinstance(captions, TokenBatch):
            raise InputError("An ensemble's members tokenise captions themselves: pass the captions as strings.")
        return EnsembleFragments(tuple(m.encode_texts(captions) for m in self.members))

    def compact(self, fragments: EnsembleFragments) -> EnsembleFragments:
        """What :meth:`similarity` needs later of each member's fragments (see ``MatchingModel.compact``)."""
        return EnsembleFragments(tuple(m.compact(p) for m, p in zip(self.members, fragments.parts, strict=True)))

    def similarity(
        self, images: EnsembleFragments, texts: EnsembleFragments, block_size: int = 256, precision: Precision = "auto"
    ) -> Tensor:
        """The weighted mean of the members' (N_images, N_texts) score matrices."""
        for name, value in (("images", images), ("texts", texts)):
            if not isinstance(value, EnsembleFragments) or len(value.parts) != len(self.members):
                raise InputError(f"Ensemble.similarity takes the ensemble's own encodings; {name} are not.")
        total = None
        for member, weight, img, txt in zip(self.members, self.weights, images.parts, texts.parts, strict=True):
            scores = weight * member.similarity(img, txt, block_size=block_size, precision=precision).float()
            total = scores if total is None else total + scores
        return total

    def score_listed_pairs(
        self,
        images: EnsembleFragments,
        texts: EnsembleFragments,
        image_idx: Tensor,
        text_idx: Tensor,
        precision: Precision = "auto",
    ) -> Tensor:
        """The ensemble's scores (P,) of the pairs (images[image_idx[p]], texts[text_idx[p]]): the weighted mean of
        the members' full scores there, without the full matrix (an ensemble as the reranker of a shortlist)."""
        for name, value in (("images", images), ("texts", texts)):
            if not isinstance(value, EnsembleFragments) or len(value.parts) != len(self.members):
                raise InputError(f"Ensemble.score_listed_pairs takes the ensemble's own encodings; {name} are not.")
        total = None
        for member, weight, img, txt in zip(self.members, self.weights, images.parts, texts.parts, strict=True):
            scores = weight * listed_scores(member, img, txt, image_idx, text_idx, precision)
            total = scores if total is None else total + scores
        return total

    # -- saving ---------------------------------------------------------------------------------------------
    def document(self) -> dict[str, Any]:
        """What the ensemble's ``config.json`` holds."""
        return {
            "format_version": FORMAT_VERSION,
            "library_name": "mmzoo",
            "mmzoo_version": __version__,
            "ensemble": {
                "members": [f"member-{i}" for i in range(len(self.members))],
                "weights": self.weights,
                "configs": [m.config.to_dict() for m in self.members],
            },
            **self.extra_config,
        }

    def save_pretrained(self, directory: str | Path, *, card: str | None = None) -> Path:
        """Write each member to ``member-i/`` and the ensemble's ``config.json`` and card to ``directory``."""
        directory = Path(directory)
        document = self.document()

        def members(folder: Path) -> None:
            for name, member in zip(document["ensemble"]["members"], self.members, strict=True):
                member.save_pretrained(folder / name)

        return write_folder(directory, document, None, card if card is not None else str(model_card(document)), members)


__all__ = ["Ensemble", "EnsembleFragments"]
