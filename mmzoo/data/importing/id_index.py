"""Id indexes: which row of a big feature array belongs to which image.

hengyuan-hu/bottom-up-attention-vqa's ``tools/detection_features_converter.py`` writes ``train36.hdf5``
(``image_features`` (N, 36, 2048), ``image_bb`` (N, 36, 4)) and, beside it, ``train36_imgid2idx.pkl``: a
pickled ``{image_id: row}`` dict. Other tools write the ids as a JSON list or dict, a text file (one id per
line, in row order), an ``.npy`` array, or a dataset inside the HDF5 file.

A pickle is read with an unpickler that refuses every class and function: a dict or list of numbers and
strings needs none, and anything that does (code, objects) is rejected before it can run.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmzoo.errors import DataError


class _PlainDataUnpickler(pickle.Unpickler):
    """Loads dicts, lists, numbers and strings; any reference to a class or function is an error."""

    def find_class(self, module: str, name: str) -> Any:
        raise DataError(
            f"{self.source}: this pickle refers to {module}.{name}; an id index may hold only a dict or list of "
            "numbers and strings, so it is not loaded. Save it as JSON: json.dump({str(k): v ...}, f)."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.source}: this pickle uses persistent ids; not an id index.")


def _load_pickle(path: Path) -> Any:
    with open(path, "rb") as handle:
        unpickler = _PlainDataUnpickler(handle, encoding="latin1")  # Python-2 cPickle files
        unpickler.source = path  # type: ignore[attr-defined]
        try:
            return unpickler.load()
        except DataError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
            raise DataError(f"Cannot read the id index {path} as a pickle: {exc}") from None


def _id_text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def index_from_object(data: Any, source: str) -> dict[str, int]:
    """``{image id: row}`` from a dict (id -> row) or a sequence (row -> id)."""
    out: dict[str, int] = {}
    if isinstance(data, Mapping):
        items = data.items()
    elif isinstance(data, Sequence | np.ndarray) and not isinstance(data, str | bytes):
        items = ((value, row) for row, value in enumerate(data))
    else:
        raise DataError(
            f"{source}: an id index must be a dict {{id: row}} or a list of ids; got {type(data).__name__}."
        )
    rows: dict[int, str] = {}
    for key, row in items:
        key = _id_text(key)
        try:
            row = int(row)
        except (TypeError, ValueError):
            raise DataError(f"{source}: image {key} maps to {row!r}, not a row number.") from None
        if key in out:
            raise DataError(f"{source}: image id {key} appears twice.")
        if row in rows:
            raise DataError(f"{source}: images {rows[row]} and {key} both claim row {row}.")
        out[key] = row
        rows[row] = key
    if not out:
        raise DataError(f"{source}: the id index is empty.")
    return out


def read_id_index(path: str | Path) -> dict[str, int]:
    """Read an id index file: ``.json``, ``.pkl`` / ``.pickle``, ``.npy``, or text with one id per line.

    Examples:
        >>> read_id_index("data/train36_imgid2idx.pkl")["9"]  # doctest: +SKIP
        0
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Id index {path} not found.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            data: Any = json.loads(path.read_text(encoding="utf-8"))
        elif suffix in (".pkl", ".pickle"):
            data = _load_pickle(path)
        elif suffix == ".npy":
            data = np.load(path, allow_pickle=False)
            if data.ndim != 1:
                raise DataError(f"{path}: an id array must be 1-D; got shape {data.shape}.")
        else:
            data = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except DataError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read the id index {path}: {exc}") from None
    return index_from_object(data, str(path))


__all__ = ["index_from_object", "read_id_index"]
