"""The docs name only commands, options and modules that exist.

Every ``mmzoo COMMAND --option`` written in code (fenced blocks and inline code) of README.md and docs/*.md must be
a sub-command and an option of the real parser (``mmzoo.cli.build_parser``, so new commands count as soon as they
are registered; ``mmzoo convert``'s extra flags are its converters' ``Config`` fields), and every dotted
``mmzoo.x.y`` / ``mmzoo_plugins.x.y`` name anywhere in the text must import (a module, or an attribute of one).
An option named alone (```--resume```) is not checked: the docs also quote the research codebases' flags.
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import pytest

import mmzoo
from mmzoo.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

_FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
_INLINE = re.compile(r"`([^`\n]+)`")
#: ``mmzoo COMMAND ...`` where a shell command starts: a line or span, after ``$``, ``&&``, ``;``, ``(``, env settings.
_COMMAND = re.compile(
    r"(?:^|&&|\|\||;|\()\s*(?:\$\s+)?(?:[A-Z][A-Z0-9_]*=\S*\s+)*(?:python -m )?"
    r"mmzoo ((?:[a-z][a-z0-9]*)(?:-[a-z0-9]+)*)([^|;&#`]*)",
    re.M,
)
_OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*)")
_DOTTED = re.compile(r"(?<![\w./])(mmzoo(?:_plugins)?(?:\.[A-Za-z_]\w*)+)(?!\.md)")


def code_of(text: str) -> list[str]:
    """Each line of the fenced blocks (``\\`` continuations joined) and each inline code span."""
    blocks = [b.replace("\\\n", " ") for b in _FENCE.findall(text)]
    prose = _FENCE.sub("", text)
    return [line for b in blocks for line in b.splitlines()] + _INLINE.findall(prose)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    return dict(action.choices) if action is not None else {}


def all_options(parser: argparse.ArgumentParser) -> set[str]:
    """The options of a command and of its own sub-commands (``mmzoo index build --out``)."""
    found = options(parser)
    for child in subcommands(parser).values():
        found |= all_options(child)
    return found


def options(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def converter_flags() -> set[str]:
    flags = set()
    for name in mmzoo.registry.converter.names():
        for field in mmzoo.registry.converter.get(name).Config.model_fields:
            flags |= {f"--{field}", f"--{field.replace('_', '-')}"}
    return flags


@pytest.fixture(scope="module")
def cli():
    parser = build_parser()
    return parser, subcommands(parser)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_commands_and_options_exist(page, cli):
    parser, commands = cli
    wrong = []
    for code in code_of(page.read_text(encoding="utf-8")):
        for match in _COMMAND.finditer(code):
            name, rest = match.group(1), match.group(2)
            if name not in commands:
                wrong.append(f"`mmzoo {name}`: no such command")
                continue
            allowed = options(parser) | all_options(commands[name])
            if name == "convert":
                allowed |= converter_flags()
            wrong += [f"`mmzoo {name} {o}`: no such option" for o in _OPTION.findall(rest) if o not in allowed]
    assert not wrong, f"{page.name} names what the CLI does not have: {sorted(set(wrong))}"


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                return False
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_module_paths_import(page):
    names = set(_DOTTED.findall(page.read_text(encoding="utf-8")))
    missing = sorted(n for n in names if not resolves(n))
    assert not missing, f"{page.name} names modules or attributes that do not exist: {missing}"


def test_docstrings_name_modules_that_exist():
    """The same check over the source: a docstring that cites ``mmzoo.serialization`` (gone) is a failure."""
    sources = [p for folder in ("mmzoo", "plugins") for p in (ROOT / folder).rglob("*.py") if "build" not in p.parts]
    missing = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in sources
        for name in set(_DOTTED.findall(path.read_text(encoding="utf-8")))
        if not resolves(name)
    )
    assert not missing, f"these name modules or attributes that do not exist: {missing}"
