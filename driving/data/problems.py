"""What may be wrong in a recording, found row by row for the recording browser's timeline.

Four detectors, each a span of rows of one recording (indices into its frame table, as
load_recordings gives it with exclusions=False, both ends included):

    skipped    rows the loader could not use, and why (a bad field, a missing image...): they are
               not in the table, so each is placed at the usable row that follows it
    still      the car standing: speed below `still_mph` for at least `still_seconds`. The frames
               are near copies of each other with steering 0 (the start of a recording, a pause),
               and teach the model to go straight whatever it sees
    jump       steering changing by more than `jump` (of the full range -1..1) from one frame to the
               next, 1/15 s: keyboard steering, or a correction a person would not repeat. A wheel
               or a mouse moves 0.5 (12.5 degrees) in 67 ms only by a jerk
    repeated   a center frame that is its predecessor again: the same file listed twice, or the same
               bytes (the simulator repeats a frame when its rendering stalls). Copies weigh one
               moment of driving more than the others

The thresholds are settings (ProblemThresholds), declared once with their options.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from driving.config import SAMPLE_RATE_HZ
from driving.options import option

SKIPPED, STILL, JUMP, REPEATED = "skipped", "still", "jump", "repeated"
KINDS = (SKIPPED, STILL, JUMP, REPEATED)
MAX_SPANS = 2_000  # per kind sent to a page; the count says how many there were in all
THRESHOLDS = "problem detectors"  # the --help section


@dataclass(frozen=True)
class ProblemThresholds:
    still_mph: float = option(
        0.5,
        "--still-mph",
        "below this speed (mph) the car counts as standing",
        group=THRESHOLDS,
        low=0,
        metavar="MPH",
    )
    still_seconds: float = option(
        1.0,
        "--still-seconds",
        "mark standing only when it lasts this long (s); shorter is a stop, not a pause",
        group=THRESHOLDS,
        low=0,
        metavar="SECONDS",
    )
    jump: float = option(
        0.5,
        "--jump",
        "a steering change between two frames larger than this (of -1..1) is a jump",
        group=THRESHOLDS,
        low=0,
        low_open=True,
        high=2,
        metavar="STEERING",
    )

    def describe(self) -> dict[str, str]:
        """kind -> its rule, in words, for the page."""
        return {
            SKIPPED: "rows the loader could not use (the reason is given); shown at the next usable row",
            STILL: f"speed below {self.still_mph:g} mph for {self.still_seconds:g} s or more: frames "
            "that teach going straight whatever the road does",
            JUMP: f"steering changes by more than {self.jump:g} from one frame to the next (1/15 s): "
            "keyboard steering or a jerk",
            REPEATED: "a center frame equal to the one before (same file or same bytes): the "
            "simulator repeating a frame",
        }


@dataclass(frozen=True)
class Problem:
    kind: str
    first: int  # index of the first row concerned
    last: int  # and of the last (included)
    rows: int  # rows concerned (skipped rows are not in the table: they are counted here)
    note: str = ""

    def to_list(self) -> list:
        return [self.kind, self.first, self.last, self.rows, self.note]


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[first, last] of each run of True in `flags`."""
    padded = np.concatenate([[False], flags, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def skipped_rows(frames: pd.DataFrame, lines: list[tuple[int, str]]) -> list[Problem]:
    """The skipped lines (line, reason) as spans at the usable row after them; neighbouring lines
    skipped for the same reason make one span."""
    if not len(frames):
        return []
    rows = frames["row"].to_numpy()
    problems: list[Problem] = []
    previous = None
    for line, reason in sorted(lines):
        at = min(int(np.searchsorted(rows, line)), len(rows) - 1)
        if previous and previous[1] == line - 1 and previous[2] == reason:
            p = problems[-1]
            problems[-1] = Problem(SKIPPED, p.first, at, p.rows + 1, p.note)
        else:
            problems.append(Problem(SKIPPED, at, at, 1, reason))
        previous = (at, line, reason)
    return problems


def standing_still(frames: pd.DataFrame, t: ProblemThresholds) -> list[Problem]:
    times = frames["time"].to_numpy()
    slow = frames["speed"].to_numpy() < t.still_mph
    return [
        Problem(STILL, a, b, b - a + 1, f"{times[b] - times[a] + 1 / SAMPLE_RATE_HZ:.1f} s")
        for a, b in _runs(slow)
        if times[b] - times[a] + 1 / SAMPLE_RATE_HZ >= t.still_seconds
    ]


def steering_jumps(frames: pd.DataFrame, t: ProblemThresholds) -> list[Problem]:
    steering = frames["steering"].to_numpy()
    change = np.abs(np.diff(steering))
    return [
        Problem(JUMP, int(i), int(i) + 1, 2, f"{steering[i]:+.2f} -> {steering[i + 1]:+.2f}")
        for i in np.flatnonzero(change > t.jump)
    ]


def _identity(path: str) -> tuple[int, int, int] | None:
    """(size, device, inode) of the file at `path`, None when it cannot be read."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size, info.st_dev, info.st_ino


def _read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def repeated_frames(frames: pd.DataFrame) -> list[Problem]:
    """Only files of equal size are read and compared (two different JPEGs almost never are), and
    one file under two names (a hard link) is the same without reading: a recording of 50,000
    rows costs 50,000 stat calls and a few reads."""
    centers = list(frames["center"])
    ids = [_identity(p) for p in centers]
    repeat = np.zeros(len(centers), bool)
    held: tuple[int, bytes | None] = (-1, None)  # (row, bytes) last read: each file read once

    def content(i: int) -> bytes | None:
        nonlocal held
        if held[0] != i:
            held = (i, _read(centers[i]))
        return held[1]

    for i in range(1, len(centers)):
        now, before = ids[i], ids[i - 1]
        if centers[i] == centers[i - 1] or (now is not None and now == before):
            repeat[i] = True
        elif now is not None and before is not None and now[0] == before[0]:
            earlier = content(i - 1)
            repeat[i] = earlier is not None and earlier == content(i)
    return [Problem(REPEATED, a - 1, b, b - a + 1, f"{b - a + 1} repeat(s)") for a, b in _runs(repeat)]


def find_problems(
    frames: pd.DataFrame, skipped: list[tuple[int, str]], thresholds: ProblemThresholds
) -> list[Problem]:
    """Every problem of one recording's rows (log order), by kind then position."""
    return [
        *skipped_rows(frames, skipped),
        *standing_still(frames, thresholds),
        *steering_jumps(frames, thresholds),
        *repeated_frames(frames),
    ]
