"""docs/walkthrough.md runs as written: every ``bash`` block (and the Python block) on a small set of rendered
pictures with one caption each, pushing to a loopback Hub. "A CSV of one caption per image trains and evaluates
end to end" is this test."""

from __future__ import annotations

import csv
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from mmzoo.cli import main
from tests.hub_server import fake_hub  # noqa: F401  (fake_hub is a fixture)

PAGE = Path(__file__).resolve().parents[1] / "docs" / "walkthrough.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)


def commands(block: str) -> list[list[str]]:
    """The ``mmzoo ...`` commands of a bash block (continuation lines joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
    return [shlex.split(line) for line in lines if line and not line.startswith("#")]


def own_photos(folder: Path) -> None:
    """photos/ and captions.csv as a user has them: rendered pictures, one caption per image, train / val / test."""
    from mmzoo.data.render import KARPATHY_NAME, render_shapes

    render_shapes(folder / "rendered", images=48, dev_images=12, test_images=8, seed=0, size=64)
    document = json.loads((folder / "rendered" / KARPATHY_NAME).read_text())
    (folder / "photos").mkdir()
    with open(folder / "captions.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption", "split"])
        for entry in document["images"]:
            name = f"{entry['split']}_{entry['filename']}"
            shutil.copy(
                folder / "rendered" / "images" / entry["filepath"] / entry["filename"], folder / "photos" / name
            )
            writer.writerow([name, entry["sentences"][0]["raw"], {"dev": "val"}.get(entry["split"], entry["split"])])
    shutil.rmtree(folder / "rendered")


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(tmp_path, monkeypatch, fake_hub, capsys):  # noqa: F811
    pytest.importorskip("matplotlib")
    pytest.importorskip("timm")
    own_photos(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_TOKEN", "hf_walkthrough")
    run = [cmd for block in blocks("bash") for cmd in commands(block)]
    assert [cmd[:2] for cmd in run] == [
        ["mmzoo", "extract-features"],
        ["mmzoo", "train"],
        ["mmzoo", "plot"],
        ["mmzoo", "eval"],
        ["mmzoo", "search"],
        ["mmzoo", "push"],
    ]
    for cmd in run:
        assert main(cmd[1:]) == 0, f"{shlex.join(cmd)} failed: {capsys.readouterr().err}"
    for produced in ("features/mmzoo_data.json", "runs/mine/best/config.json", "runs/mine/tensorboard"):
        assert (tmp_path / produced).exists(), produced
    for picture in ("curves.png", "recall.png", "retrievals.png", "search.png"):
        assert (tmp_path / picture).stat().st_size > 10_000, picture
    manifest = json.loads((tmp_path / "features" / "mmzoo_data.json").read_text())
    assert manifest["captions_per_image"] == 1 and set(manifest["splits"]) == {"train", "dev", "test"}
    results = json.loads((tmp_path / "results.json").read_text())
    assert 0 <= results["rsum"] <= 600 and set(results) >= {"i2t_r1", "t2i_r10", "rsum"}
    repo = fake_hub.repos["my-name/my-first-mmzoo"]
    pushed = repo.commits[repo.branches["main"]]
    assert {"config.json", "model.safetensors", "README.md", "training/metrics.jsonl"} <= set(pushed)
    (python,) = blocks("python")
    namespace: dict = {}
    exec(compile(python, str(PAGE), "exec"), namespace)  # our own documentation page
    assert namespace["hits"].indices.shape == (1, 1)
