"""Datasets: raw images in the Karpathy split format, and the precomputed-feature extractor."""

from __future__ import annotations

from mmzoo.data.images import ImageFolder, ImageRecord, KarpathyImages, collate_images, read_karpathy

__all__ = ["ImageFolder", "ImageRecord", "KarpathyImages", "collate_images", "read_karpathy"]
