"""The ``mmzoo`` command. Each sub-command lives in its own module with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from mmzoo._version import __version__
from mmzoo.errors import MMZooError

#: sub-command modules, in the order ``mmzoo --help`` lists them.
COMMANDS = [
    "list",
    "components",
    "plugins",
    "make-data",
    "train",
    "plot",
    "eval",
    "extract-features",
    "import-features",
    "search",
    "convert",
    "push",
    "download",
]
#: commands whose extra ``--flags`` go to a plugin (a converter's options).
OPEN_ENDED = {"convert"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmzoo", description="A plugin-based model zoo for image-text matching.")
    parser.add_argument("--version", action="version", version=f"mmzoo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"mmzoo.cli.{name.replace('-', '_')}_cmd")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in OPEN_ENDED:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
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
