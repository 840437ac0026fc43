"""``mmzoo components [KIND] [--fields]``: registered components per kind, with their plugin and fields."""

from __future__ import annotations

import argparse

from mmzoo import registry
from mmzoo.cli._table import format_table

COMPONENT_KINDS = ["visual_encoder", "text_encoder", "fusion", "loss"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("components", help="list registered components", description=__doc__)
    p.add_argument("kind", nargs="?", choices=COMPONENT_KINDS, help="only this kind")
    p.add_argument("--fields", action="store_true", help="show each component's config fields and defaults")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    for kind in [args.kind] if args.kind else COMPONENT_KINDS:
        for entry in registry.get_registry(kind).entries():
            doc = (entry.obj.__doc__ or "").strip().splitlines()[0] if entry.obj.__doc__ else ""
            rows.append((kind, entry.name, entry.plugin or "user", doc))
            if args.fields:
                for field, info in entry.obj.Config.model_fields.items():
                    default = info.get_default(call_default_factory=True)
                    rows.append(("", f"  .{field}", repr(default), info.description or ""))
    print(format_table(["kind", "name", "plugin", "description"], rows))
    return 0
