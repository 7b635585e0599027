"""Recordings made from recordings: merge several, cut time ranges out, repath a moved one.

Each tool writes a NEW recording and never touches its sources: a temporary folder beside the
output (`.OUT.tmp-PID-RANDOM`) receives IMG/ and driving_log.csv, is read back with the loader, and
is renamed to OUT at the end, so OUT is either complete or absent. OUT must not exist, or be an
empty folder, and must not lie inside a source.

The written log is the simulator's format (no header, absolute paths, here into OUT/IMG/), holding
the rows the loader can use; the rows it skips are left out and counted. Images are hard-linked
where the file system allows (no copy, no space) and copied otherwise, or always with `copy`.
A source's excluded.json is carried over to the rows it covered, except where `cut --excluded`
applies it.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from driving.config import CAMERAS, CSV_NAME, IMG_DIR
from driving.data import exclusions as excl
from driving.data.reader import (
    NUMBER_COLUMNS,
    LoadSummary,
    RecordingError,
    find_recordings,
    frame_time,
    load_recordings,
    recording_exclusions,
)

_TEMP_FOLDER = re.compile(r"^\.(.+)\.tmp-(\d+)-[0-9a-f]{8}$")


class ToolError(ValueError):
    """An output the tool refuses to write; one line naming it."""


@dataclass
class Source:
    """One recording read for a tool: its usable rows (log order, exclusions not applied), what
    the loader skipped, and its excluded ranges."""

    folder: Path
    frames: pd.DataFrame
    summary: LoadSummary
    exclusions: excl.Exclusions | None

    @property
    def start(self) -> float | None:
        """Seconds since the epoch of its first frame, from the file name; None without one."""
        return frame_time(self.frames["center"].iloc[0])


@dataclass
class Written:
    """What a tool wrote: the folder, its rows, images linked and copied, what was left out."""

    folder: Path
    rows: int
    linked: int = 0
    copied: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # loader's reason -> rows
    cut: int = 0  # rows cut out by the tool's own choice
    excluded_ranges: int = 0  # ranges carried into OUT/excluded.json

    def __str__(self) -> str:
        images = f"{self.linked + self.copied:,} images ({self.linked:,} hard-linked, {self.copied:,} copied)"
        text = f"{self.folder}: {self.rows:,} rows, {images}"
        if self.cut:
            text += f"; {self.cut:,} rows cut out"
        if self.skipped:
            text += "; left out by the loader: " + ", ".join(f"{r}: {n:,}" for r, n in self.skipped.items())
        if self.excluded_ranges:
            text += f"; {self.excluded_ranges} excluded range(s) carried into {excl.EXCLUDED_NAME}"
        return text


def read_source(folder: Path) -> Source:
    recordings = load_recordings([folder], exclusions=False)
    return Source(
        folder, recordings.frames.reset_index(drop=True), recordings.summary, recording_exclusions(folder)
    )


def one_recording(path: str | Path) -> Path:
    """The single recording `path` names (a folder with driving_log.csv)."""
    found = find_recordings([path])
    if len(found) != 1:
        raise RecordingError(f"{path}: holds {len(found)} recordings; name one of them")
    return found[0]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output(out: str | Path, sources: Sequence[Path]) -> Path:
    """Refuse (ToolError, one line) an OUT that exists and is not an empty folder, or that lies
    inside a source; its absolute path otherwise."""
    out = Path(out).absolute()
    real = Path(os.path.realpath(out))
    for source in sources:
        if _inside(real, Path(os.path.realpath(source))):
            raise ToolError(f"{out}: inside the source recording {source}; write the new one elsewhere")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ToolError(f"{out}: exists and is not a folder; name a new folder")
    if out.is_dir() and any(out.iterdir()):
        raise ToolError(f"{out}: exists and is not empty; name a new folder")
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_folders(out: Path) -> None:
    """The temporary folders a killed tool left beside `out` (their process is gone)."""
    if not out.parent.is_dir():
        return
    for path in out.parent.glob(f".{glob.escape(out.name)}.tmp-*"):
        match = _TEMP_FOLDER.match(path.name)
        ours = match and match.group(1) == out.name and path.is_dir() and not path.is_symlink()
        if ours and not _alive(int(match.group(2))):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def new_folder(out: Path) -> Iterator[Path]:
    """A temporary folder beside `out`, renamed to `out` when the block succeeds, removed when it
    fails (or is interrupted)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_folders(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        yield tmp
        try:
            os.rename(tmp, out)  # replaces an empty folder; fails if OUT was filled meanwhile
        except OSError as e:
            raise ToolError(f"{out}: cannot be written ({e.strerror or e}); nothing was changed") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def number_text(value: float) -> str:
    """The shortest text that reads back as the same float ('0', '0.25', '30.19002')."""
    value = float(value)
    if value.is_integer():
        return str(int(value))
    return repr(value)


class _Images:
    """Source image path -> its name in OUT/IMG, unique: a name two sources both use gets a
    prefix (2-center_...jpg) that keeps the simulator's timestamp at its end."""

    def __init__(self, img: Path, copy: bool):
        self.img, self.copy = img, copy
        self.names: dict[str, str] = {}
        self.taken: set[str] = set()
        self.linked = self.copied = 0

    def add(self, source: str) -> str:
        if not source:
            return ""
        if source in self.names:
            return self.names[source]
        name, n = Path(source).name, 1
        while name in self.taken:
            n += 1
            name = f"{n}-{Path(source).name}"
        self.taken.add(name)
        self.names[source] = name
        target = self.img / name
        if not self.copy:
            try:
                os.link(source, target)
                self.linked += 1
                return name
            except OSError:
                pass  # another file system, or no hard links there: copied instead
        shutil.copyfile(source, target)
        self.copied += 1
        return name


def write_recording(
    out: Path, parts: Sequence[tuple[Source, np.ndarray]], copy: bool = False, carry: bool = True
) -> Written:
    """Write the rows `keep` (bool mask over each source's frames) of every (source, keep), in
    that order, as the new recording `out` (see the module's docstring). With `carry`, each
    source's excluded ranges follow the rows they covered."""
    written = Written(out, 0)
    with new_folder(out) as tmp:
        (tmp / IMG_DIR).mkdir()
        images = _Images(tmp / IMG_DIR, copy)
        text = io.StringIO()
        log = csv.writer(text, lineterminator="\n")
        spans: list[tuple[int, int]] = []
        for source, keep in parts:
            rows = source.frames.loc[keep, [*CAMERAS, *NUMBER_COLUMNS]]
            excluded = excl.excluded_mask(source.frames, source.exclusions)[keep] if carry else None
            for r, row in enumerate(rows.itertuples(index=False)):
                names = [images.add(path) for path in row[: len(CAMERAS)]]
                paths = [str(out / IMG_DIR / n) if n else "" for n in names]
                log.writerow(paths + [number_text(v) for v in row[len(CAMERAS) :]])
                if excluded is not None and excluded[r]:
                    spans.append((written.rows, written.rows))
                written.rows += 1
            for reason, n in source.summary.skipped.items():
                written.skipped[reason] = written.skipped.get(reason, 0) + n
            written.cut += int((~keep).sum())
        if written.rows == 0:
            raise ToolError(f"{out}: no rows left to write")
        with open(tmp / CSV_NAME, "w", encoding="utf-8", newline="") as f:
            f.write(text.getvalue())
        back = load_recordings([tmp], exclusions=False).frames  # read back: every row must load
        if len(back) != written.rows:
            raise ToolError(f"{out}: {len(back)} of {written.rows} rows read back; nothing was written")
        if spans:
            ranges = excl.from_spans(back.reset_index(drop=True), spans)
            excl.write_exclusions(tmp, ranges)
            written.excluded_ranges = len(ranges.ranges)
        written.linked, written.copied = images.linked, images.copied
    return written


def merge(out: str | Path, folders: Sequence[str | Path], copy: bool = False) -> Written:
    """One recording from several (or from folders holding several): their rows concatenated in
    time order, recordings ordered by their first frame's time (those without times in the file
    names last, in the order given)."""
    recordings = find_recordings(folders)
    out = check_output(out, recordings)
    sources = [read_source(r) for r in recordings]
    order = sorted(range(len(sources)), key=lambda i: (sources[i].start is None, sources[i].start or 0.0, i))
    return write_recording(out, [(sources[i], np.ones(len(sources[i].frames), bool)) for i in order], copy)


def cut(
    folder: str | Path,
    out: str | Path,
    ranges: Sequence[tuple[float, float]] = (),
    excluded: bool = False,
    copy: bool = False,
) -> Written:
    """The recording without the rows whose time (seconds from its first usable row, as the
    browser shows it) lies in one of `ranges` (START <= t <= END), and, with `excluded`, without
    the ranges of its excluded.json."""
    recording = one_recording(folder)
    out = check_output(out, [recording])
    source = read_source(recording)
    if excluded and source.exclusions is None:
        raise RecordingError(f"{recording}: no {excl.EXCLUDED_NAME} to apply")
    times = source.frames["time"].to_numpy()
    drop = np.zeros(len(times), bool)
    for start, end in ranges:
        drop |= (times >= start) & (times <= end)
    if excluded:
        drop |= excl.excluded_mask(source.frames, source.exclusions)
    return write_recording(out, [(source, ~drop)], copy, carry=not excluded)


def repath(folder: str | Path, out: str | Path, copy: bool = False) -> Written:
    """The recording with every image path pointing into its own new IMG/ (a recording from
    Windows or another machine, whose log names paths that do not exist here)."""
    recording = one_recording(folder)
    out = check_output(out, [recording])
    source = read_source(recording)
    return write_recording(out, [(source, np.ones(len(source.frames), bool))], copy)
