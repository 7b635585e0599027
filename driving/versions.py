"""Which package versions a run used, and whether they are the ones the project is tested with.

`requirements.lock` (at the repository root) pins every package `make test` and `make demo` install;
a run records the versions it ran on and the lock's hash (run.json), and the report names every
package whose version differs from the lock: the same seed gives the same model only on the same
versions (TensorFlow's kernels and their order of summation change between releases).
"""

from __future__ import annotations

import hashlib
import platform
import re
from importlib import metadata
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
# The packages whose versions can move a trained model's weights or a drive's figures.
PACKAGES = ("tensorflow", "keras", "numpy", "ai-edge-litert", "opencv-python-headless", "pandas")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def package_versions() -> dict[str, str]:
    """Python's, this package's and the result-moving packages' versions, and the lock's hash."""
    versions = {"python": platform.python_version()}
    for name in ("driving", *PACKAGES):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["lock"] = lock_hash()
    return versions


def lock_hash(path: Path = LOCK) -> str:
    """sha256 of the lock file's pins (comments and order ignored), or "none" without one (an
    installed package away from its repository)."""
    pins = lock_pins(path)
    if not pins:
        return "none"
    text = "\n".join(f"{name}=={version}" for name, version in sorted(pins.items()))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def lock_pins(path: Path = LOCK) -> dict[str, str]:
    """{canonical package name: exact version} from a `name==version` lock file."""
    if not path.is_file():
        return {}
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_canonical(name)] = version.strip()
    return pins


def differences_from_lock(versions: dict, path: Path = LOCK) -> list[str]:
    """'tensorflow 2.20.0 (lock: 2.21.0)' for every recorded package the lock pins otherwise."""
    pins = lock_pins(path)
    found = []
    for name, version in versions.items():
        pinned = pins.get(_canonical(name))
        if pinned is not None and version != pinned:
            found.append(f"{name} {version} (lock: {pinned})")
    return found
