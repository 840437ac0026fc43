"""The twin tables of a split: which image is each image's swapped twin, and what the two differ in.

A split with hard distractors (the shapes test split) pairs images with a *twin*: the same scene with one
property of two objects swapped. Two files say so, both optional::

    {split}_twins.npy         (N,) integers: the twin of each image, -1 for none
    {split}_twins.txt         the same as text, one integer per line (read when there is no .npy)
    {split}_twin_types.txt    one line per image: what the image and its twin differ in (``colour``, ``shape``,
                              ``size``, ``position``, any word), ``-`` for an image without a twin

The types let the binding probe report twin accuracy per type (:func:`mmzoo.evaluation.binding_by_type`): a
model may bind colours and miss positions, which one overall number hides.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mmzoo.errors import DataError

logger = logging.getLogger(__name__)

#: the line of ``{split}_twin_types.txt`` for an image without a twin.
NO_TWIN = "-"


def twin_files(root: Path, split: str) -> tuple[Path, Path, Path]:
    """(``{split}_twins.npy``, ``{split}_twins.txt``, ``{split}_twin_types.txt``) in ``root``."""
    return root / f"{split}_twins.npy", root / f"{split}_twins.txt", root / f"{split}_twin_types.txt"


def read_twins(root: Path, split: str, num_images: int) -> np.ndarray | None:
    """The split's twin table (int64, -1 for none), from the ``.npy`` file or else the ``.txt`` file; None without.

    Both files present and saying different things is a DataError: one of them is stale.
    """
    npy, txt, _ = twin_files(root, split)
    twins = _read_npy(npy, num_images) if npy.is_file() else None
    if txt.is_file():
        from_text = _read_txt(txt, num_images)
        if twins is not None and not np.array_equal(twins, from_text):
            raise DataError(f"{npy} and {txt} name different twins: delete the stale one.")
        twins = from_text if twins is None else twins
    if twins is None:
        return None
    _check(twins, npy if npy.is_file() else txt, num_images)
    return twins


def read_twin_types(root: Path, split: str, twins: np.ndarray | None) -> list[str] | None:
    """What each image and its twin differ in (``{split}_twin_types.txt``), None without the file.

    Checked against the twin table: one line per image, ``-`` exactly for the images without a twin, and the
    same type for an image and its twin.
    """
    _, _, path = twin_files(root, split)
    if not path.is_file():
        return None
    if twins is None:
        raise DataError(f"{path} gives twin types but the split has no twin table ({split}_twins.npy or .txt).")
    types = [line.strip() for line in _lines(path)]
    if len(types) != len(twins):
        raise DataError(f"{path} holds {len(types)} lines; the split has {len(twins)} images (one line each).")
    for i, (kind, twin) in enumerate(zip(types, twins.tolist(), strict=True)):
        if (kind == NO_TWIN) != (twin < 0) or not kind:
            want = f"'{NO_TWIN}' (image {i} has no twin)" if twin < 0 else f"a type (image {i}'s twin is {twin})"
            raise DataError(f"{path}, line {i + 1}: {kind!r}; expected {want}.")
        if twin >= 0 and types[twin] != kind:
            raise DataError(f"{path}: image {i} and its twin {twin} have different types ({kind!r}, {types[twin]!r}).")
    return types


def _lines(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read {path} as UTF-8 text: {exc}") from None
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _read_npy(path: Path, num_images: int) -> np.ndarray:
    try:
        twins = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"Cannot read the twin table {path}: {exc}") from None
    if twins.dtype.kind not in "iu":
        raise DataError(
            f"{path} must hold integers (image indices, -1 for none); got dtype {twins.dtype}. Save it with "
            "np.save(path, twins.astype(np.int64))."
        )
    if twins.shape != (num_images,):
        raise DataError(f"{path} must be an integer array of shape ({num_images},); got {twins.shape}.")
    return twins.astype(np.int64)


def _read_txt(path: Path, num_images: int) -> np.ndarray:
    lines = _lines(path)
    if len(lines) != num_images:
        raise DataError(f"{path} holds {len(lines)} lines; the split has {num_images} images (one twin index each).")
    try:
        return np.array([int(line.strip()) for line in lines], dtype=np.int64)
    except ValueError:
        bad = next(n for n, line in enumerate(lines, 1) if not line.strip().lstrip("-").isdigit())
        raise DataError(f"{path}, line {bad}: {lines[bad - 1]!r} is not an image index (-1 for none).") from None


def _check(twins: np.ndarray, path: Path, num_images: int) -> None:
    has = twins >= 0
    if (twins >= num_images).any() or (twins[has] == np.flatnonzero(has)).any():
        raise DataError(f"{path} names an image outside [0, {num_images}) or an image as its own twin.")
    if (twins[twins[has]] != np.flatnonzero(has)).any():
        raise DataError(f"{path} is not symmetric: the twin of an image's twin must be the image.")


__all__ = ["NO_TWIN", "read_twin_types", "read_twins", "twin_files"]
