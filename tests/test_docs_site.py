"""The documentation site, API reference included, builds with every warning an error (as CI builds it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))


def test_every_public_module_has_an_api_page_and_the_nav_lists_every_page():
    documented = {page.read_text().split("::: ", 1)[1].split()[0] for page in API_PAGES}
    assert {"mmzoo", "mmzoo.plugin", "mmzoo.errors", "mmzoo.config", "mmzoo.data", "mmzoo.training"} <= documented
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = [p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")]
    assert [p for p in pages if f" {p}\n" not in nav] == []


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("mkdocstrings_handlers.python", reason="pip install 'mmzoo[dev]' (mkdocs, mkdocstrings)")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    plugin_page = (tmp_path / "site" / "api" / "plugin" / "index.html").read_text()
    assert 'id="mmzoo.plugin.FusionBlock"' in plugin_page and 'id="mmzoo.plugin.hookimpl"' in plugin_page
    user_page = (tmp_path / "site" / "api" / "mmzoo" / "index.html").read_text()
    assert 'id="mmzoo.create_model"' in user_page and 'id="mmzoo.from_pretrained"' in user_page
