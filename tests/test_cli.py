"""Every command line answers --help without loading TensorFlow (which takes seconds): help must be
instant. Checked by what gets imported, not by timing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = [
    "driving.data summary",
    "driving.models",
    "driving.train",
    "driving.report",
    "driving.video",
    "driving.sim record",
    "driving.sim drive",
    "driving.sim eval",
    "driving.demo",
    "driving.evaluate",
    "driving.study seeds",
    "driving.study table",
    "driving.view",
    "driving.saliency",
    "driving.drive",
    "experiments.mnist",
    "experiments.convstudy calc",
]
SCRIPTS = ["train.py", "drive.py", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "bench").glob("*.py"))]

CHECK = """
import runpy, sys
sys.argv = [{name!r}, *{args!r}, "--help"]
try:
    {run}
except SystemExit as e:
    assert e.code in (0, None), e.code
heavy = sorted(m for m in ("tensorflow", "keras", "torch") if m in sys.modules)
assert not heavy, heavy
"""


@pytest.mark.parametrize("command", MODULES + SCRIPTS)
def test_help_loads_no_tensorflow(command):
    name, *args = command.split()
    if name.endswith(".py"):
        run = f"runpy.run_path({str(ROOT / name)!r}, run_name='__main__')"
    else:
        run = f"runpy.run_module({name!r}, run_name='__main__', alter_sys=True)"
    code = CHECK.format(name=name, args=args, run=run)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout


def console_scripts() -> dict[str, str]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("script", sorted(console_scripts()))
def test_every_console_script_is_installed_and_answers_help(script):
    """pyproject's console scripts point at a real `main`, and the installed script runs it."""
    import importlib

    module, function = console_scripts()[script].split(":")
    assert callable(getattr(importlib.import_module(module), function))
    installed = Path(sys.executable).parent / script
    if not installed.exists():
        pytest.skip(f"{script} is not installed in this environment (make test installs it)")
    result = subprocess.run([str(installed), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr[-1000:]
