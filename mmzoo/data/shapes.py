"""Synthetic relational data: scenes of coloured shapes, their region features and captions.

A scene holds 2-4 objects, each with a colour, a shape, a size and a position, all distinct in colour
and in shape. Its 5 captions all describe one *focal pair* of objects with every attribute and their
spatial relation ("a big red circle left of a small blue square"). Each object becomes region-feature
vectors (attribute one-hots, size, position, nuisance texture and noise, mapped through a fixed random
projection and a ReLU, like detector features) and the scene is padded with background regions.

The test split pairs every scene with a *twin*: the same scene with the colours, shapes, sizes or
positions of the focal pair swapped. Caption ``k`` of the twin uses exactly the words of caption ``k``
of the original (in another order), so a bag-of-words model cannot tell them apart, while each caption
is true of its own scene only. See ``docs/shapes.md``.

Examples:
    >>> make_shapes("data/shapes", images=2000, seed=0)  # doctest: +SKIP
    >>> scenes = make_scenes("test", 3, seed=0)  # the structured scenes, e.g. to render them
    >>> scenes[0]["twin"], scenes[1]["twin"]
    (1, 0)
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmzoo._atomic import (
    atomic_write_text,
    create_npy,
    fsync_tree,
    is_storage_error,
    open_fresh,
    remove_entry,
    storage_error,
)
from mmzoo.data.layout import PRECOMP
from mmzoo.data.manifest import DataManifest, write_manifest
from mmzoo.data.twins import NO_TWIN
from mmzoo.errors import DataError, StorageError

logger = logging.getLogger(__name__)

#: colour names with the RGB a renderer should use.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
    "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star")
#: object radius as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.08, "big": 0.14}
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
NUMBERS = {2: "two", 3: "three", 4: "four"}
SWAPS = ("colour", "shape", "size", "position")
CAPTIONS_PER_IMAGE = 5
SPLITS = ("train", "dev", "test")
#: the split whose scenes come with swapped twins.
TWIN_SPLIT = "test"
#: minimal offset along the relation's axis, so that "left of" is never a matter of pixels.
RELATION_MARGIN = 0.15
_GAP = 0.02
#: attribute vector: colour one-hot, shape one-hot, background flag, size, x, y, texture.
_TEXTURE = 4
_ATTR_DIM = len(COLOURS) + len(SHAPES) + 1 + 1 + 2 + _TEXTURE
_NOISE = 0.05


def _rng(seed: int, *stream: str) -> np.random.Generator:
    """An independent, reproducible stream per (seed, purpose): splits do not depend on each other's sizes."""
    return np.random.default_rng([seed, *(zlib.crc32(s.encode()) for s in stream)])


# -- scenes ------------------------------------------------------------------------------------------
def _place(rng: np.random.Generator, objects: list[dict[str, Any]]) -> bool:
    """Give each object a non-overlapping position; False when the scene could not be packed."""
    placed: list[dict[str, Any]] = []
    for obj in objects:
        r = SIZES[obj["size"]]
        for _ in range(100):
            x, y = (round(float(v), 4) for v in rng.uniform(r + _GAP, 1 - r - _GAP, size=2))
            if all(np.hypot(x - o["x"], y - o["y"]) > r + SIZES[o["size"]] + _GAP for o in placed):
                obj["x"], obj["y"] = x, y
                placed.append(obj)
                break
        else:
            return False
    return True


def _invalid(objects: list[dict[str, Any]]) -> bool:
    """True when an object leaves the image or two objects overlap (a swap of sizes or places can cause both)."""
    for i, a in enumerate(objects):
        r = SIZES[a["size"]]
        if not (r + _GAP <= a["x"] <= 1 - r - _GAP and r + _GAP <= a["y"] <= 1 - r - _GAP):
            return True
        for b in objects[i + 1 :]:
            if np.hypot(a["x"] - b["x"], a["y"] - b["y"]) <= SIZES[a["size"]] + SIZES[b["size"]] + _GAP:
                return True
    return False


def relation(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Where ``a`` is with respect to ``b`` along the axis they differ most on (y grows downwards)."""
    dx, dy = a["x"] - b["x"], a["y"] - b["y"]
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def _random_scene(rng: np.random.Generator) -> dict[str, Any]:
    while True:
        n = int(rng.integers(2, 5))
        colours = rng.choice(len(COLOURS), n, replace=False)
        shapes = rng.choice(len(SHAPES), n, replace=False)
        names = list(COLOURS)
        objects = [
            {"colour": names[c], "shape": SHAPES[s], "size": ("small", "big")[int(rng.integers(2))]}
            for c, s in zip(colours, shapes, strict=True)
        ]
        if not _place(rng, objects):
            continue
        a, b = objects[0], objects[1]
        if max(abs(a["x"] - b["x"]), abs(a["y"] - b["y"])) < RELATION_MARGIN:
            continue
        return {"objects": objects, "focal": [0, 1]}


def _phrase(obj: dict[str, Any]) -> str:
    return f"{obj['size']} {obj['colour']} {obj['shape']}"


def captions(scene: dict[str, Any]) -> list[str]:
    """The 5 captions of a scene: the focal pair with all attributes and their relation, in 5 wordings."""
    objects = scene["objects"]
    ia, ib = scene["focal"]
    a, b = objects[ia], objects[ib]
    rel = relation(a, b)
    pa, pb = _phrase(a), _phrase(b)
    others = [o for i, o in enumerate(objects) if i not in (ia, ib)]
    with_others = " and ".join(f"a {o['colour']} {o['shape']}" for o in others)
    return [
        f"a {pa} {rel} a {pb}",
        f"a {pb} {INVERSE[rel]} a {pa}",
        f"the {pa} is {rel} the {pb}",
        f"a {pa} {rel} a {pb} and {with_others}" if others else f"just a {pa} {rel} a {pb}",
        f"{NUMBERS[len(objects)]} shapes with a {pb} {INVERSE[rel]} a {pa}",
    ]


def check_swaps(swaps: Sequence[str]) -> tuple[str, ...]:
    """The twin swaps to draw from, in :data:`SWAPS` order; a DataError for an unknown or empty choice."""
    unknown = sorted(set(swaps) - set(SWAPS))
    if unknown or not swaps:
        raise DataError(f"Twin swaps are some of {', '.join(SWAPS)}; got {', '.join(swaps) or 'none'}.")
    return tuple(s for s in SWAPS if s in swaps)


def _twin(rng: np.random.Generator, scene: dict[str, Any], swaps: Sequence[str] = SWAPS) -> dict[str, Any] | None:
    """The scene with one property of the focal pair swapped (one of ``swaps``), or None when no swap keeps it
    valid."""
    ia, ib = scene["focal"]
    options = []
    for swap in swaps:
        keys = {"colour": ("colour",), "shape": ("shape",), "size": ("size",), "position": ("x", "y")}[swap]
        objects = copy.deepcopy(scene["objects"])
        a, b = objects[ia], objects[ib]
        if all(a[k] == b[k] for k in keys):
            continue
        for k in keys:
            a[k], b[k] = b[k], a[k]
        if _invalid(objects):
            continue
        # after a position swap the pair is named the other way round, so the relation word stays the same
        focal = [ib, ia] if swap == "position" else [ia, ib]
        options.append({"objects": objects, "focal": focal, "swap": swap})
    if not options:
        return None
    return options[int(rng.integers(len(options)))]


def make_scenes(split: str, images: int, seed: int = 0, twin_swaps: Sequence[str] = SWAPS) -> list[dict[str, Any]]:
    """The structured scenes of a split, exactly as ``{split}_scenes.json`` holds them.

    Each scene: ``{"id", "objects": [{"colour", "shape", "size", "x", "y"}], "focal": [i, j],
    "twin": id or None, "swap": None or "colour"|"shape"|"size"|"position", "captions": [5 str]}``.
    ``x, y`` are object centres in [0, 1] (y grows downwards), ``SIZES`` gives radii, ``COLOURS`` RGB.
    In the test split ``images`` base scenes are each followed by their twin (2 x images scenes), whose swap is one
    of ``twin_swaps`` (``("position",)``: a relation-heavy test split, every twin a position swap).
    """
    twin_swaps = check_swaps(twin_swaps)
    if images < 1:
        raise DataError(f"A split needs at least one image; got {images}.")
    rng = _rng(seed, "scenes", split)
    scenes: list[dict[str, Any]] = []
    while len(scenes) < (2 * images if split == TWIN_SPLIT else images):
        scene = _random_scene(rng)
        scene.update(twin=None, swap=None)
        if split != TWIN_SPLIT:
            scenes.append(scene)
            continue
        twin = _twin(rng, scene, twin_swaps)
        if twin is None:
            continue
        n = len(scenes)
        scene.update(twin=n + 1, swap=twin["swap"])
        twin.update(twin=n)
        scenes.extend([scene, twin])
    for i, scene in enumerate(scenes):
        scene["id"] = i
        scene["captions"] = captions(scene)
    return [{k: s[k] for k in ("id", "objects", "focal", "twin", "swap", "captions")} for s in scenes]


def load_scenes(root: str | Path, split: str) -> list[dict[str, Any]]:
    """Read ``{split}_scenes.json`` written by :func:`make_shapes`."""
    path = PRECOMP.path(root, split, "scenes")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"Cannot read the scene file {path}: {exc}. Write it with `mmzoo make-data shapes`.") from None


# -- region features ---------------------------------------------------------------------------------
@dataclass
class RegionMaker:
    """Turns scenes into (k, D) region features through one fixed random projection (per seed)."""

    regions: int
    region_dim: int
    seed: int

    def __post_init__(self) -> None:
        if self.regions < 8:
            raise DataError(f"shapes needs at least 8 regions per image (2 per object, up to 4); got {self.regions}.")
        if self.region_dim < 8:
            raise DataError(f"region_dim must be at least 8; got {self.region_dim}.")
        rng = _rng(self.seed, "projection")
        self.projection = rng.normal(0.0, 1.0 / np.sqrt(_ATTR_DIM), size=(_ATTR_DIM, self.region_dim))
        self.bias = rng.normal(0.0, 0.1, size=self.region_dim)

    def plan(self, rng: np.random.Generator, n_objects: int) -> dict[str, np.ndarray]:
        """The scene's nuisances (region order, jitter, texture, noise, background boxes); twins share them."""
        k = self.regions
        return {
            "order": rng.permutation(k),
            "jitter": rng.uniform(-0.03, 0.03, size=(n_objects, 2)),
            "texture": rng.normal(size=(k, _TEXTURE)),
            "noise": rng.normal(0.0, _NOISE, size=(k, _ATTR_DIM)),
            "background": rng.uniform(0.0, 1.0, size=(k, 3)),
        }

    def features(self, scene: dict[str, Any], plan: dict[str, np.ndarray]) -> np.ndarray:
        """(k, D) float32: per object a full region and a weaker, jittered part region, then background."""
        n_col, n_shp = len(COLOURS), len(SHAPES)
        colour_ix = {c: i for i, c in enumerate(COLOURS)}
        attrs = np.zeros((self.regions, _ATTR_DIM))
        row = 0
        for o, obj in enumerate(scene["objects"]):
            for strength, offset in ((1.0, np.zeros(2)), (0.6, plan["jitter"][o])):
                v = attrs[row]
                v[colour_ix[obj["colour"]]] = strength
                v[n_col + SHAPES.index(obj["shape"])] = strength
                v[n_col + n_shp + 1] = SIZES[obj["size"]] * 5 * strength
                v[n_col + n_shp + 2 : n_col + n_shp + 4] = np.array([obj["x"], obj["y"]]) + offset
                row += 1
        for r in range(row, self.regions):
            bg = plan["background"][r]
            attrs[r, n_col + n_shp] = 1.0
            attrs[r, n_col + n_shp + 1] = 0.2 + 0.8 * bg[0]
            attrs[r, n_col + n_shp + 2 : n_col + n_shp + 4] = bg[1:]
        attrs[:, -_TEXTURE:] = plan["texture"]
        attrs += plan["noise"]
        out = np.maximum(attrs @ self.projection + self.bias, 0.0)
        return out[plan["order"]].astype(np.float32)


# -- writing -----------------------------------------------------------------------------------------
def _write_split(out: Path, split: str, scenes: list[dict[str, Any]], maker: RegionMaker, seed: int) -> None:
    rng = _rng(seed, "regions", split)
    create_npy(PRECOMP.path(out, split, "ims"), np.float32, (len(scenes), maker.regions, maker.region_dim))
    features = np.lib.format.open_memmap(PRECOMP.path(out, split, "ims"), mode="r+")
    plans: dict[int, dict[str, np.ndarray]] = {}
    for i, scene in enumerate(scenes):
        twin = scene["twin"]
        plan = plans.pop(twin) if twin is not None and twin in plans else maker.plan(rng, len(scene["objects"]))
        if twin is not None and twin > i:
            plans[i] = plan
        features[i] = maker.features(scene, plan)
    features.flush()
    del features
    lines = [c for scene in scenes for c in scene["captions"]]
    PRECOMP.write_captions(out, split, lines)
    atomic_write_text(PRECOMP.path(out, split, "scenes"), json.dumps(scenes, indent=1, sort_keys=True) + "\n")
    if split == TWIN_SPLIT:
        twins = np.array([-1 if s["twin"] is None else s["twin"] for s in scenes], dtype=np.int64)
        with open_fresh(PRECOMP.path(out, split, "twins")) as handle:
            np.save(handle, twins)
        types = [NO_TWIN if s["twin"] is None else s["swap"] for s in scenes]  # what each twin pair differs in
        atomic_write_text(PRECOMP.path(out, split, "twin_types"), "\n".join(types) + "\n")


#: model settings the shapes data suggests to the trainer (a setting the user gives wins): the GRU text
#: encoder (BERT-base cannot be downloaded offline and the vocabulary has a few dozen words) and sizes that train
#: on a CPU in minutes. Measured with them in docs/benchmarks.md (benchmarks/shapes_benchmark.py).
SHAPES_MODEL = {
    "text.name": "gru",
    "embed_dim": 64,
    "text.word_dim": 32,
    "visual.heads": 4,
    "visual.ffn_dim": 128,
    "fusion.heads": 4,
    "fusion.ffn_dim": 128,
    "fusion.channels": 32,
}
#: training settings it suggests: one warm-up epoch fusing every pair, then cheap hard negatives (h = 8 matched
#: "all" on shapes at a third of the time, docs/benchmarks.md).
SHAPES_TRAINING = {
    "epochs": 5,
    "batch_size": 32,
    "lr": 1e-3,
    "lr_decay_every": 4,
    "lr_decay": 0.1,
    "warmup_epochs": 1,
    "hard_negatives": 8,
}


def make_shapes(
    out_dir: str | Path,
    *,
    images: int = 2000,
    dev_images: int | None = None,
    test_images: int | None = None,
    seed: int = 0,
    regions: int = 12,
    region_dim: int = 64,
    overwrite: bool = False,
    twin_swaps: Sequence[str] = SWAPS,
) -> dict[str, Any]:
    """Write the shapes dataset (train/dev/test in the precomputed layout, scenes, twins, manifest).

    Args:
        out_dir: folder to write (created; existing shapes files are overwritten).
        images: training images.
        dev_images: dev images (default ``images // 4``, at least 10).
        test_images: test base scenes, each written with its twin (default ``images // 4``, at least 10).
        seed: everything is a function of the seed: same seed, same bytes.
        regions: regions per image ``k`` (>= 8).
        region_dim: size ``D`` of a region feature.
        overwrite: replace a dataset already in ``out_dir`` (otherwise that is a DataError: nothing is lost).
        twin_swaps: what a test twin may swap (default all four; ``("position",)`` makes every twin a relation
            twin: a relation-heavy probe).

    Returns:
        The manifest written to ``mmzoo_data.json``.

    Examples:
        >>> manifest = make_shapes("data/shapes", images=200, seed=1)  # doctest: +SKIP
        >>> manifest["splits"]["test"]["images"]  # doctest: +SKIP
        100
    """
    default = max(images // 4, 10)
    sizes = {"train": images, "dev": dev_images or default, "test": test_images or default}
    maker = RegionMaker(regions, region_dim, seed)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file, not a folder: choose another --out.")
    existing = PRECOMP.holds_dataset(out)
    if existing and not overwrite:
        raise DataError(
            f"{out} already holds a dataset ({', '.join(existing[:4])}); nothing was written. Choose another --out, "
            "or pass --overwrite to replace it (a run trained on it would then resume on other data)."
        )
    staging = out / STAGING_NAME
    try:
        out.mkdir(parents=True, exist_ok=True)
        remove_entry(staging)  # the leftover of a killed run (or a planted link): never trusted, never followed
        staging.mkdir()
        splits: dict[str, dict[str, int]] = {}
        for split in SPLITS:
            scenes = make_scenes(split, sizes[split], seed, twin_swaps)
            _write_split(staging, split, scenes, maker, seed)
            splits[split] = {"images": len(scenes), "captions": len(scenes) * CAPTIONS_PER_IMAGE}
            logger.info("wrote %s: %d images", split, len(scenes))
        manifest = _manifest(seed, regions, region_dim, splits, check_swaps(twin_swaps))
        write_manifest(staging, manifest)
        fsync_tree(staging)
        PRECOMP.replace_dataset(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, StorageError) or not is_storage_error(exc):
            raise
        raise storage_error(exc, out, "dataset folder") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest.to_json()


#: where make_shapes writes a dataset before it replaces the folder's (inside the folder).
STAGING_NAME = ".mmzoo-shapes.tmp"


def _manifest(
    seed: int, regions: int, region_dim: int, splits: dict[str, dict[str, int]], twin_swaps: Sequence[str] = SWAPS
) -> DataManifest:
    """What ``mmzoo_data.json`` says about a shapes dataset: layout, twins, vocabulary, suggested settings."""
    return DataManifest.model_validate(
        {
            "name": "shapes",
            "format": "precomp",
            "generator": "mmzoo.data.shapes",
            "region_policy": f"fixed-{regions}",
            "extractor": "mmzoo shapes generator (synthetic region features)",
            "seed": seed,
            "regions": regions,
            "region_dim": region_dim,
            "captions_per_image": CAPTIONS_PER_IMAGE,
            "splits": splits,
            "scenes": {split: PRECOMP.name(split, "scenes") for split in SPLITS},
            "twins": {TWIN_SPLIT: PRECOMP.name(TWIN_SPLIT, "twins")},
            "twin_types": {TWIN_SPLIT: PRECOMP.name(TWIN_SPLIT, "twin_types")},
            "twin_swaps": list(twin_swaps),
            "model_overrides": SHAPES_MODEL,
            "training_overrides": SHAPES_TRAINING,
            "vocabulary": {
                "colours": list(COLOURS),
                "shapes": list(SHAPES),
                "sizes": list(SIZES),
                "relations": list(INVERSE),
            },
        }
    )


__all__ = [
    "CAPTIONS_PER_IMAGE",
    "COLOURS",
    "INVERSE",
    "SHAPES",
    "SHAPES_MODEL",
    "SHAPES_TRAINING",
    "SIZES",
    "SWAPS",
    "RegionMaker",
    "captions",
    "load_scenes",
    "make_scenes",
    "make_shapes",
    "relation",
]
