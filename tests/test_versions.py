"""The version lock: what `make test` and `make demo` install, within pyproject's ranges, recorded by
every run (driving/versions.py)."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from driving.versions import LOCK, differences_from_lock, lock_hash, lock_pins, package_versions

ROOT = Path(__file__).resolve().parents[1]


def test_the_lock_pins_every_requirement_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["test"]
    pins = lock_pins()
    for text in requirements:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"requirements.lock does not pin {name}"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {text}"


def test_this_environment_is_the_locked_one():
    """The tests run on the versions they claim: `make test` installs the lock."""
    for name, version in lock_pins().items():
        assert metadata.version(name) == version, (
            f"{name}: {metadata.version(name)} installed, lock {version}"
        )


def test_a_run_records_its_versions_and_the_lock_hash(tmp_path: Path):
    versions = package_versions()
    assert versions["lock"] == lock_hash() and versions["lock"].startswith("sha256:")
    assert differences_from_lock(versions) == []
    moved = {**versions, "tensorflow": "2.0.0"}
    assert differences_from_lock(moved) == [f"tensorflow 2.0.0 (lock: {lock_pins()['tensorflow']})"]
    reordered = tmp_path / "requirements.lock"
    reordered.write_text("# comment\n" + "\n".join(reversed(LOCK.read_text().splitlines())) + "\n")
    assert lock_hash(reordered) == lock_hash()  # the pins, not the file's layout
    assert lock_hash(tmp_path / "none.lock") == "none"
