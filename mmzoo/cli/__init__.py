"""The ``mmzoo`` command. Each sub-command lives in its own module with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from mmzoo.errors import MMZooError

#: sub-command modules, in the order ``mmzoo --help`` lists them.
COMMANDS = [
    "list",
    "components",
    "plugins",
    "make-data",
    "train",
    "eval",
    "extract-features",
    "import-features",
    "search",
    "push",
    "download",
]


def build_parser() -> argparse.ArgumentParser:
    from mmzoo import __version__

    parser = argparse.ArgumentParser(prog="mmzoo", description="A plugin-based model zoo for image-text matching.")
    parser.add_argument("--version", action="version", version=f"mmzoo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"mmzoo.cli.{name.replace('-', '_')}_cmd")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.run(args) or 0)
    except MMZooError as exc:
        print(f"mmzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mmzoo {args.command}: interrupted", file=sys.stderr)
        return 130
