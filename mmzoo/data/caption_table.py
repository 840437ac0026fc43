"""A user's own captions: a CSV or JSON Lines file of (image, caption[, split]) rows.

The plainest way to describe one's own photos is one row per caption::

    image,caption,split
    photos/beach.jpg,a dog runs along the beach,train
    photos/beach.jpg,a brown dog at the sea,train
    photos/kitchen.jpg,a cat sleeps on a chair,test

or the same as JSON Lines (``{"image": "photos/beach.jpg", "caption": "a dog runs", "split": "train"}``, where
``caption`` may also be a list of captions). An image may have any number of captions (one is the common case);
its rows need not be adjacent. ``split`` is optional: without it every image is in ``train``. Image paths are
relative to an image root (or absolute). ``.tsv`` files are tab-separated, other text files comma-separated.

Example:
    >>> table = read_caption_rows("captions.csv")  # doctest: +SKIP
    >>> table.splits()  # doctest: +SKIP
    ['train', 'val', 'test']
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from mmzoo.errors import DataError

#: file suffixes read as caption tables (everything else goes to the Karpathy reader).
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")
#: the split of every image when the file has no split column.
DEFAULT_SPLIT = "train"
IMAGE_COLUMN, CAPTION_COLUMN, SPLIT_COLUMN = "image", "caption", "split"


@dataclass
class TableImage:
    """One image of a caption table: its path as written, its captions in file order, its split."""

    image: str
    split: str
    captions: list[str] = field(default_factory=list)
    line: int = 0


@dataclass
class CaptionRows:
    """The images of a caption table in first-appearance order."""

    path: Path
    images: list[TableImage]

    def splits(self) -> list[str]:
        """The split names the file uses, in first-appearance order."""
        return list(dict.fromkeys(image.split for image in self.images))

    def of_split(self, split: str) -> list[TableImage]:
        return [image for image in self.images if image.split == split]


def is_caption_table(path: str | Path) -> bool:
    return Path(path).suffix.lower() in TABLE_SUFFIXES


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def read_caption_rows(path: str | Path) -> CaptionRows:
    """Read and check a CSV / TSV / JSON Lines caption table (a :class:`DataError` names the line at fault)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read the caption file {path}: {exc}") from None
    rows = _json_rows(path, text) if path.suffix.lower() in (".jsonl", ".ndjson") else _csv_rows(path, text)
    images: dict[str, TableImage] = {}
    for line, image, captions, split in rows:
        image, split = image.strip(), (split or DEFAULT_SPLIT).strip()
        if not image:
            raise DataError(f"{path}, line {line}: the image is empty.")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", split):
            raise DataError(f"{path}, line {line}: split {split!r} is not a plain word (train, val, test, ...).")
        cleaned = [_clean(c) for c in captions]
        if not all(cleaned):
            raise DataError(f"{path}, line {line}: the caption of {image} is empty.")
        entry = images.setdefault(image, TableImage(image, split, line=line))
        if entry.split != split:
            raise DataError(
                f"{path}, line {line}: {image} is in split {split!r} here but in {entry.split!r} on line "
                f"{entry.line}; an image belongs to one split."
            )
        entry.captions.extend(cleaned)
    if not images:
        raise DataError(f"{path} holds no caption rows.")
    return CaptionRows(path, list(images.values()))


def _csv_rows(path: Path, text: str) -> list[tuple[int, str, list[str], str | None]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    if IMAGE_COLUMN not in columns or CAPTION_COLUMN not in columns:
        raise DataError(
            f"{path}: the first line must name the columns image,caption[,split]; it names {columns or 'nothing'}."
        )
    reader.fieldnames = columns
    rows = []
    for row in reader:
        number = reader.line_num
        if None in row:  # more cells than columns: an unquoted comma in a caption
            raise DataError(f'{path}, line {number}: more cells than columns; quote a caption holding a comma ("...").')
        rows.append((number, row[IMAGE_COLUMN] or "", [row[CAPTION_COLUMN] or ""], row.get(SPLIT_COLUMN) or None))
    return rows


def _json_rows(path: Path, text: str) -> list[tuple[int, str, list[str], str | None]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}, line {number} is not JSON: {exc}") from None
        caption = row.get(CAPTION_COLUMN, row.get("captions")) if isinstance(row, dict) else None
        captions = [caption] if isinstance(caption, str) else caption
        image, split = (row.get(IMAGE_COLUMN), row.get(SPLIT_COLUMN)) if isinstance(row, dict) else (None, None)
        if (
            not isinstance(image, str)
            or not isinstance(captions, list)
            or not captions
            or not all(isinstance(c, str) for c in captions)
            or not (split is None or isinstance(split, str))
        ):
            raise DataError(
                f'{path}, line {number}: need {{"image": "path", "caption": "text" (or a list), "split": "train"}}.'
            )
        rows.append((number, image, captions, split))
    return rows


__all__ = [
    "DEFAULT_SPLIT",
    "TABLE_SUFFIXES",
    "CaptionRows",
    "TableImage",
    "is_caption_table",
    "read_caption_rows",
]
