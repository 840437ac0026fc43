"""BLIP's image side: transformers' ``BlipVisionModel`` and ``vision_proj``, wrapped (not rewritten).

Pixels -> ViT -> every token state is a fragment (``[CLS]`` and the patches: what the matching head
cross-attends to) and ``normalize(vision_proj([CLS]))`` is the pooled ITC embedding. Images are preprocessed
by the folder's own ``BlipImageProcessor`` (384x384 bicubic, CLIP mean/std for the official weights), so the
pixels are those transformers gives; a file path is opened with PIL and handed to the same processor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmzoo.errors import InputError
from mmzoo.plugin import BuildContext, Fragments, VisualEncoder
from mmzoo_plugins.blip.hf import (
    TINY_BLIP,
    BlipSourceConfig,
    check_embed_dim,
    load_image_processor,
    load_owned,
    open_source,
    save_folder,
)


class BlipVisionConfig(BlipSourceConfig):
    """The BLIP vision tower's source (see :class:`~mmzoo_plugins.blip.hf.BlipSourceConfig`)."""


def open_image(item: Any) -> Any:
    """A PIL image from a PIL image or a file path (the processor converts it to RGB, as transformers does)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, Image.Image):
        return item
    if isinstance(item, str | Path):
        try:
            with Image.open(item) as img:
                img.load()
                return img.copy()
        except (OSError, UnidentifiedImageError) as exc:
            raise InputError(f"Cannot read image {item}: {exc}") from None
    raise InputError(f"Expected a PIL image or a file path; got {type(item).__name__}.")


class ProcessorTransform:
    """One image (PIL or path) -> (3, H, W) pixels with the BLIP image processor; picklable for data loaders."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Any) -> Tensor:
        return self.processor(images=[open_image(image)], return_tensors="pt")["pixel_values"][0]


class BlipVision(VisualEncoder):
    """Pixels -> BLIP ViT token states (fragments) and the normalised ``vision_proj`` of ``[CLS]`` (pooled)."""

    Config = BlipVisionConfig
    takes_pixels = True
    downloads = True

    @classmethod
    def test_config(cls) -> dict:
        return {"blip_config": TINY_BLIP}

    def __init__(self, config: BlipVisionConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        from transformers import BlipVisionModel

        self.blip_config, weights, files = open_source(config, context.assets, context.native)
        check_embed_dim(self.blip_config, context.embed_dim)
        vision = self.blip_config.vision_config
        self.vision_model = BlipVisionModel(vision)
        self.vision_proj = nn.Linear(vision.hidden_size, self.blip_config.image_text_hidden_size)
        self.processor = load_image_processor(files, vision.image_size)
        if weights is not None:
            load_owned(self, weights)

    @classmethod
    def describe_inputs(cls, config: Any) -> str:
        return "PIL images or image paths (the BLIP image processor resizes them), or (N, 3, H, W) pixels"

    def transform(self, train: bool = False) -> Any:
        return ProcessorTransform(self.processor)

    def preprocess(self, images: Any, train: bool = False) -> Tensor:
        """PIL images / paths (one or a list) -> (N, 3, H, W); a tensor is taken as already preprocessed."""
        if isinstance(images, Tensor):
            if images.dim() != 4 or images.shape[1] != 3 or images.shape[0] == 0 or not images.is_floating_point():
                raise InputError(f"Pixel tensors must be float (N, 3, H, W) with N > 0; got {tuple(images.shape)}.")
            return images
        items = [images] if isinstance(images, str | Path) or hasattr(images, "convert") else images
        if not isinstance(items, list | tuple) or len(items) == 0:
            raise InputError(
                "Expected PIL images, image paths or a (N, 3, H, W) tensor; got an empty or unknown input."
            )
        return self.processor(images=[open_image(i) for i in items], return_tensors="pt")["pixel_values"]

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Fragments:
        pixels = features.to(self.vision_proj.weight.dtype)
        states = self.vision_model(pixel_values=pixels).last_hidden_state
        pooled = F.normalize(self.vision_proj(states[:, 0, :]), dim=-1)
        every = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        return Fragments(states, every, pooled)

    def save_assets(self, directory: Path) -> None:
        save_folder(self.blip_config, directory, processor=self.processor)
