"""Every file the project writes is written atomically: under a temporary name beside it, then
renamed over the real name. A crash, a kill or a full disk mid-write leaves the previous file
whole (or no file), never a truncated one.

    with atomic_path("models/effnet.keras") as tmp:   # any writer that takes a path
        model.save(tmp)
    write_json("models/run.json", config)             # text, bytes and JSON directly

Temporary names carry the writer's process id (`.NAME.tmp-PID-RANDOM.SUFFIX`, the real suffix last,
since some writers choose the format by it), so remove_stale_temps() can tell the leftovers of a
killed process from a write in progress, and a later run in the same folder clears them away.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

_TEMP_NAME = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]{8}(\.[^.]*)?$")


def temp_path(path: str | Path) -> Path:
    """A fresh temporary name in `path`'s folder that keeps its suffix."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path for the caller to write; on success it is renamed over `path`, on
    any error (or KeyboardInterrupt) it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{path}: the writer produced no file")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def finite_json(value):
    """`value` with every NaN or infinite float replaced by None: JSON has neither, and a reader
    should see a missing figure, not the non-standard token Python would write."""
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data) -> Path:
    """Indented JSON with a final newline; NaN and infinity are written as null."""
    return write_text(path, json.dumps(finite_json(data), indent=1, allow_nan=False) + "\n")


def save_figure(fig, path: str | Path, dpi: int = 110, **kw) -> Path:
    """A matplotlib figure to a PNG (or any format its suffix names), atomically; closes it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, **kw)
    finally:
        plt.close(fig)
    return Path(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Delete the temporary files that writers killed mid-write left in `folder` (those whose
    process is gone); returns what was removed. Writes in progress are left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.rglob(".*.tmp-*") if recursive else folder.glob(".*.tmp-*"):
        match = _TEMP_NAME.match(path.name)
        if match and path.is_file() and not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def check_writable_folder(folder: str | Path, what: str = "output folder") -> Path:
    """Create `folder` if needed and prove a file can be written there, before any long work.
    Raises OSError with a one-line message naming the folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{what} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temp_path(folder / "write-check")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(f"cannot write to {what} {folder}: {e.strerror or e}") from None
    return folder


class RecordError(ValueError):
    """A record file that cannot be used; the message names the file (and the field) in one line."""


MAX_RECORD_BYTES = 32 * 1024 * 1024  # the largest JSON record any stage writes is a few MB
MAX_RECORD_DEPTH = 64  # our records nest 5 deep; deeper is damage or a crafted file


def read_regular_bytes(path: str | Path, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of `path`, refusing (OSError, one line) anything that is not a regular file (a FIFO
    or a device would block or never end) and anything larger than `max_bytes`."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open itself
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path}: not a regular file (a FIFO, device or socket is refused)")
        if info.st_size > max_bytes:
            raise OSError(f"{path}: {info.st_size:,} bytes, more than the {max_bytes:,} a {what} may hold")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise OSError(f"{path}: more than the {max_bytes:,} bytes a {what} may hold")
        return data
    finally:
        os.close(fd)


def _depth(value, limit: int) -> int:
    """How deep `value` nests (iteratively: a crafted file cannot exhaust the stack here)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack += [(v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


def parse_json(text: str | bytes, source: str, max_depth: int = MAX_RECORD_DEPTH):
    """JSON with a bounded depth; NaN and infinity tokens refused. RecordError names `source`."""

    def refuse(token: str):
        raise ValueError(f"{token} is not a number JSON allows")

    try:
        data = json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise RecordError(f"{source}: nested more than {max_depth} levels deep") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RecordError(f"{source}: not valid JSON ({e})") from None
    if _depth(data, max_depth) > max_depth:
        raise RecordError(f"{source}: nested more than {max_depth} levels deep")
    return data


def read_json(path: str | Path, max_bytes: int = MAX_RECORD_BYTES, max_depth: int = MAX_RECORD_DEPTH):
    """A JSON file read with bounds: its size before parsing, its depth while parsing. Raises
    RecordError naming the file for a missing, oversized, non-regular or malformed one."""
    try:
        data = read_regular_bytes(path, max_bytes, "record")
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file") from None
    except OSError as e:
        raise RecordError(str(e) if str(path) in str(e) else f"{path}: {e.strerror or e}") from None
    return parse_json(data, str(path), max_depth)


class OutputRefused(ValueError):
    """An output path that holds something the command did not write; the message names it."""


RECORDING_LOG = "driving_log.csv"  # the simulator's name (driving.config.CSV_NAME)
MODEL_SUFFIXES = (".keras", ".h5", ".tflite")
_TEXT_SUFFIXES = (".md", ".txt", ".csv", ".html", ".svg")


def _looks_like(path: Path, suffix: str) -> bool:
    """Whether the file at `path` holds what its suffix says: the content, not just the name."""
    with open(path, "rb") as f:  # a regular file (checked by the caller): the open cannot block
        head = f.read(4096)
    if not head:
        return True  # empty: nothing to lose
    if suffix == ".png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    if suffix in (".jpg", ".jpeg"):
        return head.startswith(b"\xff\xd8\xff")
    if suffix == ".mp4":
        return head[4:8] == b"ftyp"
    if suffix == ".json":
        return head.lstrip()[:1] in (b"{", b"[")
    if suffix in _TEXT_SUFFIXES:
        return b"\0" not in head
    return False


def _in_recording(path: Path) -> bool:
    """A recording's log, or a file inside a recording folder or its IMG/ folder."""
    parents = [path.parent, path.parent.parent]
    return path.name == RECORDING_LOG or any((p / RECORDING_LOG).is_file() for p in parents)


def check_output_file(
    path: str | Path, option: str, suffixes: tuple[str, ...], overwrite: bool = False
) -> Path:
    """Refuse, before any work and in one line naming `option`, an output file path that would
    replace something the command did not write: a folder, a FIFO or device, a recording's file,
    a model, a name without one of `suffixes`, or an existing file whose content is of another kind
    (unless `overwrite`). An existing file of the same kind (an earlier run's chart) is replaced."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise OutputRefused(f"{option} {path}: is a folder; name a file inside it")
    if suffix in MODEL_SUFFIXES:
        raise OutputRefused(f"{option} {path}: a model file name; this option writes {'/'.join(suffixes)}")
    if suffix not in suffixes:
        raise OutputRefused(f"{option} {path}: expected a file name ending in {' or '.join(suffixes)}")
    if _in_recording(path):
        raise OutputRefused(f"{option} {path}: inside a recording; write it elsewhere")
    if not path.exists() and not path.is_symlink():
        return path
    if not path.is_file():
        raise OutputRefused(f"{option} {path}: not a regular file (a FIFO, device or socket is refused)")
    if not overwrite and not _looks_like(path, suffix):
        raise OutputRefused(
            f"{option} {path}: holds a file that is not a {suffix} file; move it, or pass --overwrite"
        )
    return path
