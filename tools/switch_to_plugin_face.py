"""Move a plugin's code from the 0.2 face (``mmzoo.Fragments``) to the plugin face (``from mmzoo.plugin import
Fragments``) and to ``mmzoo.errors`` for errors: the migration mmzoo 0.3 asks of every plugin, done mechanically.

    python tools/switch_to_plugin_face.py plugins/ my_plugin/

In code, ``mmzoo.NAME`` becomes ``NAME`` with one ``from mmzoo.plugin import ...`` (or ``from mmzoo.errors import
...``) line per module; in docstrings and comments it becomes ``mmzoo.plugin.NAME``. ``import mmzoo`` stays where
the module still calls the user face (``mmzoo.create_model``), and goes where nothing uses it any more. A module
that defines a name of its own which the rewrite would shadow is left alone and reported. Run ``ruff check --fix``
and ``ruff format`` afterwards to sort the imports.
"""

from __future__ import annotations

import io
import re
import sys
import tokenize
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mmzoo
import mmzoo.plugin

PLUGIN = set(mmzoo.plugin.__all__)
ERRORS = {n for n in mmzoo._DEPRECATED if mmzoo._DEPRECATED[n] == "mmzoo.errors"}


def rewrite(source: str) -> tuple[str, list[str]]:
    """The module's new text and the names that would clash with its own."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []  # (row, col start, col end, replacement)
    used: dict[str, set[str]] = {"mmzoo.plugin": set(), "mmzoo.errors": set()}
    for i in range(len(tokens) - 2):
        a, dot, b = tokens[i], tokens[i + 1], tokens[i + 2]
        if a.type == tokenize.NAME and a.string == "mmzoo" and dot.string == "." and b.type == tokenize.NAME:
            if i > 0 and tokens[i - 1].string in (".", "import", "from"):
                continue
            home = "mmzoo.plugin" if b.string in PLUGIN else "mmzoo.errors" if b.string in ERRORS else None
            if home and a.start[0] == b.end[0]:
                edits.append((a.start[0], a.start[1], b.end[1], b.string))
                used[home].add(b.string)
    for tok in tokens:  # prose: docstrings and comments name the new home
        if tok.type in (tokenize.STRING, tokenize.COMMENT):
            new = re.sub(
                r"\bmmzoo\.([A-Za-z_]\w*)\b",
                lambda m: f"mmzoo.plugin.{m.group(1)}" if m.group(1) in PLUGIN else m.group(0),
                tok.string,
            )
            if new != tok.string and "\n" not in tok.string:
                edits.append((tok.start[0], tok.start[1], tok.end[1], new))
            elif new != tok.string:  # a multi-line docstring: replace line by line
                for row in range(tok.start[0], tok.end[0] + 1):
                    line = lines[row - 1]
                    fixed = re.sub(
                        r"\bmmzoo\.([A-Za-z_]\w*)\b",
                        lambda m: f"mmzoo.plugin.{m.group(1)}" if m.group(1) in PLUGIN else m.group(0),
                        line,
                    )
                    if fixed != line:
                        edits.append((row, 0, len(line), fixed))
    own = {m.group(1) for m in re.finditer(r"^(?:class|def)\s+(\w+)|^(\w+)\s*[:=]", source, re.M) if m.group(1)}
    clashes = sorted(own & (used["mmzoo.plugin"] | used["mmzoo.errors"]))
    if clashes:
        return source, clashes
    for row, start, end, text in sorted(edits, key=lambda e: (e[0], -e[1])):
        line = lines[row - 1]
        lines[row - 1] = line[:start] + text + line[end:]
    out = "".join(lines)
    out = re.sub(r"^from mmzoo import ([\w, ]+)\n", lambda m: _from_face(m, used), out, flags=re.M)
    header = "".join(f"from {home} import {', '.join(sorted(names))}\n" for home, names in used.items() if names)
    if header:
        anchor = re.search(r"^(import mmzoo\n|from mmzoo[\w.]* import [^\n]*\n)", out, re.M)
        if anchor is None:
            anchor = re.search(r"^from __future__ import annotations\n", out, re.M)
        at = anchor.end() if anchor else 0
        out = out[:at] + header + out[at:]
    if re.search(r"^import mmzoo\n", out, re.M) and not re.search(r"(?<!from )\bmmzoo\.\w", _code_only(out)):
        out = re.sub(r"^import mmzoo\n", "", out, count=1, flags=re.M)
    return out, []


def _from_face(match: re.Match, used: dict[str, set[str]]) -> str:
    names = [n.strip() for n in match.group(1).split(",") if n.strip()]
    keep = [n for n in names if n not in PLUGIN and n not in ERRORS]
    used["mmzoo.plugin"].update(n for n in names if n in PLUGIN)
    used["mmzoo.errors"].update(n for n in names if n in ERRORS)
    return f"from mmzoo import {', '.join(keep)}\n" if keep else ""


def _code_only(source: str) -> str:
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (tokenize.STRING, tokenize.COMMENT):
            out.append(tok.string)
    return " ".join(out).replace(" . ", ".")


def main(paths: list[str]) -> int:
    for root in paths:
        for path in sorted(Path(root).rglob("*.py")) if Path(root).is_dir() else [Path(root)]:
            if "build" in path.parts:
                continue
            source = path.read_text()
            new, clashes = rewrite(source)
            if clashes:
                print(f"{path}: left alone, it defines {clashes} itself")
            elif new != source:
                path.write_text(new)
                print(f"{path}: switched")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
