"""``mmzoo list [PATTERN]``: the registered recipes (model names) with their description."""

from __future__ import annotations

import argparse

from mmzoo import registry
from mmzoo.cli._table import format_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the model recipes", description=__doc__)
    p.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'mmca*'")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    rows = [
        (e.name, e.plugin or "user", e.obj.description)
        for e in registry.model.entries()
        if e.name in set(registry.model.names(args.pattern))
    ]
    print(format_table(["model", "plugin", "description"], rows))
    return 0
