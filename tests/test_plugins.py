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
import torch, mmzoo.plugin

class GoodFusion(mmzoo.plugin.FusionBlock):
    """Dot product of the pooled vectors."""
    def forward(self, images, texts):
        return images.pooled @ texts.pooled.t()

@mmzoo.plugin.hookimpl
def mmzoo_register(registry):
    registry.fusion.register("good-fusion", GoodFusion)
'''

BROKEN_IMPORT = "import this_module_does_not_exist\n"

BROKEN_REGISTER = """
import mmzoo.plugin
from fakegood import GoodFusion

@mmzoo.plugin.hookimpl
def mmzoo_register(registry):
    registry.fusion.register("half-registered", GoodFusion)
    raise RuntimeError("boom while registering")
"""

CLASH = """
import mmzoo.plugin
from fakegood import GoodFusion

@mmzoo.plugin.hookimpl
def mmzoo_register(registry):
    registry.fusion.register("mmca-cross", GoodFusion)
"""


def fake_dist(root: Path, name: str, source: str, entry_point: str | None = None) -> None:
    module = name.replace("-", "_")
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[mmzoo]\n{entry_point or name} = {module}\n")


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
        records = {r.name: r for r in mmzoo.plugin.plugin_records()}
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
        print(sorted(r.name for r in mmzoo.plugin.plugin_records() if r.status == "failed"))
        print({r.name: r.status for r in mmzoo.plugin.plugin_records()}["fakegood"])
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
        @mmzoo.plugin.hookimpl
        def mmzoo_register(self, registry):
            registry.model.register(
                "in-process-recipe",
                {"visual": {"name": "mean-fc"}, "text": {"name": "gru"}, "loss": {"name": "triplet"}},
            )

    record = mmzoo.plugin.register_plugin(Plugin(), name="test-in-process")
    try:
        assert record.status == "loaded" and record.components == [("model", "in-process-recipe")]
        assert registry.model.entry("in-process-recipe").plugin == "test-in-process"
        with pytest.raises(mmzoo.errors.PluginError, match="already loaded"):
            mmzoo.plugin.register_plugin(Plugin(), name="test-in-process")
    finally:
        registry.model.unregister("in-process-recipe")


def test_plugin_without_hook_is_reported():
    import warnings

    import mmzoo

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = mmzoo.plugin.register_plugin(object(), name="test-no-hook")
    assert record.status == "failed" and "implements no mmzoo hook" in record.error
    assert caught and "test-no-hook" in str(caught[0].message)


# -- a third party extends the zoo and the data door without touching mmzoo/ ------------------------------------
# the format is tests/_jsonl_format.py itself, shipped as the plugin's module, then its hook
ZOO_AND_FORMAT = (
    (Path(__file__).parent / "_jsonl_format.py").read_text()
    + """

@mmzoo.plugin.hookimpl
def mmzoo_register(registry):
    registry.data_format.register("jsonl-regions", JsonLines)
    registry.pretrained.register("vsepp-jsonl", mmzoo.plugin.PretrainedEntry(
        alias="vsepp-jsonl", recipe="vsepp", dataset="a JSON-lines toy set", status=mmzoo.plugin.NOT_TRAINED,
        weights=mmzoo.plugin.Weights(repo="someone/vsepp-jsonl"), license="mit", paper="Faghri et al., BMVC 2018",
        published_results={"toy": {"rsum": 123.4}}, results_source="the plugin's authors",
    ))
"""
)


def test_a_third_party_adds_a_pretrained_entry_and_a_data_format(tmp_path):
    fake_dist(tmp_path, "fakezoo", ZOO_AND_FORMAT)
    data = tmp_path / "data"
    data.mkdir()
    rows = [
        {"regions": [[float(i), 1.0, 2.0]] * (1 + i % 3), "captions": [f"thing {i}", f"item {i}"]} for i in range(4)
    ]
    (data / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (data / "mmzoo_data.json").write_text(json.dumps({"format": "jsonl-regions", "captions_per_image": 2}))
    proc = run(
        tmp_path,
        f"""
        import json, mmzoo
        from mmzoo.cli import main
        split = mmzoo.open_split({str(data)!r}, "train")
        feats, mask, caption, index, image = split[5]
        entry = mmzoo.hub.zoo.get_pretrained("vsepp-jsonl")
        print(json.dumps({{"caption": caption, "image": image, "valid": int(mask.sum()), "dim": split.region_dim,
                          "plugin": mmzoo.hub.zoo.plugin_of("vsepp-jsonl"), "status": entry.status}}))
        main(["list", "--pretrained", "vsepp-jsonl"])
        """,
    )
    assert proc.returncode == 0, proc.stderr
    first, *table = proc.stdout.splitlines()
    out = json.loads(first)
    assert out == {"caption": "item 2", "image": 2, "valid": 3, "dim": 3, "plugin": "fakezoo", "status": "not trained"}
    row = next(line for line in table if line.startswith("vsepp-jsonl"))
    assert "fakezoo" in row and "published: toy rsum 123.4" in row


# -- a plugin never breaks a built-in (issue 11, items 3 and 4) ----------------------------------------------
OVERRIDE_THEN_FAIL = """
import mmzoo
from fakegood import GoodFusion

@mmzoo.plugin.hookimpl
def mmzoo_register(registry):
    registry.fusion.register("mmca-cross", GoodFusion, override=True)
    raise RuntimeError("boom after overriding a built-in")
"""


def test_a_failing_plugin_restores_what_it_overrode(tmp_path):
    fake_dist(tmp_path, "fakegood", GOOD)
    fake_dist(tmp_path, "fakeoverride", OVERRIDE_THEN_FAIL)
    proc = run(
        tmp_path,
        """
        import warnings, mmzoo
        warnings.simplefilter("ignore")
        fusion = mmzoo.registry.fusion.entry("mmca-cross")
        model = mmzoo.create_model("mmca", **{"text.name": "gru", "embed_dim": 32, "visual.heads": 4, "fusion.heads": 4})
        print(fusion.plugin, type(model.fusion).__module__)
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["mmca", "mmzoo_plugins.mmca.fusion"]


def test_a_plugin_named_like_a_built_in_is_loaded_and_recorded_apart(tmp_path):
    fake_dist(tmp_path, "fakegood", GOOD)
    fake_dist(tmp_path, "fakemmca", GOOD.replace('"good-fusion"', '"other-fusion"'), entry_point="mmca")
    code = """
        import json, warnings, mmzoo
        warnings.simplefilter("ignore")
        records = {r.name: [r.distribution, r.status] for r in mmzoo.plugin.plugin_records()}
        print(json.dumps({"records": records, "fusions": mmzoo.list_components("fusion")}))
    """
    out = json.loads(run(tmp_path, code).stdout)
    assert out["records"]["mmca"] == ["mmzoo", "loaded"]
    assert out["records"]["fakemmca:mmca"] == ["fakemmca", "loaded"]
    assert {"mmca-cross", "other-fusion"} <= set(out["fusions"])
    # disabling the distribution, or distribution:name, leaves the built-in alone
    for token in ("fakemmca", "fakemmca:mmca"):
        out = json.loads(run(tmp_path, code, MMZOO_DISABLE_PLUGINS=token).stdout)
        assert out["records"]["mmca"] == ["mmzoo", "loaded"] and out["records"]["fakemmca:mmca"][1] == "disabled"
        assert "mmca-cross" in out["fusions"] and "other-fusion" not in out["fusions"]


def test_strict_mode_leaves_nothing_half_loaded(site):
    proc = run(
        site,
        """
        import mmzoo
        for attempt in range(2):
            try:
                mmzoo.list_components("fusion")
                print("loaded")
            except mmzoo.errors.PluginError:
                print("error", len(mmzoo.registry.fusion._entries))
        """,
        MMZOO_STRICT_PLUGINS="1",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["error 0", "error 0"]


def test_disable_typos_warn_and_a_disabled_plugin_is_named_when_its_component_is_missing(tmp_path):
    proc = run(
        tmp_path,
        """
        import warnings, mmzoo
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mmzoo.list_models()
        print([str(w.message) for w in caught if "MMZOO_DISABLE_PLUGINS" in str(w.message)])
        try:
            mmzoo.create_model("mmca")
        except mmzoo.errors.UnknownComponentError as exc:
            print(exc)
        """,
        MMZOO_DISABLE_PLUGINS="mmca,mcca",
    )
    assert proc.returncode == 0, proc.stderr
    warned, error = proc.stdout.splitlines()[:2]
    assert "'mcca'" in warned and "match no installed plugin" in warned and "'mmca'" not in warned
    assert "No model named 'mmca'" in error and "disabled by MMZOO_DISABLE_PLUGINS: mmca" in error


def test_a_lookup_from_another_thread_waits_until_loading_finished(tmp_path):
    """A thread that looks up a name while another thread loads the plugins must see them all, not empty registries."""
    proc = run(
        tmp_path,
        """
        import json, threading, time
        import mmzoo
        from mmzoo.registry import plugins

        started, real = threading.Event(), plugins._discover
        def slow_discover():  # a plugin whose import takes a while (torch, transformers)
            started.set()
            time.sleep(0.5)
            real()
        plugins._discover = slow_discover
        loader = threading.Thread(target=mmzoo.list_models)
        loader.start()
        started.wait()
        seen = mmzoo.list_models()  # this thread, while the loader is inside the discovery
        model = type(mmzoo.create_model("vsepp", **{"visual.in_dim": 8, "embed_dim": 8})).__name__
        loader.join()
        print(json.dumps({"seen": seen, "model": model, "after": mmzoo.list_models()}))
        """,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert "vsepp" in out["seen"] and out["seen"] == out["after"] and out["model"] == "MatchingModel"
