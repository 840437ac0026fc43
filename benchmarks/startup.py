"""How long ``mmzoo --version``, ``mmzoo --help`` and ``mmzoo list`` take to print, before and after the lazy faces.

    python benchmarks/startup.py                   # writes benchmarks/results/startup.json
    python benchmarks/startup.py --before 188faf8  # the revision to compare with (default: before issue 22 item 6)

The "before" tree is ``git archive REV`` of ``mmzoo/`` and ``plugins/`` unpacked into a temporary folder and put
first on ``PYTHONPATH``; "after" is this checkout. Each command runs in a fresh interpreter, as a user starts it;
the variants and commands take turns for ``--rounds`` rounds so that the machine's load falls on all of them alike,
and the median wall time of each is reported with the ratio before / after measured in the same run. Each run
also says whether torch was imported. ``python -c "import torch"`` is timed beside them, for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "188faf8"  # main before the faces were split and made lazy
COMMANDS = {"--version": ["--version"], "--help": ["--help"], "list": ["list"]}
#: runs ``mmzoo ARGS`` as the console script does, then reports whether torch was imported
RUNNER = (
    "import sys\nfrom mmzoo.cli import main\ntry:\n    code = main(sys.argv[1:])\nexcept SystemExit as exc:\n"
    "    code = exc.code\nsys.stderr.write('\\nTORCH-IMPORTED=%s\\n' % ('torch' in sys.modules))\n"
    "raise SystemExit(code)\n"
)


def unpack(rev: str, into: Path) -> None:
    """``mmzoo/`` and ``plugins/`` (as the ``mmzoo_plugins`` package, like the installed entry points) at ``rev``."""
    blob = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "mmzoo", "plugins"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    (into / "plugins").rename(into / "mmzoo_plugins")


def run_once(args: list[str], pythonpath: str | None, cwd: str) -> tuple[float, bool]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    code = ["-c", RUNNER] if args != ["import torch"] else ["-c", "import torch"]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *code, *(args if args != ["import torch"] else [])],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{args} failed ({pythonpath or 'this checkout'}):\n{done.stderr[-2000:]}")
    return wall, "TORCH-IMPORTED=True" in done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "startup.json"))
    parser.add_argument("--before", default=BEFORE, help=f"revision to compare with (default {BEFORE})")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        before.mkdir()
        unpack(args.before, before)
        variants = {"before": str(before), "after": str(ROOT)}
        wall: dict[str, dict[str, list[float]]] = {v: {c: [] for c in COMMANDS} for v in variants}
        torch_imported: dict[str, dict[str, bool]] = {v: {} for v in variants}
        torch_alone: list[float] = []
        for _ in range(args.rounds):
            for variant, path in variants.items():
                for name, cmd in COMMANDS.items():
                    seconds, imported = run_once(cmd, path, tmp)
                    wall[variant][name].append(seconds)
                    torch_imported[variant][name] = imported
            torch_alone.append(run_once(["import torch"], None, tmp)[0])
    rows = []
    for name in COMMANDS:
        b, a = statistics.median(wall["before"][name]), statistics.median(wall["after"][name])
        rows.append(
            {
                "command": f"mmzoo {name}",
                "before_s": round(b, 3),
                "after_s": round(a, 3),
                "ratio": round(b / a, 2),
                "torch_before": torch_imported["before"][name],
                "torch_after": torch_imported["after"][name],
            }
        )
        print(
            f"mmzoo {name:10s} before {b:6.3f} s  after {a:6.3f} s  x{b / a:5.1f}  torch {torch_imported['after'][name]}"
        )
    result = {
        "machine": info,
        "before": args.before,
        "rounds": args.rounds,
        "rows": rows,
        "import_torch_s": round(statistics.median(torch_alone), 3),
        "load_average_end": os.getloadavg()[0],
        "wall": wall,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"python -c 'import torch': {result['import_torch_s']:.3f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
