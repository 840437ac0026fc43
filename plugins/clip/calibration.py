"""Calibrated scores: the checkpoint's own logit scale (and SigLIP's bias) over mmzoo's cosine.

mmzoo ranks by the cosine of the pooled embeddings; the checkpoints were trained on ``cosine * exp(logit_scale)``
(CLIP, softmax over the batch) or ``cosine * exp(logit_scale) + logit_bias`` (SigLIP, a sigmoid per pair). Both
constants travel with the text tower (buffers ``logit_scale`` / ``logit_bias``), so a loaded model gives the
probabilities transformers' ``logits_per_image`` gives.

Example:
    >>> from mmzoo_plugins.clip.calibration import probabilities
    >>> model = mmzoo.from_pretrained("siglip-base-patch16-224")  # doctest: +SKIP
    >>> probabilities(model, model.encode_images(["cat.jpg"]), model.encode_texts(["a photo of a cat"]))  # doctest: +SKIP
    tensor([[0.93]])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mmzoo.errors import InputError


def _text_tower(model: Any) -> Any:
    text = getattr(model, "text", None)
    if text is None or not hasattr(text, "logit_scale"):
        raise InputError("Calibrated scores need a model of the clip family (a CLIP or SigLIP text tower).")
    return text


def logits(model: Any, images: Any, texts: Any) -> Tensor:
    """(N_images, N_texts) logits as the checkpoint computes them: ``cos * exp(logit_scale) (+ logit_bias)``."""
    text = _text_tower(model)
    cosine = model.similarity(images, texts).float()
    scaled = cosine * text.logit_scale.float().exp().to(cosine.device)
    bias = getattr(text, "logit_bias", None)
    return scaled + bias.float().to(cosine.device) if bias is not None else scaled


def probabilities(model: Any, images: Any, texts: Any) -> Tensor:
    """CLIP: for each image a softmax over the given captions (rows sum to 1); SigLIP: an independent sigmoid
    probability for every pair (does this caption match this image?)."""
    text = _text_tower(model)
    values = logits(model, images, texts)
    return torch.sigmoid(values) if text.family in ("siglip", "siglip2") else values.softmax(dim=-1)


__all__ = ["logits", "probabilities"]
