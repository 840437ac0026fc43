"""The ``mmzoo`` command. Each sub-command lives in its own module with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import logging
import re
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
    "index",
    "serve",
    "convert",
    "push",
    "download",
]
#: commands whose extra ``--flags`` go to a plugin (a converter's options).
OPEN_ENDED = {"convert"}
#: commands that only print what is registered: they compute nothing, so they leave torch's threads alone (and
#: need not import torch for it). Every other command applies the thread policy before it runs.
PRINT_ONLY = {"list", "components", "plugins"}


def plain_text(text: str | None) -> str | None:
    """A docstring or help string as a terminal shows it: reST markup off (````x````, ``:func:`x```, ``Examples::``).

    The sub-commands' descriptions are their module docstrings, written in reST for the API reference.

    Examples:
        >>> plain_text("Writes ``OUT/{split}_ims.npy`` (:func:`~mmzoo.data.make_shapes`). Examples::")
        'Writes OUT/{split}_ims.npy (mmzoo.data.make_shapes). Examples:'
    """
    if not text:
        return text
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return re.sub(r"::$", ":", text, flags=re.M)


def _plain_help(parser: argparse.ArgumentParser) -> None:
    parser.description = plain_text(parser.description)
    parser.epilog = plain_text(parser.epilog)
    for action in parser._actions:
        action.help = plain_text(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain_text(choice.help)
            for sub in action.choices.values():
                _plain_help(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmzoo", description="A plugin-based model zoo for image-text matching.")
    parser.add_argument("--version", action="version", version=f"mmzoo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"mmzoo.cli.{name.replace('-', '_')}_cmd")
        module.add_parser(sub)
    _plain_help(parser)
    return parser


def apply_thread_policy() -> int:
    """Set torch's thread count by mmzoo's policy (``MMZOO_NUM_THREADS``, else the user's OpenMP/MKL setting, else
    the cores the load leaves free; :mod:`mmzoo.scoring.threads`), once, before a command computes anything."""
    from mmzoo.scoring.threads import configure_threads

    count = configure_threads()
    logging.getLogger(__name__).debug("torch intra-op threads: %d", count)
    return count


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
        if args.command not in PRINT_ONLY:
            apply_thread_policy()
        return int(args.run(args) or 0)
    except MMZooError as exc:
        print(f"mmzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mmzoo {args.command}: interrupted", file=sys.stderr)
        return 130
