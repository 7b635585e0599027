"""Reading recordings in the Udacity simulator's format (`driving_log.csv` + `IMG/`): the loader,
row validation, the summary of what was used and skipped, and the time-block split.

The simulator writes each row as
    center,left,right,steering,throttle,brake,speed\n
with no header, absolute image paths, and numbers in C#'s default float format (up to 7
significant digits) in the recording machine's locale. Writing recordings: driving/data/writer.py;
the command line that checks them: driving/data/__main__.py.
"""

from __future__ import annotations

import bisect
import csv
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from driving.config import CAMERAS, CSV_NAME, IMG_DIR, SAMPLE_RATE_HZ
from driving.data.exclusions import EXCLUDED_NAME, Exclusions, ExclusionsError, read_exclusions
from driving.preprocess import FrameError, read_frame

COLUMNS = ("center", "left", "right", "steering", "throttle", "brake", "speed")


NUMBER_COLUMNS = COLUMNS[3:]
FRAME_COLUMNS = ("recording", "row", "time", *COLUMNS)

# Reasons a row is skipped; the summary counts rows under these names.
WRONG_FIELDS = "wrong number of fields"
NOT_NUMERIC = "non-numeric value"
NOT_FINITE = "NaN or infinite value"
STEERING_RANGE = "steering outside [-1, 1]"
NO_CENTER = "no center image path"
MISSING_IMAGE = "missing image file"
UNREADABLE_LINE = "unreadable line"
BROKEN_IMAGE = "unreadable or truncated JPEG"
EXCLUDED = f"excluded by {EXCLUDED_NAME}"  # not a problem: rows a person chose to leave out

MAX_SKIPPED_LINES = 100_000  # where skipped rows lie, kept for the recording browser; bounded


class RecordingError(ValueError):
    """Bad recording input. The message names the file and, where there is one, the line."""


@dataclass
class RecordingStats:
    """What happened to one recording's rows."""

    read: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # reason -> first message seen
    lines: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), the first 100,000

    @property
    def used(self) -> int:
        return self.read - sum(self.skipped.values())


@dataclass
class LoadSummary:
    """Rows read, used and skipped by reason, per recording. `print(summary)` shows the table."""

    recordings: dict[str, RecordingStats] = field(default_factory=dict)
    frame_sizes: Counter = field(default_factory=Counter)  # "WxH" -> images, once they are decoded

    def stats(self, recording: str) -> RecordingStats:
        return self.recordings.setdefault(recording, RecordingStats())

    def skip(self, recording: str, reason: str, message: str, line: int | None = None) -> None:
        """Count one skipped row; the first message per reason is kept to show where to look, and
        its line (the first MAX_SKIPPED_LINES) to show where it lies."""
        stats = self.stats(recording)
        stats.skipped[reason] += 1
        stats.examples.setdefault(reason, message)
        if line is not None and len(stats.lines) < MAX_SKIPPED_LINES:
            stats.lines.append((line, reason))

    @property
    def read(self) -> int:
        return sum(s.read for s in self.recordings.values())

    @property
    def used(self) -> int:
        return sum(s.used for s in self.recordings.values())

    @property
    def skipped(self) -> Counter:
        return sum((s.skipped for s in self.recordings.values()), Counter())

    def __str__(self) -> str:
        reasons = sorted(self.skipped)
        header = ["recording", "read", "used", *reasons]
        rows = [
            [name, str(s.read), str(s.used), *(str(s.skipped[r]) for r in reasons)]
            for name, s in self.recordings.items()
        ]
        rows.append(["total", str(self.read), str(self.used), *(str(self.skipped[r]) for r in reasons)])
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        line = lambda cells: "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )
        text = [line(header), line(["-" * w for w in widths]), *map(line, rows)]
        examples = [
            f"  {reason}: {msg}" for s in self.recordings.values() for reason, msg in s.examples.items()
        ]
        if examples:
            text += ["", "first skipped row per reason and recording:", *examples]
        if len(self.frame_sizes) > 1:
            text += ["", f"frame sizes: {describe_sizes(self.frame_sizes)}"]
        return "\n".join(text)


def describe_sizes(sizes: Counter) -> str:
    """'320x160 (1,200 images), 640x320 (3 images)': the most common first."""
    return ", ".join(f"{size} ({n:,} image{'s' * (n != 1)})" for size, n in sizes.most_common())


@dataclass
class Recordings:
    """The usable rows of one or more recordings.

    frames: one row per CSV row used, columns FRAME_COLUMNS: recording (folder, str), row (1-based
    line number in driving_log.csv), time (seconds since the recording's first sample), center,
    left, right (absolute image paths; "" where the recording has no such camera), steering,
    throttle, brake, speed (float).
    """

    frames: pd.DataFrame
    summary: LoadSummary


def find_recordings(paths: Sequence[str | Path]) -> list[Path]:
    """Recording folders (those holding driving_log.csv) named by `paths`: each path is a recording
    (or its driving_log.csv), or a folder with recordings anywhere below it. Sorted within each
    path, no duplicates."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.name == CSV_NAME and os.path.lexists(path) and not path.is_dir():
            path = path.parent
        if os.path.lexists(path / CSV_NAME):  # whatever it is: read_log refuses what is no file
            candidates = [path]
        elif path.is_dir():
            candidates = sorted(p.parent for p in path.rglob(CSV_NAME))
        else:
            raise RecordingError(f"{path}: no such folder")
        if not candidates:
            raise RecordingError(f"{path}: no {CSV_NAME} in this folder or below it")
        found += [c.absolute() for c in candidates if c.absolute() not in found]
    return found


def image_path(recording: Path, logged: str) -> str:
    """The image a log entry means, found by its file name in the recording's own IMG/, wherever
    the recording machine kept it (Windows or POSIX, absolute or relative, leading spaces)."""
    name = logged.strip().replace("\\", "/").rsplit("/", 1)[-1]
    return os.path.join(recording, IMG_DIR, name) if name else ""  # not Path: 3 a row, 50,000 rows


_STAMP = re.compile(r"(\d{4})_(\d\d)_(\d\d)_(\d\d)_(\d\d)_(\d\d)_(\d{3})", re.ASCII)


def frame_time(center: str) -> float | None:
    """Seconds since the epoch from the simulator's file name (center_yyyy_MM_dd_HH_mm_ss_fff.jpg)."""
    match = _STAMP.fullmatch(Path(center).stem[-23:])  # not strptime: the slowest step of a long load
    if match is None:
        return None
    *fields, millis = map(int, match.groups())
    try:
        when = datetime(*fields, microsecond=millis * 1000)
    except ValueError:  # no such date or time
        return None
    return (when - datetime(1970, 1, 1)).total_seconds()  # naive: no time-zone or DST shifts


def _is_header(fields: list[str]) -> bool:
    return [f.strip().lower() for f in fields] == list(COLUMNS)


def _looks_comma_decimal(fields: list[str]) -> bool:
    """More than 7 fields whose numeric tail reads as C# numbers written with a decimal comma."""
    tail = [f.strip() for f in fields[3:]]
    return len(fields) > len(COLUMNS) and all(
        t.lstrip("-").replace("E-", "").replace("E+", "").isdigit() for t in tail
    )


def _short(text: str, limit: int = 40) -> str:
    """A field quoted for a message, cut short: a hostile file must not flood the summary."""
    text = text.strip()
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"


class _RowProblem(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _parse_row(fields: list[str], recording: Path, check_images: bool) -> dict:
    if len(fields) != len(COLUMNS):
        raise _RowProblem(
            WRONG_FIELDS, f"{len(fields)} fields, expected {len(COLUMNS)} ({','.join(COLUMNS)})"
        )
    row: dict = {}
    for name, text in zip(NUMBER_COLUMNS, fields[3:]):
        try:
            value = float(text)
        except ValueError:
            raise _RowProblem(NOT_NUMERIC, f"{name} is {_short(text)}, not a number") from None
        if not math.isfinite(value):
            raise _RowProblem(NOT_FINITE, f"{name} is {_short(text)}")
        row[name] = value
    if not -1.0 <= row["steering"] <= 1.0:
        raise _RowProblem(STEERING_RANGE, f"steering is {row['steering']:g}")
    for camera, logged in zip(CAMERAS, fields[:3]):
        row[camera] = image_path(recording, logged)
    if not row["center"]:
        raise _RowProblem(NO_CENTER, "the center image path is empty")
    if check_images:
        for camera in CAMERAS:
            if row[camera] and not os.path.isfile(row[camera]):
                raise _RowProblem(MISSING_IMAGE, f"{camera} image {row[camera]} does not exist")
    return row


def read_log(
    recording: Path,
    summary: LoadSummary,
    strict: bool = False,
    check_images: bool = True,
    excluded: Exclusions | None = None,
) -> list[dict]:
    """The usable rows of one recording's driving_log.csv; skipped rows are counted in `summary`
    (or raise RecordingError with `strict`). Comma-decimal rows always raise: a whole recording in
    that format cannot be read without guessing (see docs/data.md).

    Lines inside an `excluded` range are counted under EXCLUDED and not read further (a person
    left them out: whatever is wrong with them does not matter, even with `strict`). The file
    names it recorded at each range's ends must still be there, or the log changed since and
    RecordingError says so."""
    log = recording / CSV_NAME
    name = str(recording)
    stats = summary.stats(name)
    rows = []
    ends = excluded.ends() if excluded else {}
    starts = [r.first_row for r in excluded.ranges] if excluded else []
    for line_no, fields, unreadable in _log_lines(log):
        if unreadable is None and (not fields or (len(fields) == 1 and not fields[0].strip())):
            continue  # blank line
        if line_no == 1 and _is_header(fields):
            continue
        stats.read += 1
        if excluded and line_no in ends:
            _check_end(recording, line_no, fields, ends.pop(line_no))
        inside = bisect.bisect_right(starts, line_no) - 1  # the range that starts at or before
        if inside >= 0 and line_no <= excluded.ranges[inside].last_row:
            summary.skip(name, EXCLUDED, f"{log}, {excluded.ranges[inside]}", line_no)
            continue
        if _looks_comma_decimal(fields):
            raise RecordingError(
                f"{log}, line {line_no}: {len(fields)} fields where 7 are expected; the numbers "
                f"look written with a decimal comma ({_short(','.join(f.strip() for f in fields[3:]), 60)}), "
                "as the simulator does on a comma-decimal locale. Such a row cannot be read "
                "unambiguously (is '0,0,22,1' 0, 0.22 and 1, or 0, 0 and 22.1?): record again on "
                "a machine set to a point-decimal locale (e.g. English), or convert the file."
            )
        try:
            if unreadable is not None:
                raise _RowProblem(UNREADABLE_LINE, unreadable)
            row = _parse_row(fields, recording, check_images)
        except _RowProblem as problem:
            message = f"{log}, line {line_no}: {problem}"
            if strict:
                raise RecordingError(message) from None
            summary.skip(name, problem.reason, message, line_no)
            continue
        row["recording"], row["row"] = name, line_no
        rows.append(row)
    if ends:
        line_no, expected = min(ends.items())
        raise RecordingError(
            f"{recording / EXCLUDED_NAME}: a range ends at line {line_no} ({expected}), but {log} "
            "is shorter now: it changed since the ranges were chosen; choose them again "
            f"(python -m driving.data view {recording}) or delete {EXCLUDED_NAME}"
        )
    return rows


def _check_end(recording: Path, line_no: int, fields: list[str], expected: str) -> None:
    """An excluded range's end must name the image it named when it was chosen."""
    found = Path(image_path(recording, fields[0])).name if fields else ""
    if found != expected:
        raise RecordingError(
            f"{recording / EXCLUDED_NAME}: line {line_no} of {recording / CSV_NAME} names "
            f"{_short(found) if found else 'no image'}, not {expected!r} as when the range was chosen: "
            f"the log changed since; choose the ranges again (python -m driving.data view "
            f"{recording}) or delete {EXCLUDED_NAME}"
        )


MAX_LINE_BYTES = 64 * 1024  # a real row is a few hundred bytes; more is a broken or hostile file


def _log_lines(log: Path):
    """(line number, fields, problem) for each line of driving_log.csv, streamed. `problem` says
    why a line could not be read (not UTF-8, a NUL, absurdly long; its fields are then []), so
    reading goes on. A file that cannot be opened, is no regular file (a FIFO or a device would
    block or never end), or is binary from the start, raises RecordingError."""
    try:
        fd = os.open(log, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open itself
    except OSError as e:
        raise RecordingError(f"{log}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RecordingError(f"{log}: not a regular file (a FIFO, device or socket is refused)")
    with os.fdopen(fd, "rb") as f:
        head = f.read(4096)
        if b"\0" in head:
            raise RecordingError(f"{log}: not a text CSV file (binary content)")
        f.seek(0)
        line_no = 0
        while raw := f.readline(MAX_LINE_BYTES):
            line_no += 1
            problem, fields = None, []
            if not raw.endswith(b"\n") and len(raw) == MAX_LINE_BYTES:
                while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass  # skip the rest of the overlong line without holding it
                problem = f"line longer than {MAX_LINE_BYTES:,} bytes"
            else:
                try:
                    text = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")  # -sig: a BOM
                    fields = next(csv.reader([text.rstrip("\r\n")]), [])
                except UnicodeDecodeError:
                    problem = "not UTF-8 text"
                except csv.Error as e:  # a NUL, an unterminated quote...
                    problem = f"not a CSV row ({e})"
            yield line_no, fields, problem


def _add_time(frames: pd.DataFrame) -> pd.DataFrame:
    """Seconds since each recording's first sample, from the file names' timestamps; recordings
    whose names carry none fall back to their row order at the simulator's 15 samples/s."""
    times = frames["center"].map(frame_time)
    for _, group in frames.groupby("recording", sort=False):
        t = times[group.index]
        if t.isna().any():
            t = pd.Series(range(len(group)), index=group.index, dtype=float) / SAMPLE_RATE_HZ
        frames.loc[group.index, "time"] = t - t.min()
    return frames


def recording_exclusions(recording: Path) -> Exclusions | None:
    """The ranges a person left out of `recording` (its excluded.json), None without one."""
    try:
        return read_exclusions(recording)
    except ExclusionsError as e:
        raise RecordingError(str(e)) from None


def load_recordings(
    paths: Sequence[str | Path], strict: bool = False, check_images: bool = True, exclusions: bool = True
) -> Recordings:
    """Read and validate the recordings at `paths` (see find_recordings) into one table.

    Bad rows are skipped and counted by reason in the summary; with `strict` the first one raises
    RecordingError naming the file and line. `check_images` checks that every image file exists
    (decoding them is left to the pipeline's cache, which decodes each once anyway). The rows a
    recording's excluded.json leaves out are removed and counted under EXCLUDED, unless
    `exclusions` is False (the recording browser shows them all).
    """
    summary = LoadSummary()
    rows = []
    for recording in find_recordings(paths):
        excluded = recording_exclusions(recording) if exclusions else None
        rows += read_log(recording, summary, strict, check_images, excluded)
    if not rows:
        raise RecordingError(f"no usable rows in {', '.join(map(str, paths))}\n{summary}")
    frames = pd.DataFrame(rows)
    frames["time"] = 0.0
    frames = _add_time(frames)[list(FRAME_COLUMNS)]
    return Recordings(frames=frames, summary=summary)


def drop_broken_images(
    frames: pd.DataFrame, broken: dict[str, str], summary: LoadSummary | None, strict: bool = False
) -> pd.DataFrame:
    """Drop the rows that use an image in `broken` (path -> why), counting each in `summary` under
    BROKEN_IMAGE; with `strict` the first such row raises RecordingError instead."""
    cameras = frames[list(CAMERAS)]
    bad = cameras.isin(list(broken)).any(axis=1) if broken else pd.Series(False, frames.index)
    for (_, row), paths in zip(frames[bad].iterrows(), cameras[bad].values):
        why = next(broken[p] for p in paths if p in broken)
        message = f"{Path(row['recording']) / CSV_NAME}, line {row['row']}: {why}"
        if strict:
            raise RecordingError(message)
        if summary is not None:
            summary.skip(row["recording"], BROKEN_IMAGE, message, int(row["row"]))
    return frames[~bad]


def check_decodable(
    frames: pd.DataFrame, summary: LoadSummary | None = None, strict: bool = False
) -> pd.DataFrame:
    """Decode every image of `frames` once and drop the rows with an unreadable or truncated JPEG
    (see drop_broken_images). The training pipeline does this while it builds its cache.

    The frame sizes found are counted in `summary.frame_sizes`. A run trains on one size (its
    crop rows fit one), so with `strict` images of two sizes raise RecordingError naming the first
    image of the less common one."""

    def decode(path: str) -> tuple[str | None, str | None]:
        try:
            height, width = read_frame(path).shape[:2]
        except FrameError as e:
            return str(e), None
        return None, f"{width}x{height}"

    paths = list(dict.fromkeys(p for camera in CAMERAS for p in frames[camera] if p))
    with ThreadPoolExecutor(os.cpu_count()) as pool:  # cv2 decodes without holding the GIL
        results = tqdm(
            pool.map(decode, paths),
            total=len(paths),
            unit="img",
            desc="decoding",
            leave=False,
            disable=None,
        )
        decoded = dict(zip(paths, results))
    broken = {p: why for p, (why, _) in decoded.items() if why}
    sizes = Counter(size for _, size in decoded.values() if size)
    if summary is not None:
        summary.frame_sizes.update(sizes)
    if strict and len(sizes) > 1:
        rare = sizes.most_common()[-1][0]
        first = next(p for p, (_, size) in decoded.items() if size == rare)
        row = frames[(frames[list(CAMERAS)] == first).any(axis=1)].iloc[0]
        raise RecordingError(
            f"{Path(row['recording']) / CSV_NAME}, line {row['row']}: {first} is a {rare} image, but "
            f"the recordings hold frames of {len(sizes)} sizes ({describe_sizes(sizes)}); a run "
            "trains on one size: record again, or leave the others out"
        )
    return drop_broken_images(frames, broken, summary, strict)


def split_by_recording(frames: pd.DataFrame, held_out: Sequence[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into training and validation sets by whole recordings: the rows of the recording
    folders `held_out` (find_recordings' paths) validate, every other row trains."""
    is_val = frames["recording"].isin([str(p) for p in held_out])
    return frames[~is_val], frames[is_val]


def split_by_time(
    frames: pd.DataFrame, val_fraction: float = 0.2, block_seconds: float = 10.0, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into training and validation sets by whole blocks of `block_seconds` of driving.

    Neighbouring frames (1/15 s apart) are near duplicates, so a random split by frame would leak
    validation into training. Each recording is cut into consecutive blocks; a seeded shuffle of all
    blocks picks validation blocks until they hold at least `val_fraction` of the frames.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    keys = pd.MultiIndex.from_arrays([frames["recording"], (frames["time"] // block_seconds).astype(int)])
    sizes = pd.Series(1, index=keys).groupby(level=[0, 1]).size()  # sorted: same order every run
    target, chosen, count = val_fraction * len(frames), [], 0
    for i in np.random.default_rng(seed).permutation(len(sizes)):
        if count >= target:
            break
        chosen.append(sizes.index[i])
        count += sizes.iloc[i]
    if val_fraction > 0 and count == len(frames):
        raise RecordingError(
            f"cannot split {len(frames)} frames in {len(sizes)} block(s) of "
            f"{block_seconds:g} s: record longer or use shorter blocks (--block-seconds)"
        )
    is_val = keys.isin(chosen)
    return frames[~is_val], frames[is_val]
