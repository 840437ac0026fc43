"""Every ``>>>`` example in mmzoo's and its families' docstrings runs and prints what it shows.

An example that needs data, a GPU or the network says ``# doctest: +SKIP`` on each line that does; the others
are tests. Modules are found by walking the packages, so a new module's examples are collected without a list.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import mmzoo
import mmzoo_plugins

#: modules that run something when imported (``python -m`` entry points).
SKIP = {"__main__"}


def modules() -> list[str]:
    names = ["mmzoo", "mmzoo_plugins"]
    for package in (mmzoo, mmzoo_plugins):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".", onerror=lambda name: None):
            if info.name.rsplit(".", 1)[-1] not in SKIP:
                names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", modules())
def test_docstring_examples_run(name):
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # an optional dependency of that module (an extra) is not installed here
        if (exc.name or "").split(".")[0] in ("mmzoo", "mmzoo_plugins"):
            raise
        pytest.skip(f"{name} needs {exc.name}")
    tests = [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name) if t.examples]
    failed = []
    for test in tests:
        test.globs = {"mmzoo": mmzoo, **module.__dict__}
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        report: list[str] = []
        if runner.run(test, out=report.append).failed:
            failed.append("".join(report))
    assert not failed, "\n".join(failed)
