"""``mmzoo list [PATTERN] [--pretrained]``: the registered recipes, or the pretrained zoo table."""

from __future__ import annotations

import argparse

from mmzoo import registry
from mmzoo.cli._table import format_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the model recipes or the pretrained weights", description=__doc__)
    p.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'mmca*'")
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="list the zoo table: alias, recipe, dataset, metrics and status of each trained entry",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.pretrained:
        from mmzoo.zoo import pretrained_entries

        rows = [
            (e.alias, e.recipe, e.dataset.split(" (")[0], e.metrics_summary(), e.status, e.hub_repo)
            for e in pretrained_entries(args.pattern)
        ]
        print(format_table(["alias", "recipe", "dataset", "metrics", "status", "hub repo"], rows))
        untrained = [e.alias for e in pretrained_entries(args.pattern) if not e.available]
        if untrained:
            print(
                f"\nnot trained yet: {', '.join(untrained)}. Train with `mmzoo train` and the matching "
                "configs/<alias>.yaml on a GPU; load the result with from_pretrained('local-dir:RUN/best')."
            )
        return 0
    rows = [
        (e.name, e.plugin or "user", e.obj.description)
        for e in registry.model.entries()
        if e.name in set(registry.model.names(args.pattern))
    ]
    print(format_table(["model", "plugin", "description"], rows))
    return 0
