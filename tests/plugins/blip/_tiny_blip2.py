"""A tiny BLIP-2 retrieval folder written by transformers' own ``save_pretrained``, in the official file layout.

``config.json`` + ``model.safetensors`` (``Blip2ForImageTextRetrieval.save_pretrained``, the Q-Former with
``use_qformer_text_input``), the tokenizer files (``BertTokenizer.save_pretrained``) beside the WordPiece
``vocab.txt`` written here, and ``preprocessor_config.json`` (``BlipImageProcessor.save_pretrained``). As in the
official weights, the Q-Former's word embeddings have a row more than the vocabulary (LAVIS adds ``[DEC]``), and the
projections are 256-d, as the recipes' ``embed_dim``. 4 queries instead of 32.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.plugins.blip._tiny import VOCAB, write_vocab

N_QUERIES = 4


def tiny_config(**qformer):
    from transformers import Blip2Config

    vision = {
        "hidden_size": 24,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 48,
        "image_size": 32,
        "patch_size": 8,
    }
    text = {
        "vocab_size": len(VOCAB) + 2,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 48,
        "max_position_embeddings": 64,
        "pad_token_id": 0,
        "use_qformer_text_input": True,
        **qformer,
    }
    return Blip2Config(
        vision_config=vision, qformer_config=text, num_query_tokens=N_QUERIES, image_text_hidden_size=256
    )


def write_blip2_folder(folder: Path, seed: int = 0, **qformer) -> Path:
    """The tiny folder, every file written by transformers itself (``qformer``: Q-Former config overrides)."""
    from transformers import BertTokenizer, Blip2ForImageTextRetrieval, BlipImageProcessor

    write_vocab(folder)
    tokenizer = BertTokenizer.from_pretrained(str(folder))
    torch.manual_seed(seed)
    model = Blip2ForImageTextRetrieval(tiny_config(**qformer))
    with torch.no_grad():  # BLIP-2's init zeroes the queries (all alike) and its 0.02 spread makes every image and
        # caption score nearly alike: spread every matrix so that scores differ visibly between pairs
        model.query_tokens.normal_(0.0, 1.0)
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.3)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
