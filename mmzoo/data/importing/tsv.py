"""Bottom-up-attention TSV files, as ``tools/generate_tsv.py`` (peteanderson80/bottom-up-attention) writes them.

Each line is one image, tab-separated, no header row, in the order of its ``FIELDNAMES``::

    image_id  image_w  image_h  num_boxes  boxes  features

where ``boxes`` and ``features`` are base64 of the raw float32 bytes of the ``(num_boxes, 4)`` and
``(num_boxes, D)`` arrays (D = 2048 for the ResNet-101 Visual Genome detector). The released COCO files
are ``trainval_36`` (36 boxes per image) and ``trainval`` (adaptive: 10 to 100 boxes), split into shards
(``karpathy_train_resnet101_faster_rcnn_genome.tsv.0``, ``.1``, one per GPU). LXMERT's files
(``src/utils.py``, airsplay/lxmert) have ten columns::

    img_id  img_h  img_w  objects_id  objects_conf  attrs_id  attrs_conf  num_boxes  boxes  features

and both layouts are recognised by their column count. Python 3 ports of ``generate_tsv.py`` that hand
``b64encode``'s bytes to the csv writer produce fields written as ``b'...'``; those are read too.

Lines are split on tabs directly: base64 holds no tab, quote or newline, so the csv module (and its
field-size limit, 131,072 characters by default, which one 36 x 2048 row exceeds three times) is only
used for a line that holds a quote character, with the limit lifted for that call.
"""

from __future__ import annotations

import binascii
import csv
import io
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmzoo.data.importing.records import Entry, FeatureSource, file_stamp
from mmzoo.errors import DataError

#: generate_tsv.py's FIELDNAMES.
BUTD_FIELDS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
#: LXMERT's FIELDNAMES (src/utils.py).
LXMERT_FIELDS = (
    "img_id",
    "img_h",
    "img_w",
    "objects_id",
    "objects_conf",
    "attrs_id",
    "attrs_conf",
    "num_boxes",
    "boxes",
    "features",
)
LAYOUTS = {len(BUTD_FIELDS): ("butd-tsv", BUTD_FIELDS), len(LXMERT_FIELDS): ("lxmert-tsv", LXMERT_FIELDS)}
FLOAT32_BYTES = 4


Field = bytes | memoryview


def _b64_payload(field: Field) -> memoryview:
    """The base64 text of a field (a view, no copy), without a Python-3 ``b'...'`` wrapper."""
    view = memoryview(field)
    if view[:2] == b"b'" and view[-1:] == b"'":
        view = view[2:-1]
    return view


def _decoded_size(payload: memoryview) -> int | None:
    """Bytes that ``payload`` decodes to, from its length alone; None when it cannot be whole base64."""
    if len(payload) % 4:
        return None
    pad = 2 if payload[-2:] == b"==" else 1 if payload[-1:] == b"=" else 0
    return len(payload) // 4 * 3 - pad


def _b64decode(payload: memoryview) -> bytes:
    if sys.version_info >= (3, 11):
        return binascii.a2b_base64(payload, strict_mode=True)
    import base64

    return base64.b64decode(payload, validate=True)


def _split_line(line: bytes) -> list[Field]:
    """The tab-separated fields of a line as views (no copies of the long base64 fields).

    The csv module (its field-size limit lifted for the call) parses only a line holding a quote.
    """
    end = len(line)
    while end and line[end - 1] in b"\r\n":
        end -= 1
    if b'"' in line:
        old = csv.field_size_limit()
        csv.field_size_limit(sys.maxsize)
        try:
            row = next(csv.reader(io.StringIO(line[:end].decode("utf-8", "replace")), delimiter="\t"))
        finally:
            csv.field_size_limit(old)
        return [value.encode("utf-8") for value in row]
    view, fields, start = memoryview(line), [], 0
    while (tab := line.find(b"\t", start, end)) >= 0:
        fields.append(view[start:tab])
        start = tab + 1
    fields.append(view[start:end])
    return fields


def _text(field: Field) -> str:
    return bytes(field).strip().decode("utf-8", "replace")


class TsvSource(FeatureSource):
    """One or more TSV shards (files, or folders whose ``*.tsv*`` files are taken in name order).

    Args:
        paths: the shards, read in the order given.

    Examples:
        >>> src = TsvSource(["trainval_36/trainval_resnet101_faster_rcnn_genome_36.tsv"])  # doctest: +SKIP
        >>> entries = src.scan()  # ids, box counts and D, without decoding  # doctest: +SKIP
    """

    sequential = True

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self.paths = _expand(paths)
        self.format_name = ""

    # -- the scan -------------------------------------------------------------------------------------
    def scan(self) -> list[Entry]:
        entries: list[Entry] = []
        first_dim: tuple[int, str] | None = None
        for shard, path in enumerate(self.paths):
            for entry in self._scan_shard(shard, path, len(entries)):
                if first_dim is None:
                    first_dim = (entry.dim, entry.where)
                elif entry.dim != first_dim[0]:
                    raise DataError(
                        f"Mixed feature sizes: {first_dim[1]} has D = {first_dim[0]} but {entry.where} has "
                        f"D = {entry.dim}. Features of different extractors cannot share a dataset: import "
                        "the shards of one extractor only."
                    )
                entries.append(entry)
        if not entries:
            raise DataError(f"No feature rows in {', '.join(str(p) for p in self.paths)}.")
        return entries

    def _scan_shard(self, shard: int, path: Path, order: int) -> Iterator[Entry]:
        offset = 0
        try:
            handle = open(path, "rb")  # noqa: SIM115 (closed below; a generator)
        except OSError as exc:
            raise DataError(f"Cannot open the TSV file {path}: {exc}") from None
        with handle:
            for number, line in enumerate(handle, start=1):
                start, offset = offset, offset + len(line)
                if not line.strip():
                    continue
                where = f"{path.name}, line {number}"
                fields = self._fields(line, where)
                key, regions, dim = self._measure(fields, where, truncated=not line.endswith(b"\n"))
                yield Entry(key, regions, dim, True, f"{where} (image {key})", (shard, start, number), order)
                order += 1

    def _fields(self, line: bytes, where: str) -> dict[str, Field]:
        fields = _split_line(line)
        layout = LAYOUTS.get(len(fields))
        if layout is None:
            raise DataError(
                f"{where}: {len(fields)} tab-separated fields. generate_tsv.py rows have 6 "
                f"({', '.join(BUTD_FIELDS)}), LXMERT rows 10; a shorter row is usually the last line of a "
                "shard whose writer was killed: re-extract that image or delete the line."
            )
        name, names = layout
        if not self.format_name:
            self.format_name = name
        elif name != self.format_name:
            raise DataError(f"{where}: a {name} row in a {self.format_name} import; import one layout at a time.")
        return dict(zip(names, fields, strict=True))

    @staticmethod
    def _measure(fields: dict[str, Field], where: str, *, truncated: bool) -> tuple[str, int, int]:
        """(image id, num_boxes, D) from the field lengths, with every disagreement named."""
        key = _text(fields["image_id"] if "image_id" in fields else fields["img_id"])
        if not key:
            raise DataError(f"{where}: empty image id.")
        try:
            regions = int(bytes(fields["num_boxes"]))
        except ValueError:
            raise DataError(
                f"{where} (image {key}): num_boxes is {bytes(fields['num_boxes'][:20])!r}, not a number."
            ) from None
        if regions < 1:
            raise DataError(f"{where} (image {key}): num_boxes is {regions}; an image needs at least one region.")
        box_bytes = _decoded_size(_b64_payload(fields["boxes"]))
        feat_bytes = _decoded_size(_b64_payload(fields["features"]))
        hint = " The line ends without a newline: the shard was cut short." if truncated else ""
        for name, size in (("boxes", box_bytes), ("features", feat_bytes)):
            if size is None:
                raise DataError(
                    f"{where} (image {key}): the {name} field is not whole base64 (its length is not a multiple "
                    f"of 4): truncated or corrupt.{hint}"
                )
        if box_bytes != regions * 4 * FLOAT32_BYTES:
            raise DataError(
                f"{where} (image {key}): num_boxes is {regions} but the boxes field holds "
                f"{box_bytes / (4 * FLOAT32_BYTES):g} boxes ({box_bytes} bytes of float32 x 4).{hint}"
            )
        if feat_bytes == 0 or feat_bytes % (regions * FLOAT32_BYTES):
            raise DataError(
                f"{where} (image {key}): the features field holds {feat_bytes} bytes, not num_boxes = {regions} "
                f"float32 vectors (truncated base64, or num_boxes disagrees with the array).{hint}"
            )
        return key, regions, feat_bytes // (regions * FLOAT32_BYTES)

    # -- the read -------------------------------------------------------------------------------------
    def read(self, entries: Sequence[Entry]) -> Iterator[tuple[Entry, np.ndarray, np.ndarray | None]]:
        shard, handle = -1, None
        try:
            for entry in entries:
                if entry.locator[0] != shard:  # shards are read one after the other
                    if handle is not None:
                        handle.close()
                    shard = entry.locator[0]
                    handle = open(self.paths[shard], "rb")  # noqa: SIM115 (closed in finally)
                offset = entry.locator[1]
                if handle.tell() != offset:
                    handle.seek(offset)
                yield (entry, *self._decode(handle.readline(), entry))
        finally:
            if handle is not None:
                handle.close()

    def _decode(self, line: bytes, entry: Entry) -> tuple[np.ndarray, np.ndarray]:
        fields = self._fields(line, entry.where)
        key = _text(fields["image_id"] if "image_id" in fields else fields["img_id"])
        if key != entry.key:
            raise DataError(f"{entry.where}: the file changed since it was scanned (found image {key}); rerun.")
        arrays = []
        for name, width in (("boxes", 4), ("features", entry.dim)):
            try:
                raw = _b64decode(_b64_payload(fields[name]))
            except (binascii.Error, ValueError) as exc:
                raise DataError(f"{entry.where}: the {name} field is not valid base64 ({exc}): corrupt row.") from None
            if len(raw) != entry.regions * width * FLOAT32_BYTES:
                raise DataError(
                    f"{entry.where}: the {name} field decodes to {len(raw)} bytes, not "
                    f"{entry.regions} x {width} float32: corrupt base64."
                )
            arrays.append(np.frombuffer(raw, dtype=np.float32).reshape(entry.regions, width))
        boxes, features = arrays
        return features, boxes

    def fingerprint(self) -> dict[str, Any]:
        return {"reader": "tsv", "files": [file_stamp(p) for p in self.paths]}


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; a folder contributes its ``*.tsv`` and ``*.tsv.N`` files in name order."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and ".tsv" in p.name)
            if not found:
                raise DataError(f"{path} holds no .tsv files.")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise DataError(f"TSV source {path} not found.")
    if not out:
        raise DataError("No TSV files given.")
    return out


__all__ = ["BUTD_FIELDS", "LXMERT_FIELDS", "TsvSource"]
