"""Contact sheets: search results a person can look at, as a PNG grid or a self-contained HTML page.

Each row is one query: its text (or its image) followed by the best matches with their scores.

Examples:
    >>> rows = [SheetRow("a red circle", [Hit("scenes/000003.png", 0.81), Hit("scenes/000007.png", 0.42)])]
    >>> write_contact_sheet(rows, "search.png")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmzoo._atomic import atomic_write_bytes, atomic_write_text
from mmzoo._optional import require
from mmzoo.errors import InputError

THUMB = 128
PAD = 8
LABEL = 34


@dataclass
class Hit:
    """One match: an image file or a caption, its score, and whether it is known to be right (None: unknown)."""

    item: str | Path
    score: float
    correct: bool | None = None


@dataclass
class SheetRow:
    """One query (a caption, or an image path for the reverse direction) and its ranked hits."""

    query: str | Path
    hits: list[Hit] = field(default_factory=list)
    query_is_image: bool = False


def _font(size: int) -> Any:
    require("PIL", extra="vision", purpose="Drawing a contact sheet")
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def _thumbnail(path: str | Path) -> Any:
    require("PIL", extra="vision", purpose="Drawing a contact sheet")
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        return ImageOps.pad(img.convert("RGB"), (THUMB, THUMB), color=(255, 255, 255))


def _png(rows: list[SheetRow], path: Path) -> None:
    require("PIL", extra="vision", purpose="Drawing a contact sheet")
    from PIL import Image, ImageDraw

    font, small = _font(14), _font(12)
    text_hits = rows[0].query_is_image  # the reverse direction: an image query, captions as hits
    query_w = THUMB if text_hits else 220
    cols = max(len(r.hits) for r in rows)
    hit_w = THUMB
    if text_hits:  # as wide as the longest caption line
        measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        lines = [f"{len(r.hits)}. {h.score:+.3f}  {h.item}" for r in rows for h in r.hits]
        hit_w = int(max(measure.textlength(line, font=small) for line in lines)) + PAD
    hit_h = max(THUMB, 22 * cols) if text_hits else THUMB
    width = PAD + query_w + PAD + (hit_w + PAD) * (1 if text_hits else cols)
    row_h = (hit_h if text_hits else THUMB) + LABEL + PAD
    sheet = Image.new("RGB", (width, PAD + row_h * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        top = PAD + r * row_h
        if row.query_is_image:
            sheet.paste(_thumbnail(row.query), (PAD, top))
            draw.text((PAD, top + THUMB + 4), Path(row.query).name, fill="black", font=small)
        else:
            draw.multiline_text((PAD, top), textwrap.fill(str(row.query), 28), fill="black", font=font)
        left = PAD + query_w + PAD
        if text_hits:
            for i, hit in enumerate(row.hits):
                colour = {True: (0, 130, 0), False: (200, 0, 0), None: (0, 0, 0)}[hit.correct]
                line = f"{i + 1}. {hit.score:+.3f}  {hit.item}"
                draw.text((left, top + 22 * i), line, fill=colour, font=small)
            continue
        for i, hit in enumerate(row.hits):
            x = left + i * (THUMB + PAD)
            sheet.paste(_thumbnail(hit.item), (x, top))
            if hit.correct is not None:
                colour = (0, 160, 0) if hit.correct else (220, 0, 0)
                draw.rectangle([x - 3, top - 3, x + THUMB + 2, top + THUMB + 2], outline=colour, width=3)
            draw.text((x, top + THUMB + 4), f"{i + 1}. {hit.score:+.3f}", fill="black", font=font)
            draw.text((x, top + THUMB + 19), Path(hit.item).name, fill=(90, 90, 90), font=small)
    buffer = io.BytesIO()
    sheet.save(buffer, format=Image.registered_extensions().get(Path(path).suffix.lower(), "PNG"))
    atomic_write_bytes(path, buffer.getvalue())  # a fresh file: never through a link at the name


def _data_uri(path: str | Path) -> str:
    buffer = io.BytesIO()
    _thumbnail(path).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _html(rows: list[SheetRow], path: Path) -> None:
    parts = [
        "<!doctype html><meta charset='utf-8'><title>mmzoo search</title>",
        "<style>body{font-family:sans-serif} td{vertical-align:top;padding:4px} .ok{outline:3px solid #0a0}"
        " .no{outline:3px solid #d00} figure{display:inline-block;margin:4px;text-align:center}</style><table>",
    ]
    for row in rows:
        if row.query_is_image:
            query = f"<img src='{_data_uri(row.query)}'><br>{html.escape(Path(row.query).name)}"
        else:
            query = f"<b>{html.escape(str(row.query))}</b>"
        cells = []
        for i, hit in enumerate(row.hits):
            mark = {True: "ok", False: "no", None: ""}[hit.correct]
            if row.query_is_image:
                cells.append(f"<div class='{mark}'>{i + 1}. {hit.score:+.3f} {html.escape(str(hit.item))}</div>")
            else:
                name = html.escape(Path(hit.item).name)
                cells.append(
                    f"<figure><img class='{mark}' src='{_data_uri(hit.item)}'>"
                    f"<figcaption>{i + 1}. {hit.score:+.3f}<br>{name}</figcaption></figure>"
                )
        parts.append(f"<tr><td>{query}</td><td>{''.join(cells)}</td></tr>")
    parts.append("</table>")
    atomic_write_text(path, "\n".join(parts) + "\n")


def write_contact_sheet(rows: list[SheetRow], path: str | Path) -> Path:
    """Write ``rows`` to ``path``: ``.html`` gives a self-contained page, anything else a PNG grid."""
    if not rows or not any(r.hits for r in rows):
        raise InputError("A contact sheet needs at least one query with hits.")
    if len({r.query_is_image for r in rows}) > 1:
        raise InputError("A contact sheet holds either caption queries or image queries, not both.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".html", ".htm"):
        _html(rows, path)
    else:
        _png(rows, path)
    return path


__all__ = ["Hit", "SheetRow", "write_contact_sheet"]
