"""SCAN's recipes ``scan-t2i`` and ``scan-i2t`` (their README's Flickr30K settings) and training schedules.

SCAN's score is the cross-attention term alone (``dual_weight: 0``); the encoders' pooled vectors only shortlist.
"""

from __future__ import annotations

from mmzoo.plugin import Recipe
from mmzoo_plugins.scan.zoo import PAPER

#: train.py's defaults, the Flickr30K schedule: Adam 2e-4, x0.1 at epoch 15, 30 epochs, batch 128, clip 2;
#: hardest negatives from the first epoch (--max_violation in every README row).
TRAINING = {
    "epochs": 30,
    "batch_size": 128,
    "lr": 2e-4,
    "lr_decay_every": 15,
    "lr_decay": 0.1,
    "grad_clip": 2.0,
    "warmup_epochs": 0,
}
#: the README's MS-COCO rows: --num_epochs=20 --lr_update=10 --learning_rate=.0005 (configs/scan-*-coco.yaml).
TRAINING_COCO = {**TRAINING, "epochs": 20, "lr": 5e-4, "lr_decay_every": 10}


def scan_config(cross_attn: str, agg_func: str, lambda_softmax: float, lambda_lse: float = 6.0) -> dict:
    """The model config of a SCAN run: bi-GRU, clipped_l2norm, 300-d words, 1024-d joint space."""
    return {
        "visual": {"name": "scan-regions", "in_dim": 2048, "precomp_enc_type": "basic", "no_imgnorm": False},
        "text": {"name": "scan-gru", "word_dim": 300, "layers": 1, "bidirectional": True, "no_txtnorm": False},
        "fusion": {
            "name": f"scan-{cross_attn}",
            "raw_feature_norm": "clipped_l2norm",
            "agg_func": agg_func,
            "lambda_softmax": lambda_softmax,
            "lambda_lse": lambda_lse,
        },
        "loss": {"name": "triplet", "margin": 0.2, "hardest_negative": True, "reduction": "sum"},
        "dual_weight": 0.0,
        "alpha": 1.0,
        "embed_dim": 1024,
    }


#: README, Flickr30K: "SCAN t-i LSE  --agg_func=LogSumExp --cross_attn=t2i --lambda_lse=6 --lambda_softmax=9".
SCAN_T2I = scan_config("t2i", "LogSumExp", lambda_softmax=9.0, lambda_lse=6.0)
#: README, Flickr30K: "SCAN i-t AVG  --agg_func=Mean --cross_attn=i2t --lambda_softmax=4" (lambda_lse unused).
SCAN_I2T = scan_config("i2t", "Mean", lambda_softmax=4.0)

RECIPES = {
    "scan-t2i": Recipe(
        SCAN_T2I,
        "SCAN t-i LSE: words attend to regions (bi-GRU, clipped_l2norm, λ1=9, LogSumExp λ2=6); fused score only",
        PAPER,
        TRAINING,
    ),
    "scan-i2t": Recipe(
        SCAN_I2T,
        "SCAN i-t AVG: regions attend to words (bi-GRU, clipped_l2norm, λ1=4, mean pooling); fused score only",
        PAPER,
        TRAINING,
    ),
}
