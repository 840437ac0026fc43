"""BLIP's image-text matching head as a fusion block: the text encoder with cross-attention, then ``itm_head``.

The fused score of a pair is the ITM logit of the *match* class (``itm_head(...)[:, 1]``, no softmax), as LAVIS's
``compute_sim_matrix`` reranks with it; the model's score ``S = <i0, c0> + fused`` (``dual_weight`` 1, ``alpha``
1) is then LAVIS's ``score + topk_sim`` for every shortlisted pair. The vision transformer never runs here: the
image fragments *are* its token states, computed once per image by ``blip-vision``, and the caption fragments
are the ITM input embeddings computed once per caption by ``blip-text`` (``[ENC]`` first), so reranking K
captions of an image costs K passes of the text encoder and no ViT pass, where transformers'
``BlipForImageTextRetrieval.forward`` re-runs the ViT for every pair (benchmarks/hf_families.py measures both).
The pairs of one image also share its cross-attention keys and values (:class:`ImageProjection`). The text
encoder's self-attention and feed-forward layers are ``blip-text``'s own modules when both are in one model
(``BuildContext.share``): the block adds only the cross-attention layers and ``itm_head``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import torch
from pydantic import Field
from torch import Tensor, nn

from mmzoo.errors import InputError
from mmzoo.plugin import BuildContext, Fragments, FusionBlock
from mmzoo_plugins.blip.hf import (
    TINY_BLIP,
    BlipSourceConfig,
    load_owned,
    open_source,
    save_folder,
    share_parts,
    source_key,
)
from mmzoo_plugins.blip.text import shared_text_layers

#: while one image's pairs are scored: id(projection) -> its output on that image's tokens, computed once.
_FIXED: ContextVar[dict[int, Tensor] | None] = ContextVar("blip_itm_fixed_projections", default=None)


class ImageProjection(nn.Linear):
    """A cross-attention key or value projection (transformers' own ``nn.Linear``, same weights and names) whose
    output, while one image's pairs are scored, is the image's projection computed once and shared by every pair.

    Per pair the 12 cross-attention layers project the image's 577 tokens to keys and values: about 16 GFLOPs
    for ViT-B, more than the rest of the text encoder's pass. They depend on the image only, so an image's
    pairs share them (exact: the same product on the same rows). Outside that scope it is a plain Linear.
    """

    def forward(self, x: Tensor) -> Tensor:
        fixed = _FIXED.get()
        out = fixed.get(id(self)) if fixed is not None else None
        if out is None:
            return super().forward(x)
        return out.expand(x.shape[0], *out.shape[1:])


@contextmanager
def fixed_projections(outputs: dict[int, Tensor]) -> Iterator[None]:
    """While inside, each :class:`ImageProjection` whose id is in ``outputs`` returns its entry (one image's
    projection, expanded to the batch) instead of projecting its input again."""
    token = _FIXED.set(outputs)
    try:
        yield
    finally:
        _FIXED.reset(token)


class BlipITMConfig(BlipSourceConfig):
    pairs_per_block: int = Field(
        64, gt=0, description="Pairs one text-encoder pass holds (each carries an image's 577 x 768 token states)."
    )


class BlipITM(FusionBlock):
    """ITM logit (match class) of image token states x caption ITM embeddings, pair by pair in batches."""

    Config = BlipITMConfig
    downloads = True

    @classmethod
    def test_config(cls) -> dict:
        return {"blip_config": TINY_BLIP, "pairs_per_block": 4}

    def __init__(self, config: BlipITMConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        from transformers import BlipTextModel

        self.blip_config, weights, _ = open_source(config, context.assets, context.native)
        text = copy.deepcopy(self.blip_config.text_config)
        text.is_decoder = True  # the cross-attention layers (transformers' default for BLIP's text config)
        self.text_encoder = BlipTextModel(text, add_pooling_layer=False)
        # the input embeddings are the caption fragments (blip-text computes them once per caption)
        self.text_encoder.embeddings = None
        # the self-attention and feed-forward layers are blip-text's when both are in one model (one text encoder)
        share_parts(context, source_key("blip", self.blip_config, weights), self, shared_text_layers(text))
        self.itm_head = nn.Linear(text.hidden_size, 2)
        self._projections: list[nn.Linear] = []
        for layer in self.text_encoder.encoder.layer:
            for linear in (layer.crossattention.self.key, layer.crossattention.self.value):
                linear.__class__ = ImageProjection  # same module, same tensors; see ImageProjection
                self._projections.append(linear)
        self.pairs_per_block = int(config.pairs_per_block)
        if weights is not None:
            load_owned(self, weights)

    def _match_logits(self, images: Fragments, texts: Fragments) -> Tensor:
        """ITM match logits (P,) of aligned pairs: caption embeddings attend to the image's token states.

        transformers 5's BLIP text layer drops ``encoder_attention_mask`` on its way to the cross-attention
        (``BlipTextLayer`` passes it as ``attention_mask``, which the cross branch then replaces by the missing
        ``encoder_attention_mask``), so padded image fragments would be attended to. BLIP's own images are never
        padded (577 tokens each); padded ones (another encoder's fragments, a ``Fragments.cat``) are scored per
        number of valid fragments with the padding cut off, which is exact.
        """
        if bool(images.mask.all()):
            return self._run(images.features, texts)
        valid = images.mask.sum(1)
        # the valid fragments first, in their order (stable), then cut per length
        order = torch.argsort((~images.mask).to(torch.int8), dim=1, stable=True)
        packed = images.features.gather(1, order[..., None].expand_as(images.features))
        out = images.features.new_empty(len(images))
        for length in valid.unique().tolist():
            rows = (valid == length).nonzero().flatten()
            out[rows] = self._run(packed[rows, :length], texts[rows]).to(out.dtype)
        return out

    def _run(self, image_states: Tensor, texts: Fragments) -> Tensor:
        dtype = self.itm_head.weight.dtype
        states = self.text_encoder(
            encoder_embeds=texts.features.to(dtype),
            attention_mask=texts.mask.long(),
            encoder_hidden_states=image_states.to(dtype),
            encoder_attention_mask=torch.ones(image_states.shape[:2], dtype=torch.long, device=image_states.device),
        ).last_hidden_state
        return self.itm_head(states[:, 0, :])[:, 1]

    def _listed(self, images: Fragments, texts: Fragments, image_idx: Tensor, text_idx: Tensor) -> Tensor:
        """Scores (P,) of listed pairs: an image's pairs share its key / value projections (no gradient needed),
        the other pairs go in blocks of ``pairs_per_block``."""
        if len(image_idx) != len(text_idx):
            raise InputError(
                f"Listed pairs need as many image as caption indices; got {len(image_idx)}, {len(text_idx)}."
            )
        out = images.features.new_empty(len(image_idx))
        rest = torch.arange(len(image_idx), device=image_idx.device)
        if not torch.is_grad_enabled() and len(image_idx) > 1:
            order = torch.argsort(image_idx, stable=True)
            kinds, counts = torch.unique_consecutive(image_idx[order], return_counts=True)
            starts = torch.cumsum(counts, 0) - counts
            shared = counts > 1
            for image, start, count in zip(
                kinds[shared].tolist(), starts[shared].tolist(), counts[shared].tolist(), strict=True
            ):
                rows = order[start : start + count]
                out[rows] = self._one_image(images[image : image + 1], texts[text_idx[rows]]).to(out.dtype)
            rest = order[torch.repeat_interleave(~shared, counts)]
        step = self.pairs_per_block
        for s in range(0, len(rest), step):
            rows = rest[s : s + step]
            out[rows] = self._match_logits(images[image_idx[rows]], texts[text_idx[rows]]).to(out.dtype)
        return out

    def _one_image(self, image: Fragments, texts: Fragments) -> Tensor:
        """Match logits of one image against several captions, its key / value projections computed once."""
        states = image.features[image.mask][None].to(self.itm_head.weight.dtype)  # (1, valid tokens, width)
        fixed = {id(p): nn.Linear.forward(p, states) for p in self._projections}
        token = _FIXED.set(fixed)
        try:
            step = self.pairs_per_block
            parts = [
                self._run(states.expand(len(texts[s : s + step]), -1, -1), texts[s : s + step])
                for s in range(0, len(texts), step)
            ]
        finally:
            _FIXED.reset(token)
        return torch.cat(parts)

    def forward(self, images: Fragments, texts: Fragments) -> Tensor:
        n, m = len(images), len(texts)
        image_idx = torch.arange(n, device=images.device).repeat_interleave(m)
        text_idx = torch.arange(m, device=images.device).repeat(n)
        return self._listed(images, texts, image_idx, text_idx).view(n, m)

    def score_pairs(self, images: Fragments, texts: Fragments) -> Tensor:
        if len(texts) != len(images):
            raise InputError(f"score_pairs needs as many captions as images; got {len(texts)} and {len(images)}.")
        every = torch.arange(len(images), device=images.device)
        return self._listed(images, texts, every, every)

    def score_prepared_pairs(self, images: Fragments, texts: Fragments, image_idx: Tensor, text_idx: Tensor) -> Tensor:
        return self._listed(images, texts, image_idx, text_idx)

    def score_pairs_indexed(self, images: Fragments, texts: Fragments, image_idx: Tensor, text_idx: Tensor) -> Tensor:
        return self._listed(images, texts, image_idx, text_idx)

    def save_assets(self, directory: Path) -> None:
        save_folder(self.blip_config, directory)
