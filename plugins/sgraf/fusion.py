"""SGRAF's fusion blocks ``sgr`` and ``saf`` (their ``EncoderSimilarity`` with ``module_name`` SGR or SAF).

Both build the similarity nodes ``[global; local_1 .. local_n]`` of every image-caption pair
(:mod:`mmzoo_plugins.sgraf.alignment`) and end in ``sigmoid(FC_eval(vector))``:

* ``sgr``: ``steps`` graph-reasoning steps over the nodes (3 by default); the vector is node 0 afterwards.
  Only node 0 of the last step is read, so the last step updates node 0 alone (same numbers, a third of its
  work);
* ``saf``: attention filtration, the gate-weighted sum of the nodes.

The score is SGRAF's whole similarity: recipes set ``dual_weight`` 0 so that ``S`` is this term alone.

``forward`` is the training path and the reference: the global vectors of the images and captions of the
call, then blocks of captions against all images (at most ``pairs_per_block`` pairs at once). In training
mode BatchNorm statistics are those of their loop: ``VisualSA``'s over the images of the call, SAF's per
caption over all images of the call. The engine protocol (``prepare_images`` / ``prepare_texts`` /
``score_prepared`` / ``score_prepared_pairs``) caches the fragments and global vectors once and scores a
block of images x captions with batched products; it always computes eval-mode scores.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from pydantic import Field
from torch import Tensor, nn

from mmzoo.errors import InputError
from mmzoo.plugin import BuildContext, ComponentConfig, Fragments, FusionBlock
from mmzoo_plugins.sgraf.alignment import similarity_nodes
from mmzoo_plugins.sgraf.modules import (
    AttentionFiltration,
    GraphReasoning,
    RegionAttentionPool,
    WordAttentionPool,
    xavier_,
)


class SGRAFConfig(ComponentConfig):
    sim_dim: int = Field(256, gt=0, description="Size s of a similarity vector (their sim_dim: 256).")
    regions: int = Field(
        36,
        gt=0,
        description="Region slots of the visual self-attention's BatchNorm (theirs: 36); images may have fewer.",
    )
    smooth: float = Field(9.0, gt=0.0, description="Temperature of the word-to-region attention softmax (theirs: 9).")
    dropout: float = Field(0.4, ge=0.0, lt=1.0, description="Dropout in the image and caption self-attention (0.4).")
    pairs_per_block: int = Field(
        1024, gt=0, description="Image-caption pairs held at once, in training and in the scoring engine."
    )


class SGRConfig(SGRAFConfig):
    steps: int = Field(3, ge=1, description="Graph reasoning steps (their sgr_step: 3).")


class SAFConfig(SGRAFConfig):
    pass


@dataclass
class SideCache:
    """Prepared images or captions: fragments zeroed at padding, their mask, the global vectors."""

    features: Tensor
    mask: Tensor
    glo: Tensor

    def __len__(self) -> int:
        return self.features.shape[0]

    def __getitem__(self, index: slice | Tensor) -> SideCache:
        return SideCache(*(getattr(self, f.name)[index] for f in fields(self)))

    @property
    def device(self) -> torch.device:
        return self.features.device

    def trimmed(self) -> SideCache:
        """Drop trailing fragment positions that are padding in every row."""
        used = self.mask.any(0).nonzero()
        length = int(used.max()) + 1 if len(used) else 1
        if length == self.mask.shape[1]:
            return self
        return SideCache(self.features[:, :length], self.mask[:, :length], self.glo)


class SGRAFFusion(FusionBlock):
    """Shared body of ``sgr`` and ``saf``: self-attention pooling, similarity nodes, the final score."""

    Config = SGRAFConfig

    def __init__(self, config: SGRAFConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        d, s = context.embed_dim, config.sim_dim
        self.v_global_w = RegionAttentionPool(d, config.dropout, config.regions)
        self.t_global_w = WordAttentionPool(d, config.dropout)
        self.sim_tranloc_w = nn.Linear(d, s)
        self.sim_tranglo_w = nn.Linear(d, s)
        self.sim_eval_w = nn.Linear(s, 1)
        for fc in (self.sim_tranloc_w, self.sim_tranglo_w, self.sim_eval_w):
            xavier_(fc)

    @classmethod
    def test_config(cls) -> dict:
        return {"sim_dim": 16, "regions": 12, "pairs_per_block": 16}

    @property
    def pairs_per_block(self) -> int:
        return self.config.pairs_per_block

    def reduce(self, nodes: Tensor, node_mask: Tensor, train: bool, fast: bool) -> Tensor:
        """Nodes (n_img, n_cap, n, s) and mask -> one similarity vector per pair (n_img, n_cap, s).

        ``fast``: the engine's arithmetic (same numbers to float tolerance, no autograd, eval mode).
        """
        raise NotImplementedError

    # -- the two sides ------------------------------------------------------------------------------
    def image_side(self, images: Fragments, train: bool) -> SideCache:
        """Regions (at most ``regions`` slots, zero at padding) and the self-attention global image."""
        feats, mask = images.features, images.mask
        slots = self.config.regions
        if feats.shape[1] > slots:
            if bool(mask[:, slots:].any()):
                raise InputError(
                    f"SGRAF's visual self-attention normalises {slots} region slots (fusion.regions); these images "
                    f"have up to {int(mask.sum(1).max())} valid regions. Keep at most {slots} regions per image, "
                    "or train a model with a larger fusion.regions."
                )
            feats, mask = feats[:, :slots], mask[:, :slots]
        feats = feats.masked_fill(~mask.unsqueeze(-1), 0.0)
        return SideCache(feats, mask, self.v_global_w.pool(feats, mask, train))

    def text_side(self, texts: Fragments, train: bool) -> SideCache:
        """Words (zero at padding) and the self-attention global caption."""
        feats = texts.features.masked_fill(~texts.mask.unsqueeze(-1), 0.0)
        return SideCache(feats, texts.mask, self.t_global_w.pool(feats, texts.mask, train))

    # -- scores -------------------------------------------------------------------------------------
    def _score(self, images: SideCache, texts: SideCache, train: bool, dense: bool, fast: bool = False) -> Tensor:
        nodes, node_mask = similarity_nodes(
            self.sim_tranloc_w,
            self.sim_tranglo_w,
            images.features,
            images.mask,
            images.glo,
            texts.features,
            texts.mask,
            texts.glo,
            self.config.smooth,
            dense,
            fast,
        )
        return torch.sigmoid(self.sim_eval_w(self.reduce(nodes, node_mask, train, fast))).squeeze(-1)

    def forward(self, images: Fragments, texts: Fragments) -> Tensor:
        img = self.image_side(images, self.training)
        txt = self.text_side(texts, self.training)
        cols = max(1, self.config.pairs_per_block // max(len(img), 1))
        blocks = [
            self._score(img, txt[j : j + cols].trimmed(), self.training, dense=True) for j in range(0, len(txt), cols)
        ]
        return torch.cat(blocks, dim=1)

    def score_pairs(self, images: Fragments, texts: Fragments) -> Tensor:
        """Aligned pairs -> (N,). In training, SAF's BatchNorm statistics cover each chunk of pairs as one batch."""
        if len(images) != len(texts):
            raise InputError(f"score_pairs needs as many captions as images; got {len(texts)} and {len(images)}.")
        img = self.image_side(images, self.training)
        txt = self.text_side(texts, self.training)
        step = self.config.pairs_per_block
        parts = [
            self._score(img[s : s + step].trimmed(), txt[s : s + step].trimmed(), self.training, dense=False)
            for s in range(0, len(img), step)
        ]
        return torch.cat(parts).squeeze(-1)

    # -- the scoring-engine protocol (eval-mode scores) ----------------------------------------------
    def prepare_images(self, images: Fragments) -> SideCache:
        return self.image_side(images, train=False)

    def prepare_texts(self, texts: Fragments) -> SideCache:
        return self.text_side(texts, train=False)

    def score_prepared(self, images: SideCache, texts: SideCache) -> Tensor:
        """(n_images, n_texts) scores of one block with batched products (no per-caption loop)."""
        return self._score(images.trimmed(), texts.trimmed(), train=False, dense=True, fast=True)

    def score_prepared_pairs(self, images: SideCache, texts: SideCache, image_idx: Tensor, text_idx: Tensor) -> Tensor:
        """(P,) scores of the listed pairs (reranking)."""
        img, txt = images[image_idx].trimmed(), texts[text_idx].trimmed()
        return self._score(img, txt, train=False, dense=False, fast=True).squeeze(-1)


class SGRFusion(SGRAFFusion):
    """``sgr``: similarity graph reasoning; the score reads the global node after ``steps`` steps."""

    Config = SGRConfig

    def __init__(self, config: SGRConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        self.SGR_module = nn.ModuleList(GraphReasoning(config.sim_dim) for _ in range(config.steps))

    def reduce(self, nodes: Tensor, node_mask: Tensor, train: bool, fast: bool) -> Tensor:
        lead, (n, s) = nodes.shape[:-2], nodes.shape[-2:]
        flat = nodes.reshape(-1, n, s)
        mask = node_mask.expand(*lead, n).reshape(-1, n)
        for module in self.SGR_module[:-1]:
            flat = module.step_fast(flat, mask) if fast else module.step(flat, mask)
        last = self.SGR_module[-1]
        return (last.first_node_fast(flat, mask) if fast else last.first_node(flat, mask)).view(*lead, s)


class SAFFusion(SGRAFFusion):
    """``saf``: similarity attention filtration; the score reads the gate-weighted sum of the nodes."""

    Config = SAFConfig

    def __init__(self, config: SAFConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        self.SAF_module = AttentionFiltration(config.sim_dim)

    def reduce(self, nodes: Tensor, node_mask: Tensor, train: bool, fast: bool) -> Tensor:
        return self.SAF_module.filter(nodes, node_mask, train)
