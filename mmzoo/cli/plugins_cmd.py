"""``mmzoo plugins``: installed plugins, their distribution and version, hooks, components, load errors."""

from __future__ import annotations

import argparse
import json

from mmzoo.cli._table import format_table
from mmzoo.registry.plugins import plugin_records


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plugins", help="list installed plugins and their status", description=__doc__)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    records = plugin_records()
    if args.json:
        print(json.dumps([vars(r) for r in records], indent=2))
        return 0
    rows = []
    for r in records:
        comps = ", ".join(f"{kind}:{name}" for kind, name in r.components)
        rows.append(
            (
                r.name,
                r.distribution or "-",
                r.version or "-",
                r.status,
                ", ".join(r.hooks) or "-",
                r.error if r.status == "failed" else comps,
            )
        )
    print(format_table(["plugin", "distribution", "version", "status", "hooks", "components / error"], rows))
    return 0
