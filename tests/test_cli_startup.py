"""Fast start: the commands that only print, and ``import mmzoo`` itself, never import torch (4-6 s on a busy
machine before anything printed). Each check runs a fresh interpreter, as a user starts the command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmzoo.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]

#: ``mmzoo ARGS`` as the console script runs it; prints the heavy modules that were imported
RUNNER = """
import sys
from mmzoo.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "numpy", "transformers", "timm", "pydantic", "pytest") if m in sys.modules)
print("HEAVY:", ",".join(heavy))
raise SystemExit(code)
"""


def _heavy_after(*args: str) -> tuple[list[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("HEAVY:"))
    return [m for m in line.removeprefix("HEAVY:").strip().split(",") if m], done.stdout


def test_version_prints_without_torch():
    heavy, out = _heavy_after("--version")
    assert out.startswith("mmzoo ") and heavy == []


def test_help_lists_every_command_without_torch():
    heavy, out = _heavy_after("--help")
    assert all(name in out for name in COMMANDS) and heavy == []
    assert "``" not in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_prints_without_torch(command):
    heavy, out = _heavy_after(command, "--help")
    assert f"usage: mmzoo {command}" in out
    assert "torch" not in heavy
    assert "``" not in out and ":func:`" not in out and ":class:`" not in out  # no raw reST in a terminal


def test_both_faces_import_without_torch():
    code = "import sys, mmzoo, mmzoo.plugin, mmzoo.errors; print(sorted(m for m in ('torch', 'pytest') if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True
    )
    assert done.stdout.strip() == "[]", done.stderr[-2000:]


def test_plain_text_takes_the_rest_markup_off():
    from mmzoo.cli import plain_text

    assert plain_text("``OUT/{split}_ims.npy`` and :class:`~mmzoo.plugin.Fragments`") == (
        "OUT/{split}_ims.npy and mmzoo.plugin.Fragments"
    )
    assert plain_text("Examples::\n\n    mmzoo train") == "Examples:\n\n    mmzoo train"
    assert plain_text(None) is None
