"""The recipes ``sgr`` and ``saf``: SGRAF's architecture and training schedule (``python3.6`` branch).

Model values are the defaults of their ``opts.py``: img_dim 2048, word_dim 300, embed_size 1024, sim_dim 256,
one bi-GRU layer, both sides L2-normalised, sgr_step 3; and the constants in their ``model.py``: 36 region
slots, attention temperature 9, dropout 0.4. The score is the fused term alone (``dual_weight`` 0).

Training: Adam, lr 2e-4 x 0.1 every ``lr_update`` epochs, batch 128, margin 0.2, gradient clip 2, and the
hardest negative from the first epoch (their ``--max_violation`` is ``store_false``, so it is on by default,
with no warm-up). Epochs follow their README's Flickr30K commands: SGR 40 epochs with the decay at 30, SAF 30
with the decay at 20; COCO (20 epochs, decay at 10, for both) is in configs/sgr-coco.yaml / saf-coco.yaml.
"""

from __future__ import annotations

from typing import Any

from mmzoo.plugin import Recipe
from mmzoo_plugins.sgraf.zoo import PAPER


def model_config(module: str) -> dict[str, Any]:
    """The model config of ``sgr`` or ``saf`` with their opts.py defaults."""
    return {
        "visual": {"name": "sgraf-fc", "in_dim": 2048, "normalize": True},
        "text": {"name": "sgraf-gru", "word_dim": 300, "layers": 1, "bidirectional": True, "normalize": True},
        "fusion": {"name": module, "sim_dim": 256, "regions": 36, "smooth": 9.0, "dropout": 0.4},
        "loss": {"name": "triplet", "margin": 0.2, "hardest_negative": True, "reduction": "sum"},
        "alpha": 1.0,
        "dual_weight": 0.0,
        "embed_dim": 1024,
    }


def training(epochs: int, lr_update: int) -> dict[str, Any]:
    return {
        "epochs": epochs,
        "batch_size": 128,
        "lr": 2e-4,
        "lr_decay_every": lr_update,
        "lr_decay": 0.1,
        "grad_clip": 2.0,
        "warmup_epochs": 0,
    }


RECIPES = {
    "sgr": Recipe(
        model_config("sgr"),
        "SGRAF's SGR: region FC + bi-GRU, local/global similarity vectors, 3-step graph reasoning, sigmoid score",
        PAPER,
        training(40, 30),
    ),
    "saf": Recipe(
        model_config("saf"),
        "SGRAF's SAF: region FC + bi-GRU, local/global similarity vectors, attention filtration, sigmoid score",
        PAPER,
        training(30, 20),
    ),
}
