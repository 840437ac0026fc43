"""MatchingModel: a visual encoder, a text encoder, an optional fusion block and a loss, composed.

The score of image I and caption T is ``S = dual_weight * <i0, c0> + alpha * fused(I, T)``: the cosine of the
two global embeddings plus the fusion block's score of their fragments (MMCA's ``<i1, c1>``). SCAN and SGRAF
score with the fused term alone (``dual_weight = 0``); ``<i0, c0>`` remains every model's cheap score for
shortlisting.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mmzoo import registry
from mmzoo.checkpoint import config_document, split_aliases, write_folder
from mmzoo.config import SECTIONS, ModelConfig
from mmzoo.contracts import BuildContext, Fragments, FusionBlock, TextEncoder, TokenBatch, VisualEncoder
from mmzoo.contracts import Loss as LossBase
from mmzoo.errors import InputError, MMZooWarning
from mmzoo.hub.cards import model_card
from mmzoo.hub.transfer import PushToHubMixin
from mmzoo.scoring import EmbeddingIndex, Precision, SearchResult, fused_matrix
from mmzoo.scoring import search as search_index

logger = logging.getLogger(__name__)


@dataclass
class MatchingOutput:
    """What the training forward returns: the loss and the (B, B) score matrix it was computed from."""

    loss: Tensor
    scores: Tensor


class MatchingModel(nn.Module, PushToHubMixin):
    """Image-text matching model built from a :class:`~mmzoo.config.ModelConfig`.

    Examples:
        >>> model = mmzoo.create_model("vsepp", **{"visual.in_dim": 16, "embed_dim": 32})
        >>> model.text.fit(["a red circle", "a blue square"])
        >>> images = model.encode_images(torch.randn(2, 4, 16))
        >>> texts = model.encode_texts(["a red circle", "a blue square"])
        >>> model.similarity(images, texts).shape
        torch.Size([2, 2])
    """

    def __init__(
        self, config: ModelConfig | Mapping[str, Any], assets: Path | str | None = None, *, native: bool = False
    ) -> None:
        """``assets``: a saved folder (each section builds from ``assets/SECTION``); with ``native=True``, the
        weights' own folder in their library's layout, which every section builds from, weights included."""
        super().__init__()
        self.config = ModelConfig.parse(config)
        assets = Path(assets) if assets is not None else None
        shared: dict[Any, Any] = {}  # BuildContext.share: this build's components only, never another model's

        def build(section: str) -> Any:
            spec = getattr(self.config, section)
            if spec is None:
                return None
            cls = registry.get_registry(SECTIONS[section]).get(spec.name)
            if native:
                context = BuildContext(self.config.embed_dim, assets, native=True, shared=shared)
            else:
                context = BuildContext(self.config.embed_dim, assets / section if assets else None, shared=shared)
            return cls(self.config.component_config(section), context)

        self.visual: VisualEncoder = build("visual")
        self.text: TextEncoder = build("text")
        self.fusion: FusionBlock | None = build("fusion")
        self.loss_fn: LossBase = build("loss")
        shared.clear()  # the components hold what they share; the table served this build only
        #: extra top-level config.json entries that travel with the weights (e.g. preprocessing).
        self.extra_config: dict[str, Any] = {}
        #: tags the fragments this model encodes, so that another model's fragments are not scored by mistake.
        self.origin = uuid.uuid4().hex[:12]

    def save_pretrained(self, directory: str | Path, *, card: str | None = None) -> Path:
        """Write config.json, model.safetensors, each component's files and the model card to ``directory``.

        ``card`` replaces the generated model card (e.g. one with measured results).
        """
        document = config_document(self.config.to_dict(), self.extra_config)
        stored, aliases = split_aliases(self.state_dict(keep_vars=True))
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in stored.items()}
        text = card if card is not None else str(model_card(document))
        return write_folder(directory, document, tensors, text, self._save_assets, aliases=aliases)

    def _save_assets(self, directory: Path) -> None:
        for section in SECTIONS:
            component = getattr(self, "loss_fn" if section == "loss" else section)
            if component is not None:
                component.save_assets(directory / section)

    @property
    def alpha(self) -> float:
        return self.config.alpha

    @property
    def dual_weight(self) -> float:
        return self.config.dual_weight

    @property
    def uses_fusion(self) -> bool:
        """True when the fused term contributes (a fusion block and alpha > 0)."""
        return self.fusion is not None and self.alpha != 0.0

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def input_dim(self) -> int | None:
        """Size D of the region features ``encode_images`` takes (None: not fixed, e.g. pixels)."""
        return self.visual.input_dim

    def compact(self, fragments: Fragments) -> Fragments:
        """What :meth:`similarity` needs later of encoded items: all fragments with a fused term, else only the
        pooled vector (as one fragment). COCO 5K's caption fragments alone take 3.3 GB at d = 1024."""
        if self.uses_fusion:
            return fragments
        pooled = fragments.pooled
        mask = torch.ones(len(pooled), 1, dtype=torch.bool, device=pooled.device)
        return Fragments(pooled[:, None, :], mask, pooled, fragments.modality, fragments.origin)

    # -- encoding ---------------------------------------------------------------------------------
    def encode_images(self, features: Any, mask: Tensor | np.ndarray | None = None) -> Fragments:
        """Region features (N, k, D) float and an optional validity mask (N, k) bool -> Fragments.

        Tensors or numpy arrays: ``model.encode_images(*split.image_features(range(8)))`` takes what
        :meth:`mmzoo.plugin.Split.image_features` returns. When the visual encoder takes pixels
        (``visual.takes_pixels``), ``features`` may also be PIL images, image file paths or preprocessed
        pixels (N, 3, H, W); see :meth:`preprocess`.
        """
        features, mask = as_tensor(features), as_tensor(mask)
        if self.visual.takes_pixels and not (isinstance(features, Tensor) and features.dim() == 3):
            return self._tag(self.visual(self.preprocess(features).to(self.device), None), "image")
        features, mask = check_regions(features, mask, self.visual.input_dim)
        device, dtype = self.device, next(self.visual.parameters()).dtype
        return self._tag(self.visual(features.to(device, dtype), mask.to(device)), "image")

    def _tag(self, fragments: Fragments, modality: str) -> Fragments:
        """Mark what this model encoded, and refuse to hand on numbers that overflowed."""
        if not bool(torch.isfinite(fragments.pooled).all()):
            side = "region features" if modality == "image" else "captions"
            raise InputError(
                f"Encoding these {side} gave NaN or infinite embeddings. Inputs of huge magnitude overflow the "
                "encoder (check the features' scale: bottom-up features are in the tens at most), or the weights "
                "are broken (a diverged training run)."
            )
        return fragments.tagged(modality, self.origin)

    def preprocess(self, images: Any, train: bool = False) -> Tensor:
        """Images (PIL, paths, or a (N, 3, H, W) tensor taken as ready) -> pixels, with the saved preprocessing."""
        if not self.visual.takes_pixels:
            raise InputError(
                f"The visual encoder {self.config.visual.name!r} takes region features, not images; "
                "pass a (N, k, D) tensor to encode_images."
            )
        return self.visual.preprocess(images, train=train)

    def encode_texts(self, captions: Sequence[str] | TokenBatch) -> Fragments:
        """Captions as strings (tokenised by the text encoder) or a :class:`TokenBatch` -> Fragments."""
        tokens = captions if isinstance(captions, TokenBatch) else self.tokenize(captions)
        if len(tokens) == 0:
            raise InputError("encode_texts got an empty batch of captions.")
        if not bool(tokens.mask.any(dim=1).all()):
            raise InputError("Every caption needs at least one token; an empty caption has none.")
        return self._tag(self.text(tokens.to(self.device)), "text")

    def tokenize(self, captions: Sequence[str]) -> TokenBatch:
        if isinstance(captions, str):
            raise InputError("encode_texts takes a list of captions, not one string; wrap it in a list.")
        if not isinstance(captions, Sequence):
            raise InputError(
                f"encode_texts takes a list of captions; got a {type(captions).__name__} (use list(...) first)."
            )
        if len(captions) == 0:
            raise InputError("encode_texts got an empty batch of captions.")
        bad = [i for i, c in enumerate(captions) if not isinstance(c, str) or not c.strip()]
        if bad:
            raise InputError(f"Captions must be non-empty strings; caption(s) {bad[:5]} are not.")
        return self.text.tokenize(list(captions))

    # -- scoring ----------------------------------------------------------------------------------
    def similarity(
        self, images: Fragments, texts: Fragments, block_size: int = 256, precision: Precision = "auto"
    ) -> Tensor:
        """The full (N_images, N_texts) matrix of S = dual_weight * <i0, c0> + alpha * fused, in blocks.

        In training mode the fused term is the fusion block's differentiable ``forward`` (dropout on).
        In eval mode it comes from the scoring engine (:func:`mmzoo.scoring.fused_matrix`): per-item
        work cached, bounded blocks of pairs, ``torch.inference_mode``, bfloat16 on a GPU (``precision``:
        ``"fp32"`` to reproduce float32 numbers there); the result is then an inference tensor (no gradients). Any sub-block of the matrix scores the same as
        the whole, to float tolerance.
        """
        check_pair(images, texts, self.origin)
        scores = images.pooled @ texts.pooled.t()
        if not self.uses_fusion:
            return scores
        if self.dual_weight != 1.0:
            scores = self.dual_weight * scores
        if not self.training:
            fused = fused_matrix(self.fusion, images, texts, block_size=block_size, precision=precision)
            return scores + self.alpha * fused.to(scores.dtype)
        fused = torch.empty_like(scores)
        for i in range(0, len(images), block_size):
            for j in range(0, len(texts), block_size):
                fused[i : i + block_size, j : j + block_size] = self.fusion(
                    images[i : i + block_size], texts[j : j + block_size]
                )
        return scores + self.alpha * fused

    def search(
        self,
        queries: Any,
        index: EmbeddingIndex,
        top_k: int = 10,
        rerank: int | None = None,
        shortlist: Any | None = None,
        shortlist_queries: Any | None = None,
    ) -> SearchResult:
        """Retrieve the best ``top_k`` items of ``index`` for each query (captions for images or back).

        With ``rerank=K`` a cheap score (one matrix product) shortlists K candidates per query and the full ``S``
        is computed for those only; ``rerank=None`` scores every pair exactly. The cheap score is this model's
        ``<i0, c0>``, or with ``shortlist=other_model`` the other model's (e.g. a dual encoder shortlisting for a
        cross-attention model): the index must then hold that model's vectors of its items
        (``EmbeddingIndex.from_images(self, images, shortlist=(other_model, other_images))``) and the queries
        are encoded by both models when they are raw (a list of captions, or region features), or the other
        model's encodings come as ``shortlist_queries``. ``queries`` must be the other modality than the index
        holds.

        Returns:
            :class:`mmzoo.scoring.SearchResult` with ``scores`` (Q, top_k) float32 and ``indices``
            (Q, top_k) long into the index, best first, and ``shortlist`` (Q, K) when reranking.

        Examples:
            >>> index = EmbeddingIndex.from_images(model, model.encode_images(features))  # doctest: +SKIP
            >>> hits = model.search(model.encode_texts(["a red circle"]), index, top_k=5, rerank=50)  # doctest: +SKIP
            >>> hits.indices[0]  # doctest: +SKIP
            tensor([12,  3, 40,  7, 19])
            >>> index = EmbeddingIndex.from_images(mmca, mmca.encode_images(f), shortlist=(vse, vse.encode_images(f)))  # doctest: +SKIP
            >>> hits = mmca.search(["a red circle"], index, top_k=5, rerank=50, shortlist=vse)  # doctest: +SKIP
        """
        search_saved = getattr(index, "search_with", None)
        if search_saved is not None:  # a saved index (mmzoo.serving.SavedIndex) searches with its own path
            return search_saved(self, queries, top_k=top_k, rerank=rerank, shortlist=shortlist)
        built_by = getattr(getattr(index, "fragments", None), "origin", None)
        if built_by is not None and built_by != self.origin:
            raise InputError(
                "This index was built from another model's encodings (another model, or another load of this one): "
                "its vectors mean nothing to this model. Build it with the model that searches it: "
                "EmbeddingIndex.from_images(model, model.encode_images(...))."
            )
        if not isinstance(queries, Fragments):
            if index.side == "images" and isinstance(queries, list | tuple):
                check_queries(self, queries)
            if shortlist is not None and shortlist_queries is None:
                shortlist_queries = encode_queries(shortlist, queries, index.side)
            queries = encode_queries(self, queries, index.side)
        return search_index(
            self, queries, index, top_k=top_k, rerank=rerank, shortlist=shortlist, shortlist_queries=shortlist_queries
        )

    def forward(
        self, features: Tensor, captions: Sequence[str] | TokenBatch, mask: Tensor | None = None
    ) -> MatchingOutput:
        """Training forward: B images and their B captions (pair n is positive) -> loss and scores."""
        images = self.encode_images(features, mask)
        texts = self.encode_texts(captions)
        if len(images) != len(texts):
            raise InputError(f"The training forward needs one caption per image; got {len(texts)} for {len(images)}.")
        scores = self.similarity(images, texts, block_size=max(len(images), 1))
        return MatchingOutput(self.loss_fn(scores), scores)


#: share of a query's words unknown to the text encoder from which its ranking is flagged.
UNKNOWN_QUERY_SHARE = 0.5


def check_queries(model: Any, queries: Sequence[str]) -> list[str]:
    """Warn about each caption query whose words are mostly unknown to the model's text encoder, however short
    ("a cat" and "a motorcycle" with neither noun known are both "a <unk>": the same ranking). Text encoders with
    a fixed vocabulary tell which words they do not know through ``unknown_words(caption) -> (unknown, total)``;
    others (subword tokenizers) know every word and are not checked. Returns the warnings' texts."""
    texts = []
    for member in getattr(model, "members", None) or [model]:
        unknown_words = getattr(getattr(member, "text", None), "unknown_words", None)
        if unknown_words is None:
            continue
        for query in queries:
            unknown, total = unknown_words(query)
            if unknown and len(unknown) >= UNKNOWN_QUERY_SHARE * total:
                texts.append(
                    f"{len(unknown)} of the {total} words of the query {query!r} are not in the model's vocabulary "
                    f"({', '.join(dict.fromkeys(unknown))}) and all read as the same <unk>: its ranking says little. "
                    "Use words of the training captions."
                )
    for text in texts:
        warnings.warn(text, MMZooWarning, stacklevel=3)
    return texts


def encode_queries(model: Any, queries: Any, index_side: str) -> Any:
    """Raw queries encoded by ``model``: captions (a list of strings) for an image index, else region features."""
    with torch.no_grad():
        return model.encode_texts(queries) if index_side == "images" else model.encode_images(queries)


def check_pair(images: Fragments, texts: Fragments, origin: str | None = None) -> None:
    """Image and caption fragments must fit together: Fragments of the right modality and model, same d and device."""
    for name, value in (("images", images), ("texts", texts)):
        if not isinstance(value, Fragments):
            raise InputError(
                f"similarity takes the Fragments of encode_images and encode_texts; {name} is {type(value).__name__}."
            )
    if images.modality == "text" or texts.modality == "image":
        raise InputError("similarity(images, texts) got captions as images or images as captions: swap the arguments.")
    strangers = [
        f.origin for f in (images, texts) if f.origin is not None and origin is not None and f.origin != origin
    ]
    if strangers:
        raise InputError(
            "These fragments were encoded by another model: encode the images and captions with the model that "
            "scores them."
        )
    if images.pooled.shape[-1] != texts.pooled.shape[-1]:
        raise InputError(
            f"The image fragments have size {images.pooled.shape[-1]} but the caption fragments "
            f"{texts.pooled.shape[-1]}: they come from different models."
        )
    if images.device != texts.device:
        raise InputError(f"The images are on {images.device} and the captions on {texts.device}; move one.")


def as_tensor(value: Any) -> Any:
    """A numpy array as a tensor (a read-only one, e.g. memory-mapped features, copied); anything else as is."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value if value.flags.writeable else value.copy())
    return value


def check_regions(features: Tensor, mask: Tensor | None, input_dim: int | None) -> tuple[Tensor, Tensor]:
    """Validate region features and mask; return the mask (all True when none was given)."""
    if not isinstance(features, Tensor):
        raise InputError(f"Region features must be a torch.Tensor; got {type(features).__name__}.")
    if features.dim() != 3:
        raise InputError(f"Region features must be (N, k, D); got shape {tuple(features.shape)}.")
    if not features.is_floating_point():
        raise InputError(f"Region features must be floating point; got {features.dtype}.")
    n, k, dim = features.shape
    if n == 0 or k == 0:
        raise InputError(f"Region features are empty: shape {tuple(features.shape)}.")
    if input_dim is not None and dim != input_dim:
        raise InputError(f"Region features have D={dim} but the visual encoder expects D={input_dim} (visual.in_dim).")
    if mask is None:
        mask = torch.ones(n, k, dtype=torch.bool, device=features.device)
    if mask.shape != (n, k) or mask.dtype != torch.bool:
        raise InputError(f"The region mask must be bool (N, k) = ({n}, {k}); got {tuple(mask.shape)} {mask.dtype}.")
    empty = (~mask.any(dim=1)).nonzero().flatten()
    if len(empty):
        raise InputError(f"Image(s) {empty[:5].tolist()} have every region masked out; each needs at least one.")
    if not bool(torch.isfinite(features[mask]).all()):
        raise InputError("Region features contain NaN or infinite values.")
    # padded regions may hold anything (even NaN); zero them so no arithmetic can leak them out
    return features.masked_fill(~mask.unsqueeze(-1), 0.0), mask


__all__ = ["MatchingModel", "MatchingOutput", "as_tensor", "check_pair", "check_queries", "check_regions"]
