"""Plugin discovery through entry points, failure isolation, strict and disable switches.

Each scenario runs in a subprocess whose ``PYTHONPATH`` holds fake installed distributions (a
``*.dist-info`` folder with ``entry_points.txt``), so the real plugin machinery runs end to end and
this test process's registry stays untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GOOD = '''
import torch, mmzoo

class GoodFusion(mmzoo.FusionBlock):
    """Dot product of the pooled vectors."""
    def forward(self, images, texts):
        return images.pooled @ texts.pooled.t()

@mmzoo.hookimpl
def mmzoo_register(registry):
    registry.fusion.register("good-fusion", GoodFusion)
'''

BROKEN_IMPORT = "import this_module_does_not_exist\n"

BROKEN_REGISTER = """
import mmzoo
from fakegood import GoodFusion

@mmzoo.hookimpl
def mmzoo_register(registry):
    registry.fusion.register("half-registered", GoodFusion)
    raise RuntimeError("boom while registering")
"""

CLASH = """
import mmzoo
from fakegood import GoodFusion

@mmzoo.hookimpl
def mmzoo_register(registry):
    registry.fusion.register("mmca-cross", GoodFusion)
"""


def fake_dist(root: Path, name: str, source: str) -> None:
    module = name.replace("-", "_")
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[mmzoo]\n{name} = {module}\n")


@pytest.fixture
def site(tmp_path):
    fake_dist(tmp_path, "fakegood", GOOD)
    fake_dist(tmp_path, "fakebrokenimport", BROKEN_IMPORT)
    fake_dist(tmp_path, "fakebrokenregister", BROKEN_REGISTER)
    fake_dist(tmp_path, "fakeclash", CLASH)
    return tmp_path


def run(site: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), **env}
    environ.pop("MMZOO_STRICT_PLUGINS", None) if "MMZOO_STRICT_PLUGINS" not in env else None
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=environ, capture_output=True, text=True, timeout=120
    )


def test_broken_plugins_are_isolated_and_reported(site):
    proc = run(
        site,
        """
        import json, warnings, mmzoo
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fusions = mmzoo.list_components("fusion")
        records = {r.name: r for r in mmzoo.plugin_records()}
        print(json.dumps({"fusions": fusions, "warnings": [str(w.message) for w in caught],
                          "status": {n: [r.status, r.error, r.components] for n, r in records.items()}}))
    """,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert "good-fusion" in out["fusions"] and "mmca-cross" in out["fusions"]
    assert "half-registered" not in out["fusions"], "a failed plugin's registrations are rolled back"
    status = out["status"]
    assert status["fakegood"][0] == "loaded" and status["fakegood"][2] == [["fusion", "good-fusion"]]
    assert status["fakebrokenimport"][0] == "failed" and "this_module_does_not_exist" in status["fakebrokenimport"][1]
    assert status["fakebrokenregister"][0] == "failed" and "boom while registering" in status["fakebrokenregister"][1]
    assert status["fakeclash"][0] == "failed" and "already registered" in status["fakeclash"][1]
    assert status["mmca"][0] == "loaded"
    assert len(out["warnings"]) == 3 and all("mmzoo plugins" in w for w in out["warnings"])


def test_strict_mode_turns_a_failure_into_an_error(site):
    proc = run(site, "import mmzoo; mmzoo.list_models()", MMZOO_STRICT_PLUGINS="1")
    assert proc.returncode != 0
    assert "PluginError" in proc.stderr and "MMZOO_STRICT_PLUGINS" in proc.stderr


def test_disabled_plugins_are_skipped(site):
    proc = run(
        site,
        """
        import mmzoo
        print(sorted(r.name for r in mmzoo.plugin_records() if r.status == "failed"))
        print({r.name: r.status for r in mmzoo.plugin_records()}["fakegood"])
    """,
        MMZOO_DISABLE_PLUGINS="fakebrokenimport, fakebrokenregister,fakeclash,fakegood",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["[]", "disabled"]


def test_cli_plugins_lists_errors(site):
    proc = run(site, "from mmzoo.cli import main; raise SystemExit(main(['plugins']))")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("fakebrokenimport"))
    assert "failed" in line and "ModuleNotFoundError" in line
    assert any(ln.startswith("example-fusion") and "mmzoo-example-fusion" in ln for ln in proc.stdout.splitlines())


def test_plugins_load_lazily_and_import_mmzoo_is_light(site):
    proc = run(
        site,
        """
        import sys, mmzoo
        heavy = [m for m in ("transformers", "timm", "torchvision", "mmzoo_plugins.mmca", "fakegood") if m in sys.modules]
        mmzoo.list_models()
        print(heavy, "mmzoo_plugins.mmca" in sys.modules, "transformers" in sys.modules)
    """,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[] True False"


def test_in_process_plugin_object():
    import mmzoo
    from mmzoo import registry

    class Plugin:
        @mmzoo.hookimpl
        def mmzoo_register(self, registry):
            registry.model.register(
                "in-process-recipe",
                {"visual": {"name": "mean-fc"}, "text": {"name": "gru"}, "loss": {"name": "triplet"}},
            )

    record = mmzoo.register_plugin(Plugin(), name="test-in-process")
    try:
        assert record.status == "loaded" and record.components == [("model", "in-process-recipe")]
        assert registry.model.entry("in-process-recipe").plugin == "test-in-process"
        with pytest.raises(mmzoo.PluginError, match="already loaded"):
            mmzoo.register_plugin(Plugin(), name="test-in-process")
    finally:
        registry.model.unregister("in-process-recipe")


def test_plugin_without_hook_is_reported():
    import warnings

    import mmzoo

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = mmzoo.register_plugin(object(), name="test-no-hook")
    assert record.status == "failed" and "implements no mmzoo hook" in record.error
    assert caught and "test-no-hook" in str(caught[0].message)
