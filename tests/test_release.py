"""The release a newcomer installs: LICENSE, metadata links, configs and model cards inside the wheel and found by
name from any folder, an sdist without tests that cannot run, and the built wheel working in a fresh environment."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

import mmzoo
from mmzoo.cli import main
from mmzoo.config import find_config_file, load_config_file, shipped_configs
from mmzoo.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_the_apache_2_text_the_metadata_names():
    text = (ROOT / "LICENSE").read_text()
    assert PYPROJECT["project"]["license"] == {"text": "Apache-2.0"}
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_readme_links_name_files_that_exist():
    """Every relative link of the README names a file of the repository. They break on the package index until
    the repository has a public URL to make them absolute (docs/release.md says so): none is recorded yet."""
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert targets
    for target in targets:
        if not re.match(r"https?://", target):
            assert (ROOT / target.split("#")[0]).exists(), target
    assert "urls" not in PYPROJECT["project"], "a project URL is set: make the README's links absolute to it"


def test_a_shipped_config_is_found_by_name_and_by_its_repository_path_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "mmca-coco" in shipped_configs() and "sgr-f30k" in shipped_configs()
    by_name, by_path = load_config_file("mmca-coco"), load_config_file("configs/mmca-coco.yaml")
    assert by_name == by_path and by_name["model"]["visual"]["heads"] == 16
    (tmp_path / "mmca-coco.yaml").write_text("model: {alpha: 0.5}\n")  # a file of the user's wins over a name
    assert find_config_file("mmca-coco.yaml") == Path("mmca-coco.yaml")
    assert load_config_file("mmca-coco.yaml") == {"model": {"alpha": 0.5}}
    with pytest.raises(ConfigError, match=r"Cannot read config file mmca-cocoo.*ships with mmzoo: .*mmca-coco"):
        load_config_file("mmca-cocoo")


def test_an_unknown_config_name_through_the_command_lists_the_shipped_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--model", "mmca", "--config", "mmca-cocoo", "--data", "d", "--out", "r"]) == 2
    assert "ships with mmzoo: mmca-coco, mmca-f30k" in capsys.readouterr().err


def _newest_setuptools() -> Path:
    """The folder of the newest setuptools this environment holds (the build needs 70.1 or later, offline)."""
    found = [d for d in metadata.distributions() if (d.metadata["Name"] or "").lower() == "setuptools"]
    best = max(found, key=lambda d: tuple(int(x) for x in re.findall(r"\d+", d.version)[:3]), default=None)
    if best is None or tuple(int(x) for x in best.version.split(".")[:2]) < (70, 1):
        pytest.skip("building offline needs setuptools >= 70.1 (pip install 'mmzoo[dev]')")
    return Path(best.locate_file(""))


def _build(source: Path, out: Path, what: str, setuptools_dir: Path) -> Path:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(setuptools_dir)}
    code = f"from setuptools import build_meta as b; print(b.build_{what}({str(out)!r}))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=source, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


def _fresh_env(root: Path) -> Path:
    """A new virtual environment that sees this one's third-party packages (torch & co, through a .pth) but has
    mmzoo only from the wheel it installs."""
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    site_dir = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    base = Path(sys.base_prefix).resolve()
    deps = [p for p in sys.path if p and Path(p).is_dir() and not Path(p).resolve().is_relative_to(base)]
    deps = [p for p in deps if Path(p).resolve() != ROOT]
    (site_dir / "_mmzoo_test_deps.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in deps), encoding="utf-8"
    )
    return python


@pytest.mark.slow
def test_the_wheel_built_from_the_sdist_installs_and_runs_from_an_unrelated_folder(tmp_path):
    setuptools_dir = _newest_setuptools()
    dist = tmp_path / "dist"
    dist.mkdir()
    sdist = _build(ROOT, dist, "sdist", setuptools_dir)
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "src", filter="data")
    top = names[0].split("/")[0]
    assert not [n for n in names if "/tests/" in n or n.endswith("conftest.py")], "the sdist ships tests"
    assert f"{top}/LICENSE" in names and f"{top}/configs/mmca-coco.yaml" in names
    wheel = _build(tmp_path / "src" / top, dist, "wheel", setuptools_dir)  # as `python -m build` does
    with zipfile.ZipFile(wheel) as zf:
        inside = zf.namelist()
    assert "mmzoo/_configs/mmca-coco.yaml" in inside and "mmzoo/_model_cards/mmca-coco.md" in inside
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in inside)
    meta = next(n for n in inside if n.endswith(".dist-info/METADATA"))
    with zipfile.ZipFile(wheel) as zf:
        assert (
            "License-Expression: Apache-2.0" in zf.read(meta).decode()
            or "License: Apache-2.0" in zf.read(meta).decode()
        )

    python = _fresh_env(tmp_path / "venv")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1", "MMZOO_NUM_THREADS": "1"}
    mmzoo_cmd = str(tmp_path / "venv" / "bin" / "mmzoo")

    def run(*args: str) -> str:
        done = subprocess.run([*args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (args, done.stderr[-3000:])
        return done.stdout

    assert run(mmzoo_cmd, "--version").strip() == f"mmzoo {mmzoo.__version__}"
    where = run(
        str(python), "-c", "import mmzoo, mmzoo.config as c; print(mmzoo.__file__); print(c.shipped_folder('configs'))"
    )
    assert all(line.startswith(str(tmp_path / "venv")) for line in where.split()), where
    run(mmzoo_cmd, "make-data", "shapes", "--out", "d", "--images", "8", "--region-dim", "2048")
    spec = json.loads(
        run(mmzoo_cmd, "train", "--model", "mmca", "--config", "mmca-coco", "--data", "d", "--out", "r", "--dry-run")
    )
    assert spec["model"]["visual"]["heads"] == 16 and spec["training"]["batch_size"] == 64
