"""The contracts every plugin implements: data passed between components and their abstract bases.

Data flows one way: region features and captions -> encoders -> :class:`Fragments` -> fusion -> scores
-> loss or metrics. A component is an ``nn.Module`` subclass of one of the bases below that carries a
pydantic ``Config`` class; the registry builds it as ``cls(config, context)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from mmzoo.errors import InputError


class ComponentConfig(BaseModel):
    """Base of every component's config: unknown fields are errors, values are re-validated on change."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


@dataclass(frozen=True)
class BuildContext:
    """What a component needs to know beyond its own config section.

    Attributes:
        embed_dim: the joint embedding size ``d`` shared by the encoders and the fusion block.
        assets: folder of a saved model holding this component's files (tokenizer, vocabulary,
            backbone config). When set, the component builds from it and downloads nothing:
            its weights come from the saved ``model.safetensors`` afterwards.
    """

    embed_dim: int
    assets: Path | None = None


@dataclass
class Fragments:
    """Fragment features of a batch of images or captions, with their validity mask and global vector.

    Attributes:
        features: (N, L, d) float, one row per region or token.
        mask: (N, L) bool, True where the fragment is real (not padding).
        pooled: (N, d) float, the L2-normalised global embedding (``i0`` or ``c0``).
    """

    features: Tensor
    mask: Tensor
    pooled: Tensor

    def __post_init__(self) -> None:
        f, m, p = self.features, self.mask, self.pooled
        if f.dim() != 3 or m.shape != f.shape[:2] or m.dtype != torch.bool:
            raise InputError(
                f"Fragments need features (N, L, d) and a bool mask (N, L); got features "
                f"{tuple(f.shape)} and mask {tuple(m.shape)} {m.dtype}."
            )
        if p.dim() != 2 or p.shape[0] != f.shape[0]:
            raise InputError(f"Fragments.pooled must be (N, d) with N={f.shape[0]}; got {tuple(p.shape)}.")

    def __len__(self) -> int:
        return self.features.shape[0]

    def __getitem__(self, index: slice | Tensor) -> Fragments:
        """Select samples (rows), e.g. ``frags[0:128]`` for one block of a large batch."""
        return Fragments(self.features[index], self.mask[index], self.pooled[index])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Fragments:
        """Move to a device and/or cast the float tensors; the mask stays bool."""
        return Fragments(
            self.features.to(device=device, dtype=dtype),
            self.mask.to(device=device),
            self.pooled.to(device=device, dtype=dtype),
        )

    @staticmethod
    def cat(parts: Sequence[Fragments]) -> Fragments:
        """Concatenate along the batch, right-padding the fragment axis to the longest part."""
        if not parts:
            raise InputError("Fragments.cat needs at least one part.")
        length = max(p.features.shape[1] for p in parts)

        def pad(t: Tensor, value: float | bool) -> Tensor:
            extra = length - t.shape[1]
            if extra == 0:
                return t
            shape = (t.shape[0], extra, *t.shape[2:])
            return torch.cat([t, t.new_full(shape, value)], dim=1)

        return Fragments(
            torch.cat([pad(p.features, 0.0) for p in parts]),
            torch.cat([pad(p.mask, False) for p in parts]),
            torch.cat([p.pooled for p in parts]),
        )


@dataclass
class TokenBatch:
    """Captions already tokenised by the encoder's own tokenizer: ids (N, L) long, mask (N, L) bool."""

    ids: Tensor
    mask: Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(self.ids.to(device), self.mask.to(device))

    def __getitem__(self, index: slice | Tensor) -> TokenBatch:
        return TokenBatch(self.ids[index], self.mask[index])


class Component(nn.Module, ABC):
    """Shared base of all components: holds the validated config and knows how to save its files."""

    Config: ClassVar[type[ComponentConfig]] = ComponentConfig

    def __init__(self, config: ComponentConfig, context: BuildContext) -> None:
        super().__init__()
        self.config = config
        self.context = context

    def save_assets(self, directory: Path) -> None:
        """Write the non-tensor files this component needs to be rebuilt offline (tokenizer, vocabulary)."""


class VisualEncoder(Component):
    """Region features (N, k, D) float and an optional mask (N, k) bool -> image :class:`Fragments`."""

    #: size D of one input region feature; ``MatchingModel.encode_images`` checks inputs against it.
    input_dim: int | None = None
    #: True for encoders that take images: they also implement ``preprocess(images, train=False) -> (N, 3, H, W)``
    #: and ``forward(pixels, None)``; ``MatchingModel.encode_images`` then accepts PIL images, paths or pixels.
    takes_pixels: bool = False

    @abstractmethod
    def forward(self, features: Tensor, mask: Tensor) -> Fragments: ...


class TextEncoder(Component):
    """Captions (``list[str]``, tokenised with the encoder's own tokenizer) -> caption :class:`Fragments`."""

    @abstractmethod
    def tokenize(self, captions: Sequence[str]) -> TokenBatch:
        """Turn raw captions into padded ids and a validity mask."""

    @abstractmethod
    def forward(self, tokens: TokenBatch) -> Fragments: ...

    def fit(self, captions: Sequence[str]) -> None:
        """Learn what must be learnt from training captions before training (e.g. a vocabulary)."""


class FusionBlock(Component):
    """Scores every image against every caption from their fragments: (N_images, N_texts).

    Implementations must give the same result when evaluated block by block (a sub-batch of images
    against a sub-batch of captions), so that large score matrices can be computed in pieces.
    """

    @abstractmethod
    def forward(self, images: Fragments, texts: Fragments) -> Tensor: ...

    def score_pairs(self, images: Fragments, texts: Fragments) -> Tensor:
        """Score aligned pairs (image n with caption n) -> (N,). Override for a faster path."""
        n = len(images)
        if len(texts) != n:
            raise InputError(f"score_pairs needs as many captions as images; got {len(texts)} and {n}.")
        return torch.stack([self.forward(images[i : i + 1], texts[i : i + 1])[0, 0] for i in range(n)])

    # -- the scoring-engine protocol (see mmzoo.scoring) -------------------------------------------
    # A block may cache per-image and per-caption work once and pay only the pair-dependent part per
    # pair. A cache is any object with ``len()`` and row selection ``cache[a:b]`` / ``cache[index]``.
    # The defaults cache nothing (the cache is the Fragments themselves) and fall back to ``forward``.

    #: pairs whose activations one call of ``score_prepared`` may hold at once (the engine's block).
    pairs_per_block: int = 4096

    def prepare_images(self, images: Fragments) -> Fragments:
        """Per-image work done once before scoring many pairs -> a row-sliceable cache."""
        return images

    def prepare_texts(self, texts: Fragments) -> Fragments:
        """Per-caption work done once before scoring many pairs -> a row-sliceable cache."""
        return texts

    def score_prepared(self, images: Fragments, texts: Fragments) -> Tensor:
        """Scores (n_images, n_texts) of one block of prepared images against prepared captions."""
        return self.forward(images, texts)

    def score_prepared_pairs(self, images: Fragments, texts: Fragments, image_idx: Tensor, text_idx: Tensor) -> Tensor:
        """Scores (P,) of the pairs (images[image_idx[p]], texts[text_idx[p]]) from prepared caches."""
        return self.score_pairs(images[image_idx], texts[text_idx])


class Loss(Component):
    """Scores (B, B) with the positive pairs on the diagonal -> scalar loss."""

    @abstractmethod
    def forward(self, scores: Tensor) -> Tensor: ...


def masked_mean(features: Tensor, mask: Tensor) -> Tensor:
    """Mean over the valid fragments: (N, L, d), (N, L) -> (N, d)."""
    weights = mask.to(features.dtype).unsqueeze(-1)
    return (features * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def l2_normalize(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale rows to unit length without dividing by zero."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


__all__ = [
    "BuildContext",
    "Component",
    "ComponentConfig",
    "Fragments",
    "FusionBlock",
    "Loss",
    "TextEncoder",
    "TokenBatch",
    "VisualEncoder",
    "l2_normalize",
    "masked_mean",
]
