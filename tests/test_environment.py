"""environment.yml must give conda users exactly the packages pyproject.toml gives pip users."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def normalise(requirement: str) -> str:
    """'Foo_Bar >= 1.0, <2' -> 'foo-bar>=1.0,<2' (PEP 503 names, no spaces)."""
    requirement = re.sub(r"\s+", "", requirement)
    name, spec = re.match(r"([A-Za-z0-9._-]+)(.*)", requirement).groups()
    return re.sub(r"[-_.]+", "-", name).lower() + spec


def pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return {normalise(r) for r in project["dependencies"] + extras}


def environment_yml() -> tuple[list[str], list[str]]:
    """(conda packages, pip packages) from environment.yml's dependency list."""
    conda, pip, in_pip = [], [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        item = re.match(r"^(\s*)-\s*(.+?)\s*(#.*)?$", line)
        if not item:
            in_pip = in_pip and bool(line.strip())
            continue
        indent, entry = len(item.group(1)), item.group(2)
        if entry == "pip:":
            in_pip, pip_indent = True, indent
        elif in_pip and indent > pip_indent:
            pip.append(entry.strip("'\""))
        else:
            in_pip = False
            conda.append(entry)
    return conda, pip


def test_environment_yml_lists_exactly_what_pyproject_lists():
    _, pip = environment_yml()
    assert len(pip) == len(set(pip)), "environment.yml lists a package twice"
    in_yml = {normalise(r) for r in pip}
    in_pyproject = pyproject_requirements()
    assert in_yml == in_pyproject, (
        f"only in pyproject.toml: {sorted(in_pyproject - in_yml)}; "
        f"only in environment.yml: {sorted(in_yml - in_pyproject)}"
    )


def test_environment_yml_python_fits_requires_python():
    conda, _ = environment_yml()
    python = [c for c in conda if c.startswith("python")]
    assert python and "pip" in conda
    version = re.match(r"python\s*=+\s*(\d+)\.(\d+)", python[0]).groups()
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    low = re.search(r">=\s*(\d+)\.(\d+)", requires).groups()
    high = re.search(r"<\s*(\d+)\.(\d+)", requires).groups()
    as_tuple = lambda v: tuple(map(int, v))
    assert as_tuple(low) <= as_tuple(version) < as_tuple(high)
