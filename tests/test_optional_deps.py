"""A missing optional package is one MissingDependencyError naming its extra, never a raw ModuleNotFoundError.

The core-only environment is simulated in-process: ``sys.modules[name] = None`` makes ``import name`` fail exactly
as an absent package does; the command-line tests do the same in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import mmzoo
from mmzoo.cli import main
from mmzoo.errors import MissingDependencyError, MMZooError
from tests._import_sources import write_karpathy


def block(monkeypatch, *names: str) -> None:
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def test_require_returns_the_module_and_names_the_extra(monkeypatch):
    assert mmzoo.plugin.require("json", extra="core").dumps([1]) == "[1]"
    block(monkeypatch, "PIL")
    with pytest.raises(MissingDependencyError) as info:
        mmzoo.plugin.require("PIL.Image", extra="vision", purpose="Reading images")
    message = str(info.value)
    assert 'pip install "mmzoo[vision]"' in message and "pillow" in message and "not installed" in message
    assert isinstance(info.value, ImportError) and isinstance(info.value, MMZooError)
    assert info.value.extra == "vision" and info.value.name == "PIL"


def test_a_broken_install_says_why(tmp_path, monkeypatch):
    """An installed package whose own import fails (a missing sub-dependency) keeps the reason in the message."""
    package = tmp_path / "mmzoo_broken_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("import mmzoo_missing_subdependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingDependencyError, match=r"failed to import .*mmzoo_missing_subdependency_xyz"):
        mmzoo.plugin.require("mmzoo_broken_pkg", extra="x")


def test_create_model_mmca_without_transformers(monkeypatch):
    block(monkeypatch, "transformers")
    with pytest.raises(MissingDependencyError, match=r'pip install "mmzoo\[mmca\]"'):
        mmzoo.create_model("mmca")


def test_pixels_model_without_timm(monkeypatch):
    block(monkeypatch, "timm", "timm.data")
    with pytest.raises(MissingDependencyError, match=r'pip install "mmzoo\[vision\]"'):
        mmzoo.create_model("pixels-lite0")


def test_hdf5_without_h5py(monkeypatch):
    from mmzoo.data.importing import hdf5

    block(monkeypatch, "h5py")
    with pytest.raises(MissingDependencyError, match=r'pip install "mmzoo\[features\]"'):
        hdf5._h5py()


def test_render_without_pillow_writes_nothing(tmp_path, monkeypatch, capsys):
    """make-data --render fails before the first file, so the same command runs once Pillow is back."""
    out = tmp_path / "shapes"
    argv = ["make-data", "shapes", "--out", str(out), "--images", "8", "--render", "--image-size", "16"]
    with monkeypatch.context() as m:
        block(m, "PIL")
        assert main(argv) == 2
    assert 'pip install "mmzoo[vision]"' in capsys.readouterr().err
    assert not out.exists()
    assert main(argv) == 0  # no --overwrite needed: nothing was left behind
    assert (out / "dataset_shapes.json").is_file()


def run_blocked(blocked: list[str], argv: list[str], cwd) -> subprocess.CompletedProcess:
    """``mmzoo ARGV`` in a fresh interpreter where the ``blocked`` packages cannot be imported."""
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "from mmzoo.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.slow
def test_cli_without_pillow_and_without_h5py(tmp_path):
    done = run_blocked(["PIL"], ["make-data", "shapes", "--out", "d", "--images", "8", "--render"], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and 'pip install "mmzoo[vision]"' in done.stderr
    assert not (tmp_path / "d").exists()
    (tmp_path / "f.hdf5").write_bytes(b"")
    write_karpathy(tmp_path / "k.json", {"train": [1], "val": [2], "test": [3]})
    argv = ["import-features", "hdf5", "f.hdf5", "--karpathy", "k.json", "--out", "o", "--no-progress"]
    done = run_blocked(["h5py"], argv, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert 'pip install "mmzoo[features]"' in done.stderr, done.stderr
