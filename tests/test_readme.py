"""The README's first example runs as written."""

from __future__ import annotations

import re
from pathlib import Path


def test_readme_first_example_runs(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README has a Python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "mmca" in out and "torch.Size([2, 2])" in out
