"""The floors of mmzoo, checked: import-linter's contracts, no import cycle, no inner import of the public face.

``pyproject.toml`` declares the layers (``[tool.importlinter]``); docs/design.md draws them. grimp, the graph
library under import-linter, sees every import statement, function-level ones included.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_lint_imports_keeps_every_contract():
    script = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("mmzoo", include_external_packages=False)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.find_modules_directly_imported_by(node):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_among_mmzoo_modules(graph):
    # a package's __init__ importing its own children is not a cycle unless a child imports the package back
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    g = grimp.ImportGraph()
    for module in ("a", "b", "c"):
        g.add_module(module)
    g.add_import(importer="a", imported="b")
    g.add_import(importer="b", imported="c")
    g.add_import(importer="c", imported="a")
    assert _cycles(g) == [["a", "b", "c"]]


def test_no_inner_module_imports_the_public_face(graph):
    importers = sorted(m for m in graph.find_modules_that_directly_import("mmzoo") if m != "mmzoo")
    assert importers == [], f"these modules import the public face `mmzoo`; import the floor you need: {importers}"
