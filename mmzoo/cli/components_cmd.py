"""``mmzoo components [KIND] [--fields]``: what is registered per kind, the plugin and the module of each.

The module column is the one hop from a name to the file that defines it.
"""

from __future__ import annotations

import argparse

from mmzoo.cli._table import format_table
from mmzoo.registry import COMPONENT_KINDS, get_registry

KINDS = [*COMPONENT_KINDS, "converter", "data_format"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("components", help="list registered components", description=__doc__)
    p.add_argument("kind", nargs="?", choices=KINDS, help="only this kind")
    p.add_argument("--fields", action="store_true", help="show each component's config fields and defaults")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    for kind in [args.kind] if args.kind else KINDS:
        for entry in get_registry(kind).entries():
            doc = (entry.obj.__doc__ or "").strip().splitlines()[0] if entry.obj.__doc__ else ""
            rows.append((kind, entry.name, entry.plugin or "user", entry.obj.__module__, doc))
            config = getattr(entry.obj, "Config", None)
            if args.fields and config is not None:
                for field, info in config.model_fields.items():
                    shown = "(required)" if info.is_required() else repr(info.get_default(call_default_factory=True))
                    rows.append(("", f"  .{field}", shown, "", info.description or ""))
    print(format_table(["kind", "name", "plugin", "module", "description"], rows))
    return 0
