"""``mmzoo list [PATTERN] [--pretrained]``: the registered recipes, or the zoo table of pretrained weights."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from mmzoo.cli._table import format_table

if TYPE_CHECKING:
    from mmzoo.registry import PretrainedEntry


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the model recipes or the pretrained weights", description=__doc__)
    p.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'mmca*'")
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="list the zoo table: alias, recipe, dataset, numbers, status, plugin and weights of every entry",
    )
    p.set_defaults(run=run)


def _weights(entry: PretrainedEntry) -> str:
    if entry.members:
        return "ensemble of " + " + ".join(entry.members)
    w = entry.weights
    if w.repo and w.filename:
        return f"{w.repo}/{w.filename}"
    return w.repo or w.url or "-"


def run(args: argparse.Namespace) -> int:
    from mmzoo.hub import zoo
    from mmzoo.registry import model as recipes

    if args.pretrained:
        entries = zoo.pretrained_entries(args.pattern)
        rows = [
            (
                e.alias,
                e.recipe,
                e.dataset.split(" (")[0],
                e.metrics_summary(),
                e.status,
                zoo.plugin_of(e.alias) or "user",
                _weights(e),
            )
            for e in entries
        ]
        print(format_table(["alias", "recipe", "dataset", "numbers", "status", "plugin", "weights"], rows))
        pending = [e for e in entries if e.status in (zoo.NOT_TRAINED, zoo.MANUAL)]
        if len(pending) <= 3:
            for e in pending:
                print(f"\n{e.alias}: {zoo.how_to_get(e)}")
        else:
            print(
                f"\n{len(pending)} entries need a manual download or training: `mmzoo list --pretrained ALIAS` says how."
            )
        return 0
    names = set(recipes.names(args.pattern))
    rows = [(e.name, e.plugin or "user", e.obj.description) for e in recipes.entries() if e.name in names]
    print(format_table(["model", "plugin", "description"], rows))
    return 0
