"""Match the scanned feature entries to the captioned images, before anything is written.

Every disagreement is reported here, with names: an image id that two feature rows claim (with both
places), images of a split that have no features, and feature rows of images the caption source does not
know at all (left out on request: ``skip_extra``). Rows of images the caption source knows but whose
split is not imported (``restval`` when skipped, splits not asked for) are left out silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmzoo.data.importing.captions import CaptionedImage, CaptionTable, normalise_key
from mmzoo.data.importing.records import Entry
from mmzoo.errors import DataError

#: how many offenders a message lists before "and N more".
SHOWN = 5


@dataclass
class Plan:
    """What goes where: per split, (captioned image, feature entry) in output order.

    Attributes:
        splits: split name -> rows.
        skipped_known: feature rows of known images in splits not imported.
        skipped_extra: feature rows of images the caption source does not know (only with ``skip_extra``).
    """

    splits: dict[str, list[tuple[CaptionedImage, Entry]]]
    skipped_known: int = 0
    skipped_extra: list[Entry] = field(default_factory=list)

    @property
    def entries(self) -> list[Entry]:
        return [entry for rows in self.splits.values() for _image, entry in rows]


def _listing(items: list[str]) -> str:
    shown = "; ".join(items[:SHOWN])
    return shown + (f"; and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def plan_import(entries: list[Entry], table: CaptionTable, *, skip_extra: bool = False) -> Plan:
    """Pair every image of ``table``'s splits with its feature entry.

    Raises:
        DataError: duplicate image ids among the entries, images without features, or (without
            ``skip_extra``) features of images the caption source does not list.
    """
    by_key: dict[str, Entry] = {}
    for entry in entries:
        key = normalise_key(entry.key, table.match)
        other = by_key.get(key)
        if other is not None:
            raise DataError(
                f"Image {key} appears twice in the features: {other.where} and {entry.where}. Shards of one "
                "extraction hold each image once; remove the duplicate (or the shard given twice)."
            )
        by_key[key] = entry
    plan = Plan({})
    used: set[str] = set()
    for split, images in table.splits.items():
        rows, missing = [], []
        for image in images:
            entry = by_key.get(image.key)
            if entry is None:
                missing.append(image.label)
            else:
                rows.append((image, entry))
                used.add(image.key)
        if missing:
            raise DataError(
                f"{len(missing)} of the {len(images)} images of split {split!r} in {table.source.name} have no "
                f"features in the sources: {_listing(missing)}. Add the shards or files that hold them, or "
                "check --match (feature ids are matched on the "
                f"{table.match})."
            )
        plan.splits[split] = rows
    extra = []
    for key, entry in by_key.items():
        if key in used:
            continue
        if key in table.known:
            plan.skipped_known += 1
        else:
            extra.append(entry)
    if extra and not skip_extra:
        raise DataError(
            f"{len(extra)} feature rows are of images {table.source.name} does not list: "
            f"{_listing([e.where for e in extra])}. Check --match ({table.match}) and the caption file, or pass "
            "--skip-extra-features to leave them out."
        )
    plan.skipped_extra = extra
    return plan


__all__ = ["Plan", "plan_import"]
