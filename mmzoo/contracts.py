"""The contracts between the core and its plugins: the data passed around, the abstract bases, the protocols.

Data flows one way: region features and captions -> encoders -> :class:`Fragments` -> fusion -> scores
-> loss or metrics. A component is an ``nn.Module`` subclass of one of the bases below that carries a
pydantic ``Config`` class; the registry builds it as ``cls(config, context)``.

The protocols the core relies on are declared here and nowhere else:

* a :class:`Loss` says how it reduces over anchors (:attr:`Loss.reduction`) and whether the trainer may switch
  it between all negatives and the hardest one (:attr:`Loss.supports_hardest_negative`,
  :meth:`Loss.set_hardest_negative`);
* a :class:`FusionBlock` has one block size, :attr:`FusionBlock.pairs_per_block`, that bounds the pairs held at
  once on the training path and in the scoring engine, one door for listed training pairs
  (:meth:`FusionBlock.score_pairs_indexed`), and its caches follow :class:`FusionCache`;
* a :class:`Component` says whether building it downloads weights (:attr:`Component.downloads`);
* a :class:`Converter` turns another codebase's checkpoint into an mmzoo model;
* a :class:`DataFormat` opens a dataset folder as a :class:`Split`.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Protocol, TypeVar, Union, get_args, get_origin, runtime_checkable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator
from torch import Tensor, nn

from mmzoo.errors import InputError


def _kinds(annotation: Any) -> set[type]:
    """The plain types a field annotation admits (unions, Optional, Annotated and Literal flattened)."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        return set().union(*(_kinds(a) for a in get_args(annotation)))
    if origin is Annotated:
        return _kinds(get_args(annotation)[0])
    if origin is Literal:
        return {type(v) for v in get_args(annotation)}
    return {origin or annotation} if isinstance(origin or annotation, type) else set()


class CheckedModel(BaseModel):
    """A pydantic model whose numbers are numbers: ``true`` is no integer and ``"8"`` no number (pydantic's lax mode
    would take both), and every float is finite. Lists still fill tuple fields, as JSON requires."""

    model_config = ConfigDict(allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        kinds = _kinds(cls.model_fields[info.field_name].annotation) if info.field_name else set()
        numeric = kinds & {int, float}
        if isinstance(value, bool) and numeric and bool not in kinds:
            raise ValueError(f"expected a number, got the boolean {value}")
        if isinstance(value, str) and numeric and not kinds & {str, Path}:
            raise ValueError(f"expected a number, got the text {value!r}")
        if isinstance(value, float) and int in kinds and float not in kinds and not value.is_integer():
            raise ValueError(f"expected an integer, got {value}")
        return value


class ComponentConfig(CheckedModel):
    """Base of every component's config: unknown fields are errors, values are re-validated on change.

    Numbers are checked (``true`` is no integer, ``"8"`` no number, floats must be finite), so a typo in a config
    or an override is an error, not a silently different model.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, data: Any) -> Any:
        """Old field names still read (saved configs, overrides), with a DeprecationWarning: :data:`RENAMED`."""
        if not isinstance(data, dict):
            return data
        for old, new in RENAMED.items():
            if old in data and new in cls.model_fields and old not in cls.model_fields:
                warnings.warn(
                    f"{cls.__qualname__}: the field {old!r} is now {new!r}; the old name is read until the next release.",
                    DeprecationWarning,
                    stacklevel=2,
                )
                data = {k: v for k, v in data.items() if k != old} | {new: data[old]}
        return data


#: config fields renamed since 0.2 (old -> new): one block-size name, ``pairs_per_block``, everywhere.
RENAMED = {"block_pairs": "pairs_per_block"}


_Shared = TypeVar("_Shared", nn.Module, nn.Parameter)


@dataclass(frozen=True)
class BuildContext:
    """What a component needs to know beyond its own config section.

    Attributes:
        embed_dim: the joint embedding size ``d`` shared by the encoders and the fusion block.
        assets: folder of a saved model holding this component's files (tokenizer, vocabulary,
            backbone config). When set, the component builds from it and downloads nothing:
            its weights come from the saved ``model.safetensors`` afterwards.
        native: ``assets`` is not an mmzoo folder but the weights' own folder in their library's layout (a zoo
            entry whose ``Weights.format`` is :data:`~mmzoo.registry.records.NATIVE_FORMATS`, e.g. a transformers
            repository): every component gets that one folder and reads its architecture, preprocessing and
            weights from it, strictly, with the network off.
        shared: the table behind :meth:`share`: one per model build (``MatchingModel`` makes it and hands it to
            every component of that model, and empties it once they are built); a context made alone has its own.
    """

    embed_dim: int
    assets: Path | None = None
    native: bool = False
    shared: dict[Hashable, Any] = field(default_factory=dict, repr=False, compare=False, hash=False)

    def share(self, key: Hashable, build: Callable[[], _Shared]) -> _Shared:
        """The one module (or parameter) of this model build stored under ``key``: the first caller's ``build()``.

        Components of one model that hold the same weights (BLIP's text encoder, read by ``blip-text`` and by the
        ``blip-itm`` head; BLIP-2's Q-Former, read by all three components) call it with the same key and get the
        same instance, so each weight exists once: in memory, in ``model.parameters()`` (one parameter for the
        optimizer) and in a saved ``model.safetensors`` (written once, its other names recorded as aliases).
        The key must say everything that makes two modules interchangeable (architecture and weights source): two
        components that differ there must not meet. Two models never share: each build has its own table.

        Example:
            >>> layer = context.share(("blip", fingerprint, "layer.0.attention"), lambda: mine)  # doctest: +SKIP
        """
        if key not in self.shared:
            built = build()
            if not isinstance(built, nn.Module | nn.Parameter):
                raise TypeError(
                    f"BuildContext.share({key!r}) shares modules and parameters; got {type(built).__name__}."
                )
            self.shared[key] = built
        return self.shared[key]


@dataclass
class Fragments:
    """Fragment features of a batch of images or captions, with their validity mask and global vector.

    Attributes:
        features: (N, L, d) float, one row per region or token.
        mask: (N, L) bool, True where the fragment is real (not padding).
        pooled: (N, d) float, the L2-normalised global embedding (``i0`` or ``c0``).
        modality: ``"image"`` or ``"text"`` when a model encoded them (None: made by hand), so that arguments
            given the wrong way round are caught.
        origin: which model encoded them (an opaque token), so that fragments of two models are not mixed.
    """

    features: Tensor
    mask: Tensor
    pooled: Tensor
    modality: str | None = None
    origin: str | None = None

    def __post_init__(self) -> None:
        f, m, p = self.features, self.mask, self.pooled
        for name, value in (("features", f), ("mask", m), ("pooled", p)):
            if not isinstance(value, Tensor):
                raise InputError(f"Fragments.{name} must be a torch.Tensor; got {type(value).__name__}.")
        if f.dim() != 3:
            raise InputError(f"Fragments.features must be (N, L, d); got shape {tuple(f.shape)}.")
        if m.dtype != torch.bool:
            raise InputError(f"Fragments.mask must be a bool tensor; got dtype {m.dtype} (use mask.bool()).")
        if m.shape != f.shape[:2]:
            raise InputError(f"Fragments.mask must be (N, L) = {tuple(f.shape[:2])}; got {tuple(m.shape)}.")
        if p.dim() != 2 or p.shape[0] != f.shape[0]:
            raise InputError(f"Fragments.pooled must be (N, d) with N={f.shape[0]}; got {tuple(p.shape)}.")
        if self.modality not in (None, "image", "text"):
            raise InputError(f"Fragments.modality must be 'image', 'text' or None; got {self.modality!r}.")

    def __len__(self) -> int:
        return self.features.shape[0]

    @property
    def device(self) -> torch.device:
        return self.features.device

    def _like(self, features: Tensor, mask: Tensor, pooled: Tensor) -> Fragments:
        return Fragments(features, mask, pooled, self.modality, self.origin)

    def __getitem__(self, index: slice | Tensor) -> Fragments:
        """Select samples (rows), e.g. ``frags[0:128]`` for one block of a large batch."""
        return self._like(self.features[index], self.mask[index], self.pooled[index])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Fragments:
        """Move to a device and/or cast the float tensors; the mask stays bool."""
        return self._like(
            self.features.to(device=device, dtype=dtype),
            self.mask.to(device=device),
            self.pooled.to(device=device, dtype=dtype),
        )

    def tagged(self, modality: str, origin: str | None) -> Fragments:
        """The same fragments, marked as ``modality`` encoded by ``origin``."""
        return Fragments(self.features, self.mask, self.pooled, modality, origin)

    @staticmethod
    def cat(parts: Sequence[Fragments]) -> Fragments:
        """Concatenate along the batch, right-padding the fragment axis to the longest part."""
        if not parts:
            raise InputError("Fragments.cat needs at least one part.")
        if len({(p.modality, p.origin) for p in parts}) > 1:
            raise InputError("Fragments.cat got fragments of different modalities or models.")
        length = max(p.features.shape[1] for p in parts)

        def pad(t: Tensor, value: float | bool) -> Tensor:
            extra = length - t.shape[1]
            if extra == 0:
                return t
            shape = (t.shape[0], extra, *t.shape[2:])
            return torch.cat([t, t.new_full(shape, value)], dim=1)

        return parts[0]._like(
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
    #: True when building the component downloads pretrained weights (BERT): data meant for offline CPU runs (the
    #: shapes data) may then suggest another component; one that builds from nothing is never swapped.
    downloads: ClassVar[bool] = False

    def __init__(self, config: ComponentConfig, context: BuildContext) -> None:
        super().__init__()
        self.config = config
        self.context = context

    def save_assets(self, directory: Path) -> None:
        """Write the non-tensor files this component needs to be rebuilt offline (tokenizer, vocabulary)."""

    @classmethod
    def test_config(cls) -> dict[str, Any]:
        """Small settings the contract tests (:mod:`mmzoo.testing`) build this component with on a CPU.

        The tests use ``embed_dim`` 32 and, for components with an ``in_dim`` field, regions of size 24.
        """
        return {}


class VisualEncoder(Component):
    """Region features (N, k, D) float and an optional mask (N, k) bool -> image :class:`Fragments`."""

    #: size D of one input region feature; ``MatchingModel.encode_images`` checks inputs against it.
    input_dim: int | None = None
    #: True for encoders that take images: they also implement ``preprocess(images, train=False) -> (N, 3, H, W)``,
    #: ``transform(train=False)`` (the per-image PIL -> (3, H, W) transform a Dataset applies) and
    #: ``forward(pixels, None)``; ``MatchingModel.encode_images`` then accepts PIL images, paths or pixels.
    takes_pixels: bool = False

    def preprocess(self, images: Any, train: bool = False) -> Tensor:
        """Images (PIL, paths or pixels) -> (N, 3, H, W) pixels; pixel encoders implement it."""
        raise InputError(f"{type(self).__name__} takes region features, not images.")

    def transform(self, train: bool = False) -> Any:
        """The per-image transform (PIL -> (3, H, W)) a Dataset applies; pixel encoders implement it."""
        raise InputError(f"{type(self).__name__} takes region features, not images.")

    @abstractmethod
    def forward(self, features: Tensor, mask: Tensor) -> Fragments: ...

    @classmethod
    def describe_inputs(cls, config: ComponentConfig) -> str:
        """What ``encode_images`` takes, in words, for model cards (the preprocessing travels with the weights)."""
        dim = getattr(config, "in_dim", None)
        return f"(N, k, {dim}) float32 region features" if dim else "(N, k, D) float32 region features"


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
    # pair. A cache follows :class:`FusionCache`. The defaults cache nothing (the cache is the Fragments
    # themselves) and fall back to ``forward``.

    #: pairs whose activations one call may hold at once: the block of the scoring engine and the chunk of the
    #: training path (``score_pairs`` of many pairs). Blocks read it from their config.
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

    #: True when the block ranks shortlists itself (:meth:`shortlist_scores`) instead of the model's ``<i0, c0>``.
    shortlists: ClassVar[bool] = False

    def shortlist_scores(self, images: Any, texts: Any) -> Tensor:
        """The cheap scores (n_images, n_texts) float32 that pick rerank candidates, from prepared caches, for a
        block whose model's cheap score is not ``<i0, c0>`` (BLIP-2's ITC: a maximum over 32 query vectors).
        Read only when :attr:`shortlists` is True."""
        raise NotImplementedError(f"{type(self).__name__} shortlists with the model's <i0, c0>.")

    def score_pairs_indexed(self, images: Fragments, texts: Fragments, image_idx: Tensor, text_idx: Tensor) -> Tensor:
        """Differentiable scores (P,) of the pairs (images[image_idx[p]], texts[text_idx[p]]): hard-negative training.

        The default expands the pairs and calls :meth:`score_pairs` in chunks of :attr:`pairs_per_block`; a block
        that can prepare each image and caption once however many pairs it is in (MMCA) overrides it.
        """
        step = int(self.pairs_per_block)
        parts = [
            self.score_pairs(images[image_idx[s : s + step]], texts[text_idx[s : s + step]])
            for s in range(0, len(image_idx), step)
        ]
        return torch.cat(parts) if parts else images.pooled.new_zeros(0)


class Loss(Component):
    """Scores (B, B) with the positive pairs on the diagonal -> scalar loss.

    Every loss declares its :attr:`reduction` over anchors: distributed training needs it to scale each
    process's loss so that the averaged gradient equals the one-process gradient of the whole batch.
    """

    #: True when the trainer may switch the loss between all negatives and the hardest one per anchor
    #: (warm-up epochs sum over all negatives); such a loss implements :meth:`set_hardest_negative`.
    supports_hardest_negative: ClassVar[bool] = False
    #: whether only the hardest negative counts now (meaningful when ``supports_hardest_negative``).
    hardest_negative: bool = False

    @property
    @abstractmethod
    def reduction(self) -> Literal["sum", "mean"]:
        """``"sum"`` or ``"mean"``: how the per-anchor terms are combined."""

    def set_hardest_negative(self, hardest: bool) -> None:
        """Count only the hardest negative per anchor (True) or every negative (False)."""
        raise NotImplementedError(f"{type(self).__name__} has no hardest-negative switch.")

    @abstractmethod
    def forward(self, scores: Tensor) -> Tensor: ...


@runtime_checkable
class FusionCache(Protocol):
    """What ``FusionBlock.prepare_images`` / ``prepare_texts`` return: row-selectable per-item work."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice | Tensor) -> Any: ...

    @property
    def device(self) -> torch.device: ...


class Converter(ABC):
    """Turns another codebase's checkpoint into an mmzoo model (``mmzoo convert NAME CHECKPOINT --out DIR``).

    ``Config`` holds the converter's options (each field is a ``--flag`` of ``mmzoo convert``). :meth:`convert`
    reads the file with :func:`mmzoo.plugin.read_foreign_checkpoint` (nothing but ``argparse.Namespace`` is ever
    unpickled), builds the architecture the checkpoint describes, maps every tensor strictly and returns the
    model; anything that does not fit is a :class:`~mmzoo.errors.CheckpointError` naming it. The class
    attributes describe the source for model cards.
    """

    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    code: ClassVar[str] = ""
    license: ClassVar[str] = ""

    def __init__(self, config: ComponentConfig) -> None:
        self.config = config

    @abstractmethod
    def convert(self, checkpoint: Path) -> nn.Module:
        """The converted ``MatchingModel`` (or ``Ensemble``), weights loaded, in eval mode."""


class Split(ABC):
    """One split of a dataset: images as region features with a validity mask, and their captions.

    Item ``i`` is caption ``i`` with its image (``i // captions_per_image``): ``(features (k, D) float32,
    mask (k,) bool, caption, caption index, image index)``.

    Attributes:
        name: the split's name (``train``, ``dev``, ``test``, ...).
        captions: every caption, ``captions_per_image`` consecutive ones per image.
        captions_per_image: captions of one image.
        num_images: images in the split.
        regions: the most regions an image has (the padded length ``k``).
        region_dim: size ``D`` of a region feature.
        twins: twin image of each image (-1 for none) when the split has swapped-attribute distractors.
        twin_types: what each image and its twin differ in (``colour``, ``position``, ...; ``-`` for none), when
            the data says so; None otherwise.
        manifest: the dataset's manifest (a ``mmzoo.plugin.DataManifest`` read from ``mmzoo_data.json``), or None.
        pixels: True for a split of raw images (``mmzoo.data.open_image_split``): it has no region features and
            gives its images with ``load_images(indices) -> list of PIL images``, which a model that reads pixels
            preprocesses itself.
    """

    name: str
    captions: list[str]
    captions_per_image: int
    num_images: int
    regions: int
    region_dim: int
    twins: np.ndarray | None = None
    twin_types: list[str] | None = None
    manifest: Any | None = None  # mmzoo.plugin.DataManifest (a floor above this one)
    pixels: bool = False

    @abstractmethod
    def image_features(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Regions of the given images: (features (n, k, D) float32, mask (n, k) bool)."""

    @abstractmethod
    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, str, int, int]: ...

    def __len__(self) -> int:
        return len(self.captions)

    def image_captions(self, image: int) -> list[str]:
        """The captions of one image."""
        start = int(image) * self.captions_per_image
        return self.captions[start : start + self.captions_per_image]


class DataFormat(ABC):
    """A registered dataset layout (``registry.data_format``): opens a folder's split as a :class:`Split`.

    The folder's ``mmzoo_data.json`` names its format (``"precomp"`` when it names none).
    """

    description: ClassVar[str] = ""

    @abstractmethod
    def open_split(self, root: Path, split: str, manifest: Any | None, **options: Any) -> Split:
        """The split ``split`` of the dataset folder ``root``; options are format-specific."""

    def files(self, root: Path, split: str) -> list[Path]:
        """The files that hold split ``split`` of ``root``: a training run fingerprints them to notice changed data.

        The default takes every file of ``root`` named ``{split}.*`` or ``{split}_*`` (``train.jsonl``,
        ``train_ims.npy``); a format that keeps its files elsewhere (sub-folders, shards) overrides it.
        """
        root = Path(root)
        if not root.is_dir():
            return []
        return sorted(p for p in root.iterdir() if p.is_file() and p.name.startswith((f"{split}.", f"{split}_")))


def masked_mean(features: Tensor, mask: Tensor) -> Tensor:
    """Mean over the valid fragments: (N, L, d), (N, L) -> (N, d)."""
    weights = mask.to(features.dtype).unsqueeze(-1)
    return (features * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def l2_normalize(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale rows to unit length without dividing by zero."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


__all__ = [
    "BuildContext",
    "CheckedModel",
    "Component",
    "ComponentConfig",
    "Converter",
    "DataFormat",
    "Fragments",
    "FusionBlock",
    "FusionCache",
    "Loss",
    "Split",
    "TextEncoder",
    "TokenBatch",
    "VisualEncoder",
    "l2_normalize",
    "masked_mean",
]
