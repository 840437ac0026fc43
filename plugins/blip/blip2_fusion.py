"""BLIP-2's two scores as fusion blocks: the ITC maximum over queries, and the ITM head that reranks.

* ``blip2-itc``: the image fragments are its 32 normalised ITC query embeddings (``blip2-vision`` with
  ``fragments: queries``); the score of a caption is the maximum over them of their dot product with the caption's
  pooled embedding: transformers' ``Blip2ForImageTextRetrieval.forward(use_image_text_matching_head=False)`` and
  LAVIS's ``compute_sim_matrix`` (``sim_q2t.max(0)``). A late-interaction maximum, no parameters.
* ``blip2-itm``: the image fragments are the ViT token states (computed once per image by ``blip2-vision``); per
  image, ``prepare_images`` runs the Q-Former's image-only query pass once (the ITC query embeddings); per pair,
  the Q-Former reads the 32 queries and the caption's words together, the queries cross-attending to the image's
  token states, and ``itm_head`` scores each query's output: the fused score is the mean over the queries of the
  *match* logit plus the ITC maximum, ``itm_head(...)[:, :, 1].mean(1) + max_q <q, t>``: what LAVIS's
  ``compute_sim_matrix`` (``lavis/models/blip2_models/blip2.py``, with ``compute_itm`` in ``blip2_qformer.py``)
  gives each pair of a query's ``k_test`` shortlist (``score + topk_sim``). No ViT pass happens here: reranking K
  pairs of one image costs K Q-Former passes, where transformers' ``forward`` re-runs the ViT-g for every pair,
  and the pairs of one image share its cross-attention keys and values (BLIP's ``ImageProjection``).

Both blocks shortlist by the ITC maximum (``shortlists``, ``shortlist_scores``), LAVIS's ``sims_matrix``: one dot
product of pooled vectors cannot express it (``blip2-vision``'s ``pooled``, the mean query embedding, stands in
only where pooled vectors alone are read).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import Field
from torch import Tensor, nn

from mmzoo.errors import InputError
from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, FusionBlock
from mmzoo_plugins.blip.blip2_hf import TINY_BLIP2, Blip2SourceConfig, open_source, shared_qformer_parts
from mmzoo_plugins.blip.blip2_towers import query_embeddings
from mmzoo_plugins.blip.hf import load_owned, save_folder, share_parts, source_key
from mmzoo_plugins.blip.itm import ImageProjection, fixed_projections


def check_widths(queries: Tensor, texts: Tensor) -> None:
    if queries.shape[-1] != texts.shape[-1]:
        raise InputError(
            f"BLIP-2's ITC compares {queries.shape[-1]}-d image query embeddings with {texts.shape[-1]}-d caption "
            "embeddings: encode both with the same BLIP-2 model (blip2-itc takes the fragments of blip2-vision "
            "with fragments=queries)."
        )


def max_over_queries(queries: Tensor, mask: Tensor, texts: Tensor) -> Tensor:
    """(P,) the maximum over each row's valid query embeddings (P, Q, E) of their dot product with texts (P, E)."""
    check_widths(queries, texts)
    sims = (queries * texts[:, None, :].to(queries.dtype)).sum(-1)
    return sims.masked_fill(~mask, float("-inf")).max(dim=1).values


def itc_matrix(queries: Tensor, mask: Tensor, texts: Tensor, rows: int = 64) -> Tensor:
    """(N, M) float32 ITC of every image (valid query embeddings (N, Q, E)) with every caption (M, E), ``rows``
    images at a time (N x Q x M products at once would take 16 GB for COCO 5K)."""
    check_widths(queries, texts)
    with torch.autocast(queries.device.type, enabled=False):  # rankings come from float32 scores
        words = texts.float()
        parts = [
            torch.einsum("nqe,me->nqm", queries[s : s + rows].float(), words)
            .masked_fill(~mask[s : s + rows, :, None], float("-inf"))
            .amax(dim=1)
            for s in range(0, len(queries), rows)
        ]
    return torch.cat(parts) if parts else texts.new_zeros(0, len(texts))


def _every(queries: Tensor) -> Tensor:
    """All-valid mask (N, Q) of query embeddings (N, Q, E)."""
    return torch.ones(queries.shape[:2], dtype=torch.bool, device=queries.device)


class Blip2ITCConfig(ComponentConfig):
    """No settings: the block has no parameters."""


class Blip2ITC(FusionBlock):
    """ITC: max over the image's query embeddings (fragments) of the dot product with the caption's pooled vector."""

    Config = Blip2ITCConfig
    shortlists = True

    def __init__(self, config: Blip2ITCConfig, context: BuildContext) -> None:
        super().__init__(config, context)

    def forward(self, images: Fragments, texts: Fragments) -> Tensor:
        return itc_matrix(images.features, images.mask, texts.pooled)

    def shortlist_scores(self, images: Fragments, texts: Fragments) -> Tensor:
        """LAVIS's shortlist score: the ITC maximum itself."""
        return itc_matrix(images.features, images.mask, texts.pooled)

    def score_pairs(self, images: Fragments, texts: Fragments) -> Tensor:
        if len(texts) != len(images):
            raise InputError(f"score_pairs needs as many captions as images; got {len(texts)} and {len(images)}.")
        return max_over_queries(images.features, images.mask, texts.pooled)

    def score_prepared_pairs(self, images: Fragments, texts: Fragments, image_idx: Tensor, text_idx: Tensor) -> Tensor:
        return max_over_queries(images.features[image_idx], images.mask[image_idx], texts.pooled[text_idx])

    def score_pairs_indexed(self, images: Fragments, texts: Fragments, image_idx: Tensor, text_idx: Tensor) -> Tensor:
        return self.score_prepared_pairs(images, texts, image_idx, text_idx)


@dataclass
class ImageCache:
    """What ``blip2-itm`` keeps per image: the ViT token states, their mask and the 32 ITC query embeddings."""

    states: Tensor
    mask: Tensor
    queries: Tensor

    def __len__(self) -> int:
        return self.states.shape[0]

    def __getitem__(self, index: slice | Tensor) -> ImageCache:
        return ImageCache(self.states[index], self.mask[index], self.queries[index])

    @property
    def device(self) -> torch.device:
        return self.states.device


class Blip2ITMConfig(Blip2SourceConfig):
    pairs_per_block: int = Field(
        64,
        gt=0,
        description="Pairs one Q-Former pass holds; an image's pairs share its token states' keys and values.",
    )
    itc_weight: float = Field(
        1.0, ge=0.0, description="Weight of the ITC maximum added to the ITM match logit (LAVIS: 1)."
    )


class Blip2ITM(FusionBlock):
    """ITM match logit (mean over the queries) of image token states x caption words, plus the ITC maximum."""

    Config = Blip2ITMConfig
    downloads = True
    shortlists = True

    @classmethod
    def test_config(cls) -> dict:
        return {"blip2_config": TINY_BLIP2, "pairs_per_block": 4}

    def __init__(self, config: Blip2ITMConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        from transformers import Blip2QFormerModel

        self.blip2_config, weights, _ = open_source(config, context.assets, context.native)
        hf = self.blip2_config
        self.query_tokens = nn.Parameter(torch.zeros(1, hf.num_query_tokens, hf.qformer_config.hidden_size))
        self.qformer = Blip2QFormerModel(hf.qformer_config)
        self.vision_projection = nn.Linear(hf.qformer_config.hidden_size, hf.image_text_hidden_size)
        self.itm_head = nn.Linear(hf.qformer_config.hidden_size, 2)
        # one Q-Former with blip2-vision and blip2-text when they are in the same model (BuildContext.share)
        taken = share_parts(context, source_key("blip2", hf, weights), self, shared_qformer_parts(hf))
        # the last layer's text feed-forward shapes word outputs that nothing here reads (only the queries' go to
        # itm_head): when the block holds it alone it cannot change a score, so it is frozen rather than left to
        # get no gradient; blip2-text's text pass reads it (its pooled caption embedding), so shared it trains
        last = self.qformer.encoder.layer[-1]
        if f"qformer.encoder.layer.{len(self.qformer.encoder.layer) - 1}.intermediate" not in taken:
            for param in itertools.chain(last.intermediate.parameters(), last.output.parameters()):
                param.requires_grad_(False)
        # the cross-attention key / value projections of the image tokens: shared by an image's pairs (ImageProjection)
        self._projections: list[nn.Linear] = []
        for layer in self.qformer.encoder.layer:
            if layer.has_cross_attention:
                for linear in (layer.crossattention.attention.key, layer.crossattention.attention.value):
                    linear.__class__ = ImageProjection  # same module, same tensors and names
                    self._projections.append(linear)
        self.pairs_per_block = int(config.pairs_per_block)
        self.itc_weight = float(config.itc_weight)
        if weights is not None:
            load_owned(self, weights)

    def prepare_images(self, images: Fragments) -> ImageCache:
        """The ViT token states as they are, and the ITC query embeddings: one query pass per image."""
        width = self.blip2_config.qformer_config.encoder_hidden_size
        if images.features.shape[-1] != width:
            raise InputError(
                f"blip2-itm cross-attends to the ViT's {width}-d token states; these image fragments are "
                f"{images.features.shape[-1]}-d (encode the images with blip2-vision, fragments=vision)."
            )
        states = images.features.to(self.itm_head.weight.dtype)
        queries = query_embeddings(self.qformer, self.query_tokens, self.vision_projection, states, images.mask)
        return ImageCache(states, images.mask, queries)

    def _match(self, states: Tensor, image_mask: Tensor, words: Tensor, word_mask: Tensor) -> Tensor:
        """(P,) mean over the queries of the ITM match logit of aligned (image, caption) pairs.

        transformers 5's Q-Former builds the cross-attention mask for the whole sequence (queries and words) while
        only the queries cross-attend, so a padded image mask with text input is a shape error there. BLIP-2's own
        images are never padded (every image has the ViT's token count); padded ones (another encoder's
        fragments, a ``Fragments.cat``) are scored per number of valid tokens with the padding cut off: exact.
        """
        if bool(image_mask.all()):
            return self._run(states, words, word_mask)
        valid = image_mask.sum(1)
        order = torch.argsort((~image_mask).to(torch.int8), dim=1, stable=True)  # valid tokens first, in order
        packed = states.gather(1, order[..., None].expand_as(states))
        out = states.new_empty(len(states), dtype=self.itm_head.weight.dtype)
        for length in valid.unique().tolist():
            rows = (valid == length).nonzero().flatten()
            out[rows] = self._run(packed[rows, :length], words[rows], word_mask[rows]).to(out.dtype)
        return out

    def _run(self, states: Tensor, words: Tensor, word_mask: Tensor) -> Tensor:
        """(P,) the match logits of pairs whose image tokens are all valid."""
        n_queries = self.query_tokens.shape[1]
        queries = self.query_tokens.expand(len(states), -1, -1)
        embeds = torch.cat([queries, words.to(queries.dtype)], dim=1)
        ones = torch.ones(len(states), n_queries, dtype=torch.long, device=states.device)
        out = self.qformer(
            query_embeds=embeds,
            query_length=n_queries,
            attention_mask=torch.cat([ones, word_mask.long()], dim=1),
            encoder_hidden_states=states,
            encoder_attention_mask=torch.ones(states.shape[:2], dtype=torch.long, device=states.device),
        ).last_hidden_state
        logits = self.itm_head(out[:, :n_queries, :].to(self.itm_head.weight.dtype))
        return logits[:, :, 1].mean(dim=1)

    def score_prepared_pairs(self, images: ImageCache, texts: Fragments, image_idx: Tensor, text_idx: Tensor) -> Tensor:
        """Scores (P,) of listed pairs: an image's pairs share its cross-attention keys and values (no gradient
        needed), the other pairs go in blocks of ``pairs_per_block``."""
        if len(image_idx) != len(text_idx):
            raise InputError(
                f"Listed pairs need as many image as caption indices; got {len(image_idx)}, {len(text_idx)}."
            )
        width = self.blip2_config.qformer_config.hidden_size
        if texts.features.shape[-1] != width:
            raise InputError(
                f"blip2-itm reads the Q-Former's {width}-d word embeddings; these caption fragments are "
                f"{texts.features.shape[-1]}-d (encode the captions with blip2-text)."
            )
        if torch.is_grad_enabled():  # training: one graph, each pair with its own projections
            return self._pairs(images, texts, image_idx, text_idx)
        out = images.states.new_empty(len(image_idx), dtype=torch.float32)
        rest = torch.arange(len(image_idx), device=image_idx.device)
        if len(image_idx) > 1:
            order = torch.argsort(image_idx, stable=True)
            kinds, counts = torch.unique_consecutive(image_idx[order], return_counts=True)
            starts = torch.cumsum(counts, 0) - counts
            shared = counts > 1
            for image, start, count in zip(
                kinds[shared].tolist(), starts[shared].tolist(), counts[shared].tolist(), strict=True
            ):
                rows = order[start : start + count]
                out[rows] = self._one_image(images[image : image + 1], texts, text_idx[rows]).float()
            rest = order[torch.repeat_interleave(~shared, counts)]
        for s in range(0, len(rest), self.pairs_per_block):
            rows = rest[s : s + self.pairs_per_block]
            out[rows] = self._pairs(images, texts, image_idx[rows], text_idx[rows]).float()
        return out

    def _pairs(self, images: ImageCache, texts: Fragments, image_idx: Tensor, text_idx: Tensor) -> Tensor:
        """ITC maximum + ITM match logit of listed pairs, each pair with its own image projections."""
        parts = []
        for s in range(0, len(image_idx), self.pairs_per_block):
            i, t = image_idx[s : s + self.pairs_per_block], text_idx[s : s + self.pairs_per_block]
            itc = max_over_queries(images.queries[i], _every(images.queries[i]), texts.pooled[t])
            itm = self._match(images.states[i], images.mask[i], texts.features[t], texts.mask[t])
            parts.append(self.itc_weight * itc.to(itm.dtype) + itm)
        return torch.cat(parts) if parts else texts.pooled.new_zeros(0)

    def _one_image(self, image: ImageCache, texts: Fragments, text_idx: Tensor) -> Tensor:
        """Scores of one image against several captions, its keys and values projected once per layer."""
        states = image.states[0][image.mask[0]][None]  # (1, valid tokens, width)
        with fixed_projections({id(p): nn.Linear.forward(p, states) for p in self._projections}):
            parts = []
            for s in range(0, len(text_idx), self.pairs_per_block):
                t = text_idx[s : s + self.pairs_per_block]
                queries = image.queries.expand(len(t), -1, -1)
                itc = max_over_queries(queries, _every(queries), texts.pooled[t])
                itm = self._run(states.expand(len(t), -1, -1), texts.features[t], texts.mask[t])
                parts.append(self.itc_weight * itc.to(itm.dtype) + itm)
        return torch.cat(parts)

    def shortlist_scores(self, images: ImageCache, texts: Fragments) -> Tensor:
        """LAVIS's shortlist score (``sims_matrix`` of ``compute_sim_matrix``): the ITC maximum over queries."""
        return itc_matrix(images.queries, _every(images.queries), texts.pooled)

    def score_prepared(self, images: ImageCache, texts: Fragments) -> Tensor:
        n, m = len(images), len(texts)
        image_idx = torch.arange(n, device=images.device).repeat_interleave(m)
        text_idx = torch.arange(m, device=images.device).repeat(n)
        return self.score_prepared_pairs(images, texts, image_idx, text_idx).view(n, m)

    def forward(self, images: Fragments, texts: Fragments) -> Tensor:
        return self.score_prepared(self.prepare_images(images), texts)

    def score_pairs(self, images: Fragments, texts: Fragments) -> Tensor:
        if len(texts) != len(images):
            raise InputError(f"score_pairs needs as many captions as images; got {len(texts)} and {len(images)}.")
        every = torch.arange(len(images), device=images.device)
        return self.score_prepared_pairs(self.prepare_images(images), texts, every, every)

    def score_pairs_indexed(self, images: Fragments, texts: Fragments, image_idx: Tensor, text_idx: Tensor) -> Tensor:
        return self.score_prepared_pairs(self.prepare_images(images), texts, image_idx, text_idx)

    def save_assets(self, directory: Path) -> None:
        save_folder(self.blip2_config, directory)


__all__ = ["Blip2ITC", "Blip2ITM", "ImageCache", "max_over_queries"]
