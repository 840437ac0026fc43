"""BLIP's retrieval model as an mmzoo composition: ITC dual encoder plus the ITM head that reranks.

``S = <i0, c0> + itm_logit``: the ITC cosine (``dual_weight`` 1) plus the matching head's match logit (``alpha``
1), LAVIS's reranked score. Computed for every pair it is what LAVIS would give with ``k_test`` = all; with
``--rerank K`` (``search(rerank=K)``) the ITC cosine shortlists K candidates and only they get the ITM term, as in
LAVIS's ``compute_sim_matrix`` (k_test 256 on COCO, 128 on Flickr30K: :data:`mmzoo_plugins.blip.zoo.K_TEST`).

The loss section is mmzoo's triplet loss over S so that the recipe trains at all; BLIP's own fine-tuning
(ITC with momentum distillation + ITM with hard negatives) is not reproduced (docs/blip.md).
"""

from __future__ import annotations

from typing import Any

from mmzoo.plugin import Recipe
from mmzoo_plugins.blip.zoo import BLIP2_PAPER, PAPER

#: the official repositories the recipes default to: ViT-B/16 and ViT-L/16 BLIP fine-tuned on COCO.
BASE_REPO = "Salesforce/blip-itm-base-coco"
LARGE_REPO = "Salesforce/blip-itm-large-coco"


def blip_model(pretrained: str) -> dict[str, Any]:
    """The model config of a BLIP retrieval model read from a transformers folder or Hub id."""
    source = {"pretrained": pretrained}
    return {
        "visual": {"name": "blip-vision", **source},
        "text": {"name": "blip-text", **source},
        "fusion": {"name": "blip-itm", **source},
        "loss": {"name": "triplet", "margin": 0.2},
        "dual_weight": 1.0,
        "alpha": 1.0,
        "embed_dim": 256,
    }


#: BLIP-2's retrieval weights the BLIP-2 recipes default to: ViT-g + Q-Former fine-tuned on COCO.
BLIP2_REPO = "Salesforce/blip2-itm-vit-g-coco"


def blip2_model(pretrained: str, rerank: bool) -> dict[str, Any]:
    """BLIP-2 from a transformers ``Blip2ForImageTextRetrieval`` folder: ITC alone, or ITC + the ITM head.

    ``S = fused`` (``dual_weight`` 0): the ITC maximum over queries (``blip2-itc``), or the ITM match logit plus
    that maximum (``blip2-itm``, LAVIS's reranked score). Both blocks shortlist by the ITC maximum, as LAVIS does.
    """
    source = {"pretrained": pretrained}
    return {
        "visual": {"name": "blip2-vision", "fragments": "vision" if rerank else "queries", **source},
        "text": {"name": "blip2-text", **source},
        "fusion": {"name": "blip2-itm", **source} if rerank else {"name": "blip2-itc"},
        "loss": {"name": "triplet", "margin": 0.2},
        "dual_weight": 0.0,
        "alpha": 1.0,
        "embed_dim": 256,
    }


#: fine-tuning settings in mmzoo's trainer (not BLIP's schedule: its ITC/ITM losses are not ported).
TRAINING = {"epochs": 6, "batch_size": 32, "lr": 1e-5, "grad_clip": 2.0, "warmup_epochs": 0}

RECIPES = {
    "blip-itm-base": Recipe(
        blip_model(BASE_REPO),
        "BLIP ViT-B/16 retrieval: ITC cosine shortlists, the ITM head (cross-attention text encoder) reranks",
        PAPER,
        TRAINING,
    ),
    "blip-itm-large": Recipe(
        blip_model(LARGE_REPO),
        "BLIP ViT-L/16 retrieval: ITC cosine shortlists, the ITM head (cross-attention text encoder) reranks",
        PAPER,
        TRAINING,
    ),
    "blip2-itm-vit-g": Recipe(
        blip2_model(BLIP2_REPO, rerank=True),
        "BLIP-2 ViT-g retrieval: ITC (max over 32 Q-Former queries) plus the ITM head (queries and words in the "
        "Q-Former, cross-attending to the ViT)",
        BLIP2_PAPER,
        TRAINING,
    ),
    "blip2-itc-vit-g": Recipe(
        blip2_model(BLIP2_REPO, rerank=False),
        "BLIP-2 ViT-g ITC dual encoder: the max over 32 Q-Former query embeddings of their cosine with the caption's",
        BLIP2_PAPER,
        TRAINING,
    ),
}
