"""Shapes as pictures: render the shapes generator's scenes as PNG images with the same captions.

``render_shapes(out_dir, images=..., seed=...)`` draws the scenes of :func:`mmzoo.data.make_scenes`
(the very scenes ``make_shapes`` writes as region features, for the same ``images`` and ``seed``) and
writes them in the raw-image layout that :class:`~mmzoo.data.KarpathyImages` reads::

    OUT/dataset_shapes.json        Karpathy split file: filename, filepath (the split), split, sentences[].raw
    OUT/images/{split}/{id}.png    one picture per scene
    OUT/{split}_scenes.json        the structured scenes

so the whole pixel-to-score path (``mmzoo extract-features``, training, ``mmzoo search``) runs here.

Examples:
    >>> render_shapes("data/shapes_png", images=200, seed=0, size=128)  # doctest: +SKIP
    >>> ds = KarpathyImages("data/shapes_png/dataset_shapes.json", "data/shapes_png/images", "test")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mmzoo._atomic import atomic_write_text
from mmzoo._optional import require
from mmzoo.data.layout import PRECOMP
from mmzoo.data.shapes import COLOURS, SIZES, SPLITS, SWAPS, make_scenes
from mmzoo.errors import DataError

BACKGROUND = (245, 245, 240)
#: drawn at this many times the size, then downsampled: smooth edges without a drawing library.
SUPERSAMPLE = 4
KARPATHY_NAME = "dataset_shapes.json"


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Vertices of a shape of "radius" r centred at (cx, cy) (y grows downwards)."""
    if shape == "square":
        h = r * 0.85
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "star":
        points = []
        for i in range(10):
            radius = r if i % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + i * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    raise DataError(f"Cannot draw the shape {shape!r}.")


def render_scene(scene: dict[str, Any], size: int = 128) -> Any:
    """One scene (``{"objects": [{"colour", "shape", "size", "x", "y"}]}``) -> an RGB PIL image ``size`` x ``size``."""
    require("PIL", extra="vision", purpose="Rendering the shapes as images")
    from PIL import Image, ImageDraw

    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in scene["objects"]:
        try:
            colour = COLOURS[obj["colour"]]
            r = SIZES[obj["size"]] * big
            cx, cy = obj["x"] * big, obj["y"] * big
        except KeyError as exc:
            raise DataError(f"A scene object lacks or misnames {exc}: {obj}") from None
        if obj["shape"] == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        else:
            draw.polygon(_polygon(obj["shape"], cx, cy, r), fill=colour)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def render_shapes(
    out_dir: str | Path,
    *,
    images: int = 2000,
    dev_images: int | None = None,
    test_images: int | None = None,
    seed: int = 0,
    size: int = 128,
    progress: bool = False,
    twin_swaps: Sequence[str] = SWAPS,
) -> dict[str, int]:
    """Render the shapes scenes of every split to PNG files plus a Karpathy split file; returns images per split.

    The split sizes follow :func:`mmzoo.data.make_shapes` (dev and test default to ``images // 4``, at
    least 10; each test scene comes with its twin), so the same arguments give the same scenes.
    """
    if size < 16:
        raise DataError(f"Rendered images need at least 16 pixels a side; got {size}.")
    require("PIL", extra="vision", purpose="Rendering the shapes as images")  # before the first folder is made
    default = max(images // 4, 10)
    sizes = {"train": images, "dev": dev_images or default, "test": test_images or default}
    out = Path(out_dir)
    entries: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for split in SPLITS:
        scenes = make_scenes(split, sizes[split], seed, twin_swaps)
        folder = out / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        for scene in tqdm(scenes, desc=f"render {split}", unit="img", disable=not progress):
            name = f"{scene['id']:06d}.png"
            render_scene(scene, size).save(folder / name)
            sentences = [{"raw": c} for c in scene["captions"]]
            entries.append({"filename": name, "filepath": split, "split": split, "sentences": sentences})
        atomic_write_text(PRECOMP.path(out, split, "scenes"), json.dumps(scenes, indent=1, sort_keys=True) + "\n")
        counts[split] = len(scenes)
    document = {"dataset": "shapes", "seed": seed, "image_size": size, "images": entries}
    atomic_write_text(out / KARPATHY_NAME, json.dumps(document, indent=1) + "\n")
    return counts


__all__ = ["KARPATHY_NAME", "render_scene", "render_shapes"]
