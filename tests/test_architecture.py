"""The floors of mmzoo, checked: import-linter's contracts, no import cycle, no inner import of the public face.

``pyproject.toml`` declares the layers (``[tool.importlinter]``); docs/design.md draws them. grimp, the graph
library under import-linter, sees every import statement, function-level ones included.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tokenize
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
    for face in ("mmzoo", "mmzoo.plugin"):
        importers = sorted(m for m in graph.find_modules_that_directly_import(face) if m != "mmzoo")
        assert importers == [], f"these modules import the face `{face}`; import the floor you need: {importers}"


def test_the_plugin_contract_forbids_every_module_but_the_two_faces_and_errors():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
        import tomli as tomllib
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (plugins,) = [c for c in contracts if c["type"] == "forbidden" and "mmzoo_plugins" in c["source_modules"]]
    top = {".".join(m.split(".")[:2]) for m in grimp.build_graph("mmzoo").modules if m != "mmzoo"}
    assert set(plugins["forbidden_modules"]) == top - {"mmzoo.plugin", "mmzoo.errors"}


#: ``import mmzoo`` then ``mmzoo.data.X`` reaches a floor without an import statement the contract could see
ATTRIBUTE_WALK = re.compile(r"\bmmzoo\.(?!plugin\b|errors\b)([a-z_]+)\.\w")


def test_plugins_reach_no_floor_through_a_face_attribute():
    walks = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        if "build" in path.parts:
            continue
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if token.type == tokenize.NAME and token.string == "mmzoo":
                line = token.line[token.start[1] :]
                if ATTRIBUTE_WALK.match(line):
                    walks.append(f"{path.relative_to(ROOT)}:{token.start[0]}: {line.strip()}")
    assert walks == [], "use mmzoo.plugin (or mmzoo) instead:\n" + "\n".join(walks)


def test_the_walk_finder_finds_walks():
    assert ATTRIBUTE_WALK.match("mmzoo.data.PrecomputedFormat)")
    assert ATTRIBUTE_WALK.match("mmzoo.registry.visual_encoder.get('x')")
    assert not ATTRIBUTE_WALK.match("mmzoo.plugin.Fragments") and not ATTRIBUTE_WALK.match("mmzoo.errors.X")
    assert not ATTRIBUTE_WALK.match("mmzoo.create_model('mmca')")
