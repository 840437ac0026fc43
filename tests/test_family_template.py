"""Every built-in family under plugins/ is laid out by the template of docs/plugins.md ("Family template").

A family is a plugin folder that is not one of :data:`SUPPORT`: it registers recipes or zoo entries, and its files
are ``__init__.py`` (the hook only), ``recipes.py`` (``RECIPES``), ``zoo.py`` (``PAPER``, ``CITATION``,
``LICENSE``, ``ENTRIES``), ``convert.py`` (exactly when it registers converters), then one module per component.
The support plugins register neither recipes nor zoo entries. Each hook runs against a recording registry, so
the test checks what the family registers, not only which files it has.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import mmzoo

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
#: plugin folders that are not model families: shared parts (no hook), built-in data formats, shared losses.
SUPPORT = {"common": "parts families share", "formats": "data formats", "losses": "losses families share"}
FAMILIES = sorted(
    p.name for p in PLUGINS.iterdir() if (p / "__init__.py").is_file() and p.name not in SUPPORT
)  # plugins/mmzoo-example-fusion is a separate distribution (no __init__.py here): a third party's layout
TEMPLATE_MODULES = ("__init__", "recipes", "zoo", "convert")


class Recorder:
    """A stand-in for ``mmzoo.registry``: ``registry.<kind>.register(name, obj)`` is recorded, nothing else."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, object]] = defaultdict(dict)

    def __getattr__(self, kind: str):
        records = self.records[kind]

        class Kind:
            @staticmethod
            def register(name: str, obj: object, **options: object) -> None:
                assert name not in records, f"{kind} {name!r} registered twice"
                records[name] = obj

        return Kind


def registered(folder: str) -> dict[str, dict[str, object]]:
    recorder = Recorder()
    importlib.import_module(f"mmzoo_plugins.{folder}").mmzoo_register(recorder)
    return recorder.records


def test_families_are_found():
    assert {"mmca", "vsepp", "vse_infinity", "scan", "sgraf", "vision"} <= set(FAMILIES)


@pytest.mark.parametrize("folder", sorted(SUPPORT))
def test_support_plugins_register_no_recipes_or_entries(folder):
    module = importlib.import_module(f"mmzoo_plugins.{folder}")
    if not hasattr(module, "mmzoo_register"):  # common: shared parts, no hook
        assert not (PLUGINS / folder / "recipes.py").exists()
        return
    records = registered(folder)
    assert not records.get("model") and not records.get("pretrained"), (
        f"plugins/{folder} registers recipes or zoo entries: it is a family, give it the family template"
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_init_is_the_hook_only(family):
    """Imports, a docstring and ``mmzoo_register``, whose body only registers (calls, loops over RECIPES/ENTRIES)."""
    tree = ast.parse((PLUGINS / family / "__init__.py").read_text(encoding="utf-8"))
    functions = []
    for i, node in enumerate(tree.body):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and i == 0:
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        assert isinstance(node, ast.FunctionDef), (
            f"plugins/{family}/__init__.py line {node.lineno}: only imports and the hook belong here "
            "(recipes go to recipes.py, paper and entries to zoo.py)"
        )
        functions.append(node.name)
    assert functions == ["mmzoo_register"]
    hook = tree.body[-1] if isinstance(tree.body[-1], ast.FunctionDef) else None
    assert hook is not None
    for stmt in ast.walk(hook):
        assert not isinstance(stmt, ast.If | ast.While | ast.Try | ast.Assign | ast.FunctionDef | ast.Return) or (
            stmt is hook
        ), f"plugins/{family}/__init__.py line {stmt.lineno}: the hook registers, it holds no logic"


@pytest.mark.parametrize("family", FAMILIES)
def test_recipes_and_zoo_are_what_the_hook_registers(family):
    records = registered(family)
    recipes = importlib.import_module(f"mmzoo_plugins.{family}.recipes")
    zoo = importlib.import_module(f"mmzoo_plugins.{family}.zoo")
    assert recipes.RECIPES and all(isinstance(r, mmzoo.plugin.Recipe) for r in recipes.RECIPES.values())
    assert records["model"] == recipes.RECIPES
    assert all(isinstance(e, mmzoo.plugin.PretrainedEntry) for e in zoo.ENTRIES)
    assert records.get("pretrained", {}) == {e.alias: e for e in zoo.ENTRIES}
    for name in ("PAPER", "CITATION", "LICENSE"):
        value = getattr(zoo, name, None)
        assert isinstance(value, str) and value.strip(), f"plugins/{family}/zoo.py needs a non-empty {name}"


@pytest.mark.parametrize("family", FAMILIES)
def test_converters_live_in_convert_py_and_components_in_their_modules(family):
    records = registered(family)
    converters = records.get("converter", {})
    assert (PLUGINS / family / "convert.py").exists() == bool(converters), (
        f"plugins/{family}: convert.py holds the converters, and exists only where the family has some"
    )
    for name, cls in converters.items():
        assert cls.__module__ == f"mmzoo_plugins.{family}.convert", f"converter {name} is defined outside convert.py"
    for kind in ("visual_encoder", "text_encoder", "fusion", "loss"):
        for name, cls in records.get(kind, {}).items():
            module = cls.__module__.rsplit(".", 1)[-1]
            assert cls.__module__.startswith(f"mmzoo_plugins.{family}.") and module not in TEMPLATE_MODULES, (
                f"{kind} {name} ({cls.__module__}) belongs in a component module of plugins/{family}/"
            )


@pytest.mark.parametrize("folder", [*FAMILIES, *SUPPORT])
def test_no_module_shadows_the_standard_library(folder):
    """``tokenize.py`` inside a package hides nothing, but reads as the stdlib module; name modules by what they hold."""
    clashes = [p.name for p in (PLUGINS / folder).glob("*.py") if p.stem in sys.stdlib_module_names]
    assert not clashes, f"plugins/{folder}: {clashes} are names of standard-library modules"
