"""The one door to data: :func:`open_split` opens a split of any dataset folder through its registered format.

The folder's manifest (``mmzoo_data.json``) names its format (``precomp`` when it names none, or when there is
no manifest); the format is looked up in ``registry.data_format``, so a plugin can add one. Training,
evaluation, search and the benchmarks all open data here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmzoo.contracts import DataFormat, Split
from mmzoo.data.manifest import read_manifest
from mmzoo.errors import DataError
from mmzoo.registry import data_format


def open_split(root: str | Path, split: str, **options: Any) -> Split:
    """The split ``split`` of the dataset folder ``root``, read by the format its manifest names.

    Options go to the format (``precomp``: ``captions_per_image``, ``max_images``).

    Examples:
        >>> train = mmzoo.data.open_split("data/shapes", "train")  # doctest: +SKIP
        >>> features, mask, caption, caption_index, image_index = train[0]  # doctest: +SKIP
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Dataset folder {root} not found.")
    manifest = read_manifest(root)
    name = manifest.format if manifest is not None else "precomp"
    opened = data_format.get(name)().open_split(root, split, manifest, **options)
    if not isinstance(opened, Split):
        raise DataError(f"The data format {name!r} returned {type(opened).__name__}, not a mmzoo.plugin.Split.")
    return opened


def split_files(root: str | Path, split: str) -> list[Path]:
    """The files of split ``split`` of the dataset folder ``root``, as the format its manifest names lists them
    (:meth:`mmzoo.plugin.DataFormat.files`); empty when the folder does not exist."""
    root = Path(root)
    if not root.is_dir():
        return []
    manifest = read_manifest(root)
    fmt: DataFormat = data_format.get(manifest.format if manifest is not None else "precomp")()
    return [Path(p) for p in fmt.files(root, split)]


__all__ = ["open_split", "split_files"]
